//! Named sets and maps: their declaration and their elements.
//!
//! Models: key type (possibly a concatenation), value type for maps
//! (`verdict` or a data type), flags (`constant`, `dynamic`, `interval`,
//! `timeout`), default timeout, `gc-interval`, `size`, `auto-merge`,
//! comment; elements with an optional comment, an optional own timeout and
//! an expiry on virtual time. Interval sets hold non-overlapping ranges
//! (merged when the set has `auto-merge`, refused otherwise, as the kernel
//! does). Lookups with a concrete key are one `BTreeMap` access — the "one
//! lookup" an evaluator counts.
//!
//! Must never: show or match an element whose expiry has passed; let a
//! map element's value have the wrong type.
//!
//! Error contract: element operations return [`ErrorKind`] with the kernel's
//! meaning (`NotFound`, `Exists`, `SetFull`, `ConflictingIntervals`, type
//! errors); the caller attaches the place.

use std::collections::BTreeMap;

use super::duration::to_ticks;
use super::error::ErrorKind;
use super::expr::{fmt_key, sort_elements};
use super::normalize::merge_intervals;
use super::types::{DataType, KeyType, Verdict};
use super::value::{Atom, Value};
use crate::time::Instant;

/// Set flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SetFlags {
    /// `constant`
    pub constant: bool,
    /// `dynamic`: updated from the packet path (`update @set`).
    pub dynamic: bool,
    /// `interval`: elements are ranges and prefixes.
    pub interval: bool,
    /// `timeout`: elements expire.
    pub timeout: bool,
}

/// A map element's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapData {
    /// A verdict (verdict maps).
    Verdict(Verdict),
    /// A value of the map's data type.
    Value(Value),
}

impl std::fmt::Display for MapData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapData::Verdict(v) => write!(f, "{v}"),
            MapData::Value(v) => write!(f, "{v}"),
        }
    }
}

/// How an element is keyed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ElemKey {
    /// One value per key component.
    Exact(Vec<Value>),
    /// An inclusive integer range (interval sets, single component).
    Interval(u128, u128),
}

/// One element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub(crate) key: Vec<Atom>,
    pub(crate) data: Option<MapData>,
    pub(crate) comment: Option<String>,
    pub(crate) timeout: Option<u64>,
    pub(crate) expires_at: Option<Instant>,
}

impl Element {
    /// The key, one atom per component (ranges print as nft prints them).
    pub fn key(&self) -> &[Atom] {
        &self.key
    }

    /// The map value (`None` for sets).
    pub fn data(&self) -> Option<&MapData> {
        self.data.as_ref()
    }

    /// The element's comment.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The element's own timeout in milliseconds, when it differs from the set's.
    pub fn timeout_ms(&self) -> Option<u64> {
        self.timeout
    }

    /// When the element expires, if it does.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// A new element as a transaction or the packet path gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewElement {
    pub key: Vec<Atom>,
    pub data: Option<MapData>,
    pub comment: Option<String>,
    pub timeout: Option<u64>,
    pub expires: Option<u64>,
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub(crate) name: String,
    pub(crate) handle: u64,
    pub(crate) is_map: bool,
    pub(crate) key: KeyType,
    pub(crate) data: Option<DataType>,
    pub(crate) flags: SetFlags,
    pub(crate) timeout: Option<u64>,
    pub(crate) gc_interval: Option<u64>,
    pub(crate) size: u32,
    pub(crate) auto_merge: bool,
    pub(crate) comment: Option<String>,
    pub(crate) elements: BTreeMap<ElemKey, Element>,
}

