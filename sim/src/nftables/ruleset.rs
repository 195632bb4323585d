//! The kernel's nftables state for one network namespace: its tables, and
//! the public entry points — apply a transaction, query, list, and the
//! packet path's set updates.
//!
//! Models: tables of all families in creation order, with the
//! namespace-wide table handle counter; [`Ruleset::apply`] runs an
//! `nft -f` script as one transaction (all or nothing); [`Ruleset::list`]
//! prints what `nft list …` prints; virtual time decides which set elements
//! have expired.
//!
//! Must never: read the wall clock (every time-dependent call takes an
//! [`Instant`]), change state when a transaction fails, or know what the
//! rules are for (it knows nothing of Kubernetes).
//!
//! Error contract: [`NftError`] from `apply` and `list`; queries return
//! `Option`/`bool`.

use std::collections::BTreeMap;

use super::error::NftError;
use super::list::{self, ListOptions};
use super::stmt::SetOp;
use super::table::Table;
use super::types::Family;
use super::value::Value;
use crate::time::Instant;

/// All nftables tables of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub(crate) tables: BTreeMap<u64, Table>,
    pub(crate) table_names: BTreeMap<(Family, String), u64>,
    pub(crate) next_table_handle: u64,
}

impl Default for Ruleset {
    fn default() -> Self {
        Ruleset::new()
    }
}

impl Ruleset {
    /// An empty namespace.
    pub fn new() -> Ruleset {
        Ruleset {
            tables: BTreeMap::new(),
            table_names: BTreeMap::new(),
            next_table_handle: 1,
        }
    }

    /// Run `script` (what `nft -f` reads) as one transaction at time `now`:
    /// parse and check everything, apply to a copy, and keep the copy only
    /// if every command and the commit-time checks succeed.
    pub fn apply(&mut self, script: &str, now: Instant) -> Result<(), NftError> {
        let commands = super::script::parse_script(script)?;
        let mut next = self.clone();
        next.expire(now);
        super::apply::apply(&mut next, commands, now)?;
        *self = next;
        Ok(())
    }

    /// Tables in creation order.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.tables.values()
    }

    /// The table `family name`.
    pub fn table(&self, family: Family, name: &str) -> Option<&Table> {
        self.table_names
            .get(&(family, name.to_string()))
            .and_then(|h| self.tables.get(h))
    }

    pub(crate) fn table_mut(&mut self, family: Family, name: &str) -> Option<&mut Table> {
        let h = *self.table_names.get(&(family, name.to_string()))?;
        self.tables.get_mut(&h)
    }

    /// Drop set elements whose expiry is at or before `now`.
    pub fn expire(&mut self, now: Instant) {
        for t in self.tables.values_mut() {
            let mut dead = Vec::new();
            for s in t.sets.values_mut() {
                dead.extend(s.expire(now));
            }
            for e in &dead {
                t.element_uses(e, -1);
            }
        }
    }

    /// The packet path's `add|update @set { key }` (a rule's
    /// [`super::SetUpdate`] in table `family table`): returns false when
    /// the table or set does not exist or the key does not fit the set.
    pub fn update_set(
        &mut self,
        (family, table): (Family, &str),
        update: &super::stmt::SetUpdate,
        key: &[Value],
        now: Instant,
    ) -> bool {
        let Some(s) = self
            .table_mut(family, table)
            .and_then(|t| t.set_mut(&update.set))
        else {
            return false;
        };
        let (op, timeout_ms) = (update.op, update.timeout);
        if s.is_map() || key.len() != s.key_type().parts().len() {
            return false;
        }
        s.update(key, op == SetOp::Update, timeout_ms, now);
        true
    }

    /// What `nft [-a] list …` prints for `request` (`list ruleset`,
    /// `list table ip t`, `list chain ip t c`, `list set ip t s`,
    /// `list map ip t m`, `list chains`, `list sets`, `list maps`; the
    /// leading `list` is optional), at time `now` (element expiries count
    /// down from it).
    pub fn list(
        &self,
        request: &str,
        options: ListOptions,
        now: Instant,
    ) -> Result<String, NftError> {
        list::list(self, request, options, now)
    }

    /// `nft list ruleset` at `now`.
    pub fn list_ruleset(&self, now: Instant) -> String {
        list::ruleset(self, ListOptions::default(), now)
    }
}
