//! Transaction semantics of sets, maps and elements (see [`super::apply`]
//! for the rules shared with tables and chains).
//!
//! Models: `add`/`create`/`delete`/`destroy`/`flush` of sets and maps —
//! an existing name needs the same kind, key type, value type and flags
//! (else File exists), interval sets cannot be dynamic, `delete` of a set
//! that rules use is refused (Device or resource busy); and of elements —
//! keys and values typed by their set, verdicts naming existing non-base
//! chains, which then count as references.
//!
//! Must never: change a set's elements without keeping the chains' use
//! counts in step.
//!
//! Error contract: [`ErrorKind`] for the command, or an [`NftError`] at the
//! element at fault.

use std::collections::BTreeMap;

use super::apply::{check_target, Placed, TxLog};
use super::decl::SetDecl;
use super::error::ErrorKind;
use super::lexer::Token;
use super::script::Verb;
use super::set::{MapData, NewElement, Set};
use super::table::Table;
use super::types::KeyType;
use crate::time::Instant;

#[allow(clippy::too_many_arguments)]
pub(crate) fn set_cmd(
    t: &mut Table,
    verb: Verb,
    handle: Option<u64>,
    name: &str,
    is_map: bool,
    decl: Option<SetDecl>,
    now: Instant,
    log: &mut TxLog,
) -> Result<(), Placed> {
    let what = if is_map { "map" } else { "set" };
    let name = match handle {
        Some(h) => match t.sets.get(&h) {
            Some(s) => s.name.clone(),
            None if verb == Verb::Destroy => return Ok(()),
            None => {
                return Err(ErrorKind::not_found(
                    "set handle",
                    &h.to_string(),
                    "list with -a to see handles",
                )
                .into())
            }
        },
        None => name.to_string(),
    };
    let exists = t.set(&name).is_some();
    match verb {
        Verb::Add | Verb::Create => {
            let Some(d) = decl else { return Ok(()) };
            let key = d.key.clone().unwrap_or_else(|| KeyType(Vec::new()));
            let mut flags = d.flags;
            flags.timeout |= d.timeout.is_some();
            if flags.interval && flags.dynamic {
                return Err(ErrorKind::KernelRefused {
                    token: name,
                    reason: "interval sets cannot be dynamic".into(),
                }
                .into());
            }
            if flags.interval && key.is_concat() {
                return Err(ErrorKind::unsupported(
                    &name,
                    "interval sets with concatenated keys are not modelled",
                )
                .into());
            }
            if let Some(s) = t.set(&name) {
                if verb == Verb::Create {
                    return Err(ErrorKind::Exists {
                        what,
                        token: name,
                        hint: "use `add` to accept an existing set",
                    }
                    .into());
                }
                if (s.is_map, &s.key, s.data, s.flags) != (is_map, &key, d.data, flags) {
                    return Err(ErrorKind::Exists {
                        what,
                        token: name,
                        hint: "a set or map of this name exists with another kind, type or flags; delete it first",
                    }
                    .into());
                }
            } else {
                let handle = t.take_handle();
                t.insert_set(Set {
                    name: name.clone(),
                    handle,
                    is_map,
                    key,
                    data: d.data,
                    flags,
                    timeout: d.timeout.map(super::duration::to_ticks),
                    gc_interval: d.gc_interval,
                    size: d.size.unwrap_or(0),
                    auto_merge: d.auto_merge,
                    comment: d.comment,
                    elements: BTreeMap::new(),
                });
                log.created_sets.insert((t.handle, name.clone()));
            }
            element_cmd(t, Verb::Add, &name, d.elements, now)
        }
        Verb::Delete | Verb::Destroy => {
            if !exists {
                return if verb == Verb::Destroy {
                    Ok(())
                } else {
                    Err(
                        ErrorKind::not_found(what, &name, "delete only sets and maps that exist")
                            .into(),
                    )
                };
            }
            let uses = t.set_uses(&name);
            if uses > 0 {
                return Err(ErrorKind::Busy {
                    what,
                    token: name,
                    uses,
                }
                .into());
            }
            t.remove_set(&name);
            Ok(())
        }
        Verb::Flush => {
            let Some(h) = t.set_names.get(&name).copied() else {
                return Err(ErrorKind::not_found(
                    what,
                    &name,
                    "flush only sets and maps that exist",
                )
                .into());
            };
            let gone = t.sets.get_mut(&h).map(Set::flush).unwrap_or_default();
            for e in &gone {
                t.element_uses(e, -1);
            }
            Ok(())
        }
        Verb::Insert | Verb::Replace => Err(ErrorKind::invalid(
            what,
            "sets and maps are added, created, deleted or flushed",
        )
        .into()),
    }
}

pub(crate) fn element_cmd(
    t: &mut Table,
    verb: Verb,
    set: &str,
    elems: Vec<(NewElement, Token)>,
    now: Instant,
) -> Result<(), Placed> {
    for (e, at) in elems {
        if let Some(MapData::Verdict(v)) = &e.data {
            if let Some(c) = v.chain() {
                check_target(t, c).map_err(|k| at.err(k))?;
            }
        }
        let Some(s) = t.set_mut(set) else {
            return Ok(());
        };
        match verb {
            Verb::Add | Verb::Create => {
                let data = e.data.clone();
                let new = s
                    .insert(e, verb == Verb::Create, now)
                    .map_err(|k| at.err(k))?;
                if new {
                    if let Some(MapData::Verdict(v)) = &data {
                        if let Some(c) = v.chain() {
                            *t.chain_uses.entry(c.to_string()).or_insert(0) += 1;
                        }
                    }
                }
            }
            Verb::Delete | Verb::Destroy => match s.remove(&e.key, now) {
                Ok(old) => t.element_uses(&old, -1),
                Err(_) if verb == Verb::Destroy => {}
                Err(k) => return Err(at.err(k).into()),
            },
            _ => {
                return Err(at
                    .err(ErrorKind::invalid(
                        "element",
                        "elements are added, created, deleted or destroyed",
                    ))
                    .into())
            }
        }
    }
    Ok(())
}
