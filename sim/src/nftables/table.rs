//! One nftables table: its chains and its sets and maps, in creation order,
//! the handle counter they draw from, and who refers to whom.
//!
//! Models: a table's family, name, handle and comment; chains and sets
//! (maps are sets with values) kept in creation order, which is handle order
//! and the order `nft list` prints them in; one handle counter per table
//! shared by chains, sets, anonymous sets and rules (as the kernel's); and
//! the use counts the kernel keeps — how many rules and map elements jump
//! or go to each chain, how many rules use each set.
//!
//! Must never: let a use count drift from the rules and elements — every
//! change to rules and map elements goes through the primitives here.
//!
//! Error contract: queries return `Option`; the crate-internal primitives
//! assume `apply` checked their preconditions and cannot fail.

use std::collections::BTreeMap;

use super::chain::{BaseChain, Chain, Hook};
use super::set::{Element, MapData, Set};
use super::stmt::Rule;
use super::types::Family;

/// A table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub(crate) family: Family,
    pub(crate) name: String,
    pub(crate) handle: u64,
    pub(crate) comment: Option<String>,
    pub(crate) next_handle: u64,
    pub(crate) chains: BTreeMap<u64, Chain>,
    pub(crate) chain_names: BTreeMap<String, u64>,
    pub(crate) sets: BTreeMap<u64, Set>,
    pub(crate) set_names: BTreeMap<String, u64>,
    pub(crate) chain_uses: BTreeMap<String, usize>,
    pub(crate) set_uses: BTreeMap<String, usize>,
}

impl Table {
    pub(crate) fn new(family: Family, name: &str, handle: u64, comment: Option<String>) -> Table {
        Table {
            family,
            name: name.to_string(),
            handle,
            comment,
            next_handle: 1,
            chains: BTreeMap::new(),
            chain_names: BTreeMap::new(),
            sets: BTreeMap::new(),
            set_names: BTreeMap::new(),
            chain_uses: BTreeMap::new(),
            set_uses: BTreeMap::new(),
        }
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The handle.
    pub fn handle(&self) -> u64 {
        self.handle
    }
    /// The comment.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Chains in creation order.
    pub fn chains(&self) -> impl Iterator<Item = &Chain> {
        self.chains.values()
    }

    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chain_names.get(name).and_then(|h| self.chains.get(h))
    }

    /// Base chains on `hook`, in the order the kernel runs them (priority,
    /// then creation).
    pub fn base_chains(&self, hook: Hook) -> Vec<(&BaseChain, &Chain)> {
        let mut v: Vec<(&BaseChain, &Chain)> = self
            .chains
            .values()
            .filter_map(|c| c.base.as_ref().filter(|b| b.hook == hook).map(|b| (b, c)))
            .collect();
        v.sort_by_key(|(b, c)| (b.priority, c.handle));
        v
    }

    /// Sets and maps in creation order.
    pub fn sets(&self) -> impl Iterator<Item = &Set> {
        self.sets.values()
    }

    /// The set or map called `name`.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.set_names.get(name).and_then(|h| self.sets.get(h))
    }

    /// The set or map called `name`, for the packet path's updates.
    pub fn set_mut(&mut self, name: &str) -> Option<&mut Set> {
        self.set_names.get(name).and_then(|h| self.sets.get_mut(h))
    }

    /// How many rules and map elements jump or go to chain `name`.
    pub fn chain_uses(&self, name: &str) -> usize {
        self.chain_uses.get(name).copied().unwrap_or(0)
    }

    /// How many rules use set or map `name`.
    pub fn set_uses(&self, name: &str) -> usize {
        self.set_uses.get(name).copied().unwrap_or(0)
    }

    pub(crate) fn take_handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    pub(crate) fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        let h = *self.chain_names.get(name)?;
        self.chains.get_mut(&h)
    }

    pub(crate) fn insert_chain(&mut self, chain: Chain) {
        self.chain_names.insert(chain.name.clone(), chain.handle);
        self.chains.insert(chain.handle, chain);
    }

    pub(crate) fn insert_set(&mut self, set: Set) {
        self.set_names.insert(set.name.clone(), set.handle);
        self.sets.insert(set.handle, set);
    }

    fn add_uses(&mut self, rule: &Rule, delta: isize) {
        let chains: Vec<String> = rule.chain_refs().map(str::to_string).collect();
        let sets: Vec<String> = rule.set_refs().map(str::to_string).collect();
        for c in chains {
            bump(&mut self.chain_uses, c, delta);
        }
        for s in sets {
            bump(&mut self.set_uses, s, delta);
        }
    }

    /// Count a map element's chain reference (+1 / -1).
    pub(crate) fn element_uses(&mut self, elem: &Element, delta: isize) {
        if let Some(MapData::Verdict(v)) = &elem.data {
            if let Some(c) = v.chain() {
                bump(&mut self.chain_uses, c.to_string(), delta);
            }
        }
    }

    /// Put `rule` at `index` of `chain`.
    pub(crate) fn insert_rule(&mut self, chain: &str, index: usize, rule: Rule) {
        self.add_uses(&rule, 1);
        if let Some(c) = self.chain_mut(chain) {
            c.rules.insert(index, rule);
        }
    }

    /// Remove rule `index` of `chain`.
    pub(crate) fn remove_rule(&mut self, chain: &str, index: usize) -> Option<Rule> {
        let c = self.chain_mut(chain)?;
        if index >= c.rules.len() {
            return None;
        }
        let r = c.rules.remove(index);
        self.add_uses(&r, -1);
        Some(r)
    }

    /// Remove all rules of `chain`.
    pub(crate) fn flush_chain(&mut self, chain: &str) {
        let rules = self
            .chain_mut(chain)
            .map(|c| std::mem::take(&mut c.rules))
            .unwrap_or_default();
        for r in &rules {
            self.add_uses(r, -1);
        }
    }

    /// Remove chain `name` with its rules.
    pub(crate) fn remove_chain(&mut self, name: &str) {
        self.flush_chain(name);
        if let Some(h) = self.chain_names.remove(name) {
            self.chains.remove(&h);
        }
        self.chain_uses.remove(name);
    }

    /// Remove set `name`, releasing its elements' chain references.
    pub(crate) fn remove_set(&mut self, name: &str) {
        if let Some(h) = self.set_names.remove(name) {
            if let Some(mut s) = self.sets.remove(&h) {
                for e in s.flush() {
                    self.element_uses(&e, -1);
                }
            }
        }
        self.set_uses.remove(name);
    }
}

fn bump(map: &mut BTreeMap<String, usize>, key: String, delta: isize) {
    let e = map.entry(key.clone()).or_insert(0);
    *e = e.saturating_add_signed(delta);
    if *e == 0 {
        map.remove(&key);
    }
}