impl Set {
    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The set's handle.
    pub fn handle(&self) -> u64 {
        self.handle
    }
    /// Whether this is a map (`add map`).
    pub fn is_map(&self) -> bool {
        self.is_map
    }
    /// The key type.
    pub fn key_type(&self) -> &KeyType {
        &self.key
    }
    /// The value type of a map.
    pub fn data_type(&self) -> Option<DataType> {
        self.data
    }
    /// The flags.
    pub fn flags(&self) -> SetFlags {
        self.flags
    }
    /// The default element timeout in milliseconds.
    pub fn timeout_ms(&self) -> Option<u64> {
        self.timeout
    }
    /// The maximum number of elements (0: unlimited).
    pub fn size(&self) -> u32 {
        self.size
    }
    /// The comment.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The live elements at `now`, in `nft list` order.
    pub fn elements(&self, now: Instant) -> Vec<&Element> {
        let mut v: Vec<&Element> = self.elements.values().filter(|e| e.live(now)).collect();
        sort_elements(&mut v, |e| &e.key);
        v
    }

    /// The number of live elements at `now`.
    pub fn len(&self, now: Instant) -> usize {
        self.elements.values().filter(|e| e.live(now)).count()
    }

    /// Whether the set has no live elements at `now`.
    pub fn is_empty(&self, now: Instant) -> bool {
        self.len(now) == 0
    }

    /// The live element matching `key` (one value per component): one lookup.
    pub fn get(&self, key: &[Value], now: Instant) -> Option<&Element> {
        let e = if self.flags.interval {
            let n = key.first()?.as_u128()?;
            self.elements
                .range(..=ElemKey::Interval(n, u128::MAX))
                .next_back()
                .map(|(_, e)| e)
                .filter(|e| e.key[0].bounds().is_some_and(|(lo, hi)| lo <= n && n <= hi))
        } else {
            self.elements
                .get(&ElemKey::Exact(key.to_vec()))
                .or_else(|| self.wildcard(key))
        };
        e.filter(|e| e.live(now))
    }

    fn wildcard(&self, key: &[Value]) -> Option<&Element> {
        if !self.key.parts().contains(&DataType::Ifname) {
            return None;
        }
        self.elements
            .values()
            .find(|e| super::expr::key_matches(&e.key, key))
    }

    /// Whether `key` is in the set at `now`.
    pub fn contains(&self, key: &[Value], now: Instant) -> bool {
        self.get(key, now).is_some()
    }

    /// The verdict a verdict map gives `key` at `now`.
    pub fn verdict(&self, key: &[Value], now: Instant) -> Option<&Verdict> {
        match self.get(key, now)?.data.as_ref()? {
            MapData::Verdict(v) => Some(v),
            MapData::Value(_) => None,
        }
    }

