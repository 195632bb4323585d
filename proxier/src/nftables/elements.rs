//! What the proxier believes a set or map holds (upstream's
//! `nftElementStorage`), so that syncs only add, replace and delete the
//! elements that changed.
//!
//! At a full sync the storage is refilled from the kernel's listing
//! (`readOrReset`); each element the sync wants is then `ensure`d (added if
//! absent, deleted and re-added if its value changed) and whatever was not
//! ensured is deleted at the end. Deletions go out in key order (upstream
//! walks a Go map, in random order). Never talks to the kernel itself.

use std::collections::{BTreeMap, BTreeSet};

use super::tx::{self, Element, Object, Transaction};

/// Elements as listed from the kernel: key and value, each `" . "`-joined.
pub type ListedElements = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub struct ElementStorage {
    is_set: bool,
    name: &'static str,
    elements: BTreeMap<String, String>,
    leftover: BTreeSet<String>,
}

impl ElementStorage {
    pub fn set(name: &'static str) -> Self {
        Self::new(true, name)
    }

    pub fn map(name: &'static str) -> Self {
        Self::new(false, name)
    }

    fn new(is_set: bool, name: &'static str) -> Self {
        ElementStorage {
            is_set,
            name,
            elements: BTreeMap::new(),
            leftover: BTreeSet::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Upstream's `readOrReset`: `listed` is `Ok(Some(elements))` when the
    /// kernel listed the container, `Ok(None)` when it does not exist (yet),
    /// and `Err(())` when listing failed; then the container is flushed.
    pub fn read_or_reset(
        &mut self,
        tx: &mut Transaction,
        listed: Result<Option<&ListedElements>, ()>,
    ) {
        self.elements.clear();
        match listed {
            Ok(Some(elems)) => {
                for (k, v) in elems {
                    self.elements.insert(k.clone(), v.clone());
                }
            }
            Ok(None) => {}
            Err(()) => tx.flush(if self.is_set {
                tx::set_named(self.name)
            } else {
                tx::map_named(self.name)
            }),
        }
        self.reset_leftover();
    }

    fn reset_leftover(&mut self) {
        self.leftover = self.elements.keys().cloned().collect();
    }

    /// Adds `elem` unless it is already there with the same value.
    pub fn ensure(&mut self, tx: &mut Transaction, elem: Element) {
        let key = elem.key.join(" . ");
        let value = elem.value.join(" . ");
        match self.elements.get(&key) {
            Some(existing) => {
                if existing != &value {
                    tx.delete(Object::Element(elem.clone()));
                    tx.add(Object::Element(elem));
                    self.elements.insert(key.clone(), value);
                }
                self.leftover.remove(&key);
            }
            None => {
                tx.add(Object::Element(elem));
                self.elements.insert(key, value);
            }
        }
    }

    /// Deletes every element not ensured since the last reset.
    pub fn cleanup_leftover(&mut self, tx: &mut Transaction) {
        for key in std::mem::take(&mut self.leftover) {
            tx.delete(Object::Element(Element {
                container: self.name.to_string(),
                key: key.split(" . ").map(String::from).collect(),
                value: Vec::new(),
                comment: None,
            }));
            self.elements.remove(&key);
        }
        self.reset_leftover();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elem(key: &str, value: &str) -> Element {
        Element {
            container: "service-ips".into(),
            key: key.split(" . ").map(String::from).collect(),
            value: vec![value.to_string()],
            comment: None,
        }
    }

    #[test]
    fn only_changes_are_written() {
        let mut s = ElementStorage::map("service-ips");
        let mut tx = Transaction::new("ip", "kube-proxy");
        s.read_or_reset(&mut tx, Ok(None));
        s.ensure(&mut tx, elem("1.2.3.4 . tcp . 80", "goto a"));
        s.ensure(&mut tx, elem("1.2.3.5 . tcp . 80", "goto b"));
        s.cleanup_leftover(&mut tx);
        assert_eq!(tx.num_operations(), 2);

        let mut tx = Transaction::new("ip", "kube-proxy");
        s.ensure(&mut tx, elem("1.2.3.4 . tcp . 80", "goto a"));
        s.ensure(&mut tx, elem("1.2.3.5 . tcp . 80", "goto c"));
        s.cleanup_leftover(&mut tx);
        assert_eq!(
            tx.render(),
            "delete element ip kube-proxy service-ips { 1.2.3.5 . tcp . 80 }\n\
             add element ip kube-proxy service-ips { 1.2.3.5 . tcp . 80 : goto c }\n"
        );

        let mut tx = Transaction::new("ip", "kube-proxy");
        s.ensure(&mut tx, elem("1.2.3.5 . tcp . 80", "goto c"));
        s.cleanup_leftover(&mut tx);
        assert_eq!(
            tx.render(),
            "delete element ip kube-proxy service-ips { 1.2.3.4 . tcp . 80 }\n"
        );
    }

    #[test]
    fn failed_listing_flushes() {
        let mut s = ElementStorage::set("cluster-ips");
        let mut tx = Transaction::new("ip", "kube-proxy");
        s.read_or_reset(&mut tx, Err(()));
        assert_eq!(tx.render(), "flush set ip kube-proxy cluster-ips\n");
    }
}