    /// Drop elements whose expiry is at or before `now`; returns them.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Element> {
        let dead: Vec<ElemKey> = self
            .elements
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        dead.into_iter()
            .filter_map(|k| self.elements.remove(&k))
            .collect()
    }

    fn elem_key(&self, key: &[Atom]) -> Result<ElemKey, ErrorKind> {
        if key.len() != self.key.parts().len() {
            return Err(ErrorKind::TypeMismatch {
                token: key_text(key),
                expected: self.key.to_string(),
                found: format!("{} component(s)", key.len()),
            });
        }
        if self.flags.interval {
            let (lo, hi) = key[0].bounds().ok_or_else(|| {
                ErrorKind::bad("element", &key_text(key), "not an interval value")
            })?;
            return Ok(ElemKey::Interval(lo, hi));
        }
        key.iter()
            .map(|a| match a {
                Atom::Value(v) => Ok(v.clone()),
                _ => Err(ErrorKind::invalid(
                    &a.to_string(),
                    "you must add 'flags interval' to the set declaration to add prefix or range elements",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ElemKey::Exact)
    }

    /// Add an element (`create`: fail if it exists). Returns whether it is
    /// new (so the caller counts the chain a verdict names).
    pub(crate) fn insert(
        &mut self,
        new: NewElement,
        create: bool,
        now: Instant,
    ) -> Result<bool, ErrorKind> {
        let token = key_text(&new.key);
        match (&new.data, self.is_map) {
            (Some(_), false) => return Err(ErrorKind::invalid(&token, "set is not a map")),
            (None, true) => {
                return Err(ErrorKind::invalid(
                    &token,
                    "map elements need a value (`key : value`) (Invalid argument)",
                ))
            }
            _ => {}
        }
        if (new.timeout.is_some() || new.expires.is_some()) && !self.flags.timeout {
            return Err(ErrorKind::invalid(
                &token,
                "element timeouts need a set with `flags timeout` or a default timeout",
            ));
        }
        let key = self.elem_key(&new.key)?;
        let own = new.timeout.map(to_ticks);
        let timeout = own.filter(|t| Some(*t) != self.timeout);
        let life = new.expires.map(to_ticks).or(own).or(self.timeout);
        let expires_at = life.map(|ms| deadline(now, ms));
        let elem = Element {
            key: match &key {
                ElemKey::Interval(lo, hi) => vec![Atom::from_bounds(self.key.parts()[0], *lo, *hi)
                    .ok_or_else(|| ErrorKind::bad("element", &token, "out of range"))?],
                ElemKey::Exact(_) => new.key.clone(),
            },
            data: new.data,
            comment: new.comment,
            timeout,
            expires_at,
        };
        if self.elements.get(&key).is_some_and(|e| !e.live(now)) {
            self.elements.remove(&key);
        }
        if let Some(old) = self.elements.get(&key) {
            if create {
                return Err(ErrorKind::Exists {
                    what: "element",
                    token,
                    hint: "use `add element` to accept an existing element",
                });
            }
            if old.data != elem.data {
                return Err(ErrorKind::Exists {
                    what: "element",
                    token,
                    hint: "an element with this key and another value exists; delete it first",
                });
            }
            return Ok(false);
        }
        if let ElemKey::Interval(lo, hi) = key {
            if self.auto_merge && !self.is_map {
                // auto-merge joins overlapping and adjacent intervals.
                self.merge_in(lo, hi, elem);
                return Ok(true);
            }
            if self.overlaps(lo, hi) {
                return Err(ErrorKind::ConflictingIntervals { token });
            }
        }
        if self.size > 0 && self.elements.len() >= self.size as usize {
            return Err(ErrorKind::SetFull {
                token: self.name.clone(),
                size: self.size,
            });
        }
        self.elements.insert(key, elem);
        Ok(true)
    }

    fn overlaps(&self, lo: u128, hi: u128) -> bool {
        self.elements.keys().any(|k| match k {
            ElemKey::Interval(l, h) => *l <= hi && lo <= *h,
            ElemKey::Exact(_) => false,
        })
    }

    fn merge_in(&mut self, lo: u128, hi: u128, elem: Element) {
        let dt = self.key.parts()[0];
        let mut bounds: Vec<(u128, u128)> = self
            .elements
            .keys()
            .filter_map(|k| match k {
                ElemKey::Interval(l, h) => Some((*l, *h)),
                ElemKey::Exact(_) => None,
            })
            .collect();
        bounds.push((lo, hi));
        let old = std::mem::take(&mut self.elements);
        for (l, h) in merge_intervals(bounds) {
            let base = old
                .iter()
                .find(|(k, _)| matches!(k, ElemKey::Interval(a, b) if *a >= l && *b <= h))
                .map(|(_, e)| e.clone())
                .unwrap_or_else(|| elem.clone());
            if let Some(a) = Atom::from_bounds(dt, l, h) {
                self.elements.insert(
                    ElemKey::Interval(l, h),
                    Element {
                        key: vec![a],
                        ..base
                    },
                );
            }
        }
    }

    /// Remove the element with exactly this key.
    pub(crate) fn remove(&mut self, key: &[Atom], now: Instant) -> Result<Element, ErrorKind> {
        let k = self.elem_key(key)?;
        match self.elements.get(&k) {
            Some(e) if e.live(now) => Ok(self.elements.remove(&k).expect("present")),
            _ => Err(ErrorKind::not_found(
                "element",
                &key_text(key),
                "delete only elements the set holds",
            )),
        }
    }

    /// Remove all elements; returns them.
    pub(crate) fn flush(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.elements).into_values().collect()
    }

    /// The packet path's `add|update @set { key }`: insert, or (update)
    /// refresh the expiry. A full set ignores new keys, as the kernel does.
    pub fn update(&mut self, key: &[Value], refresh: bool, timeout: Option<u64>, now: Instant) {
        let atoms: Vec<Atom> = key.iter().cloned().map(Atom::Value).collect();
        let Ok(k) = self.elem_key(&atoms) else { return };
        let timeout = timeout.map(to_ticks);
        let life = timeout.or(self.timeout);
        let expires_at = life.map(|ms| deadline(now, ms));
        if let Some(e) = self.elements.get_mut(&k) {
            if e.live(now) {
                if refresh {
                    e.expires_at = expires_at;
                }
                return;
            }
        }
        if self.size > 0 && self.elements.len() >= self.size as usize {
            return;
        }
        let timeout = timeout.filter(|t| Some(*t) != self.timeout);
        self.elements.insert(
            k,
            Element {
                key: atoms,
                data: None,
                comment: None,
                timeout,
                expires_at,
            },
        );
    }
}

/// `now` plus `ms`, saturating (the kernel accepts timeouts of centuries).
fn deadline(now: Instant, ms: u64) -> Instant {
    Instant::from_nanos(now.as_nanos().saturating_add(ms.saturating_mul(1_000_000)))
}

/// Text of a key for error messages.
pub(crate) fn key_text(key: &[Atom]) -> String {
    struct K<'a>(&'a [Atom]);
    impl std::fmt::Display for K<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            fmt_key(f, self.0)
        }
    }
    K(key).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(flags: SetFlags, size: u32) -> Set {
        Set {
            name: "s".into(),
            handle: 1,
            is_map: false,
            key: KeyType::single(DataType::Ipv4Addr),
            data: None,
            flags,
            timeout: None,
            gc_interval: None,
            size,
            auto_merge: false,
            comment: None,
            elements: BTreeMap::new(),
        }
    }

    fn elem(text: &str) -> NewElement {
        NewElement {
            key: vec![Atom::parse(DataType::Ipv4Addr, text).unwrap()],
            data: None,
            comment: None,
            timeout: None,
            expires: None,
        }
    }

    #[test]
    fn kernel_refusals_are_typed() {
        let now = Instant::ZERO;
        let mut s = set(SetFlags::default(), 1);
        assert_eq!(s.insert(elem("1.1.1.1"), false, now), Ok(true));
        assert_eq!(s.insert(elem("1.1.1.1"), false, now), Ok(false));
        assert!(matches!(
            s.insert(elem("1.1.1.1"), true, now),
            Err(ErrorKind::Exists { .. })
        ));
        assert!(matches!(
            s.insert(elem("2.2.2.2"), false, now),
            Err(ErrorKind::SetFull { .. })
        ));
        assert!(matches!(
            s.insert(elem("10.0.0.0/8"), false, now),
            Err(ErrorKind::Invalid { .. })
        ));
        let mut iv = set(
            SetFlags {
                interval: true,
                ..SetFlags::default()
            },
            0,
        );
        assert_eq!(iv.insert(elem("10.0.0.0/8"), false, now), Ok(true));
        assert!(matches!(
            iv.insert(elem("10.1.0.0/16"), false, now),
            Err(ErrorKind::ConflictingIntervals { .. })
        ));
        assert!(iv.contains(&[Value::Ipv4("10.9.9.9".parse().unwrap())], now));
        assert!(matches!(
            iv.remove(&elem("10.1.0.0/16").key, now),
            Err(ErrorKind::NotFound { .. })
        ));
        assert!(iv.remove(&elem("10.0.0.0/8").key, now).is_ok());
    }
}
