//! The kernel's iptables state for one address family: four tables, their
//! built-in and user chains, the rules in each chain and their counters.
//!
//! Models: `raw`, `mangle`, `nat` and `filter` with the built-in chains
//! (and policies) the kernel gives each, user chains (listed by
//! iptables-save in byte order of their names, which is how they are kept),
//! per-rule and per-policy packet/byte counters, which tables exist (a table
//! comes into being when a restore first touches it), and the reference
//! count of every user chain.
//!
//! Must never: let a jump point at a chain that does not exist, or let the
//! reference counts drift from the rules — every change goes through the
//! primitives here. It knows nothing of Kubernetes.
//!
//! Error contract: the query API cannot fail; lookups return `Option`. The
//! crate-internal mutation primitives assume their callers (`apply`) checked
//! preconditions, and return [`ErrorKind`] where a precondition can still
//! fail.

use std::collections::BTreeMap;
use std::fmt;

use super::addr::Family;
use super::error::ErrorKind;
use super::rule::Rule;
use super::targets::Target;

/// Which iptables binary's behaviour to reproduce. Both are v1.8.9; they
/// differ in how flush-mode restores treat tables, in table order in
/// iptables-save output, and in a few rule normalisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Variant {
    /// `iptables-nft` (`iptables` on current distributions).
    #[default]
    Nft,
    /// `iptables-legacy` (the x_tables kernel interface).
    Legacy,
}

/// One of the four tables this model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableId {
    /// `raw`
    Raw,
    /// `mangle`
    Mangle,
    /// `nat`
    Nat,
    /// `filter`
    Filter,
}

impl TableId {
    /// All tables.
    pub const ALL: [TableId; 4] = [TableId::Raw, TableId::Mangle, TableId::Nat, TableId::Filter];

    /// The table's name as `*name` spells it.
    pub fn name(self) -> &'static str {
        match self {
            TableId::Raw => "raw",
            TableId::Mangle => "mangle",
            TableId::Nat => "nat",
            TableId::Filter => "filter",
        }
    }

    /// The table called `name`.
    pub fn from_name(name: &str) -> Option<TableId> {
        TableId::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The hooks of the table's built-in chains, in iptables-save order.
    pub fn hooks(self) -> &'static [Hook] {
        use Hook::*;
        match self {
            TableId::Raw => &[Prerouting, Output],
            TableId::Mangle => &[Prerouting, Input, Forward, Output, Postrouting],
            TableId::Nat => &[Prerouting, Input, Output, Postrouting],
            TableId::Filter => &[Input, Forward, Output],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A netfilter hook, and the built-in chain of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// `PREROUTING`
    Prerouting,
    /// `INPUT`
    Input,
    /// `FORWARD`
    Forward,
    /// `OUTPUT`
    Output,
    /// `POSTROUTING`
    Postrouting,
}

impl Hook {
    /// The built-in chain name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A built-in chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Policy {
    /// `ACCEPT`
    #[default]
    Accept,
    /// `DROP`
    Drop,
}

impl Policy {
    /// `ACCEPT` or `DROP`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Policy, ErrorKind> {
        match text {
            "ACCEPT" => Ok(Policy::Accept),
            "DROP" => Ok(Policy::Drop),
            _ => Err(ErrorKind::BadPolicy {
                token: text.to_string(),
            }),
        }
    }
}

/// Packet and byte counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Counters {
    /// Parse the `[packets:bytes]` form.
    pub(crate) fn parse_bracketed(text: &str) -> Result<Counters, ErrorKind> {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.split_once(':'));
        match inner {
            Some((p, b)) => Counters::parse_pair("[packets:bytes]", p, b).map_err(|_| {
                ErrorKind::bad_value("[packets:bytes]", text, "counters are two decimal numbers")
            }),
            None => Err(ErrorKind::bad_value(
                "[packets:bytes]",
                text,
                "expected counters like [0:0]",
            )),
        }
    }

    pub(crate) fn parse_pair(option: &str, p: &str, b: &str) -> Result<Counters, ErrorKind> {
        let num = |t: &str| {
            t.parse::<u64>()
                .map_err(|_| ErrorKind::bad_value(option, t, "counters are decimal numbers"))
        };
        Ok(Counters {
            packets: num(p)?,
            bytes: num(b)?,
        })
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}:{}]", self.packets, self.bytes)
    }
}

/// What a built-in chain has that a user chain does not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BuiltinInfo {
    hook: Hook,
    policy: Policy,
    counters: Counters,
}

/// A chain: its rules in order and, for a built-in chain, hook and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    name: String,
    builtin: Option<BuiltinInfo>,
    rules: Vec<Rule>,
    counters: Vec<Counters>,
}

impl Chain {
    fn new_builtin(hook: Hook) -> Chain {
        Chain {
            name: hook.name().to_string(),
            builtin: Some(BuiltinInfo {
                hook,
                policy: Policy::Accept,
                counters: Counters::default(),
            }),
            rules: Vec::new(),
            counters: Vec::new(),
        }
    }

    fn new_user(name: &str) -> Chain {
        Chain {
            name: name.to_string(),
            builtin: None,
            rules: Vec::new(),
            counters: Vec::new(),
        }
    }

    /// The chain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is a built-in chain.
    pub fn is_builtin(&self) -> bool {
        self.builtin.is_some()
    }

    /// The hook a built-in chain is attached to.
    pub fn hook(&self) -> Option<Hook> {
        self.builtin.as_ref().map(|b| b.hook)
    }

    /// A built-in chain's policy.
    pub fn policy(&self) -> Option<Policy> {
        self.builtin.as_ref().map(|b| b.policy)
    }

    /// A built-in chain's policy counters (zero for user chains).
    pub fn policy_counters(&self) -> Counters {
        self.builtin
            .as_ref()
            .map(|b| b.counters)
            .unwrap_or_default()
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Rule `index` (0-based).
    pub fn rule(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index)
    }

    /// Counters of rule `index` (0-based).
    pub fn rule_counters(&self, index: usize) -> Option<Counters> {
        self.counters.get(index).copied()
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the chain has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn set_policy(&mut self, policy: Policy, counters: Option<Counters>) {
        if let Some(b) = &mut self.builtin {
            b.policy = policy;
            if let Some(c) = counters {
                b.counters = c;
            }
        }
    }

    pub(crate) fn set_policy_counters(&mut self, counters: Counters) {
        if let Some(b) = &mut self.builtin {
            b.counters = counters;
        }
    }

    pub(crate) fn zero(&mut self) {
        self.counters
            .iter_mut()
            .for_each(|c| *c = Counters::default());
        self.set_policy_counters(Counters::default());
    }
}

/// One table: built-in chains in hook order, then user chains by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    id: TableId,
    builtins: Vec<Chain>,
    users: BTreeMap<String, Chain>,
    refs: BTreeMap<String, usize>,
}

impl Table {
    fn new(id: TableId) -> Table {
        Table {
            id,
            builtins: id.hooks().iter().map(|h| Chain::new_builtin(*h)).collect(),
            users: BTreeMap::new(),
            refs: BTreeMap::new(),
        }
    }

    /// Which table this is.
    pub fn id(&self) -> TableId {
        self.id
    }

    /// All chains: built-in chains in hook order, then user chains in byte
    /// order of their names (the order iptables-save lists them in).
    pub fn chains(&self) -> impl Iterator<Item = &Chain> {
        self.builtins.iter().chain(self.users.values())
    }

    /// The built-in chains in hook order.
    pub fn builtin_chains(&self) -> impl Iterator<Item = &Chain> {
        self.builtins.iter()
    }

    /// The user chains in name order.
    pub fn user_chains(&self) -> impl Iterator<Item = &Chain> {
        self.users.values()
    }

    /// The chain called `name`.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.builtins
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.users.get(name))
    }

    /// The built-in chain of a hook, if this table has one.
    pub fn builtin(&self, hook: Hook) -> Option<&Chain> {
        self.builtins.iter().find(|c| c.hook() == Some(hook))
    }

    /// The number of rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains().map(Chain::len).sum()
    }

    /// How many rules jump or go to user chain `name`.
    pub fn references(&self, name: &str) -> usize {
        self.refs.get(name).copied().unwrap_or(0)
    }

    pub(crate) fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        match self.builtins.iter_mut().find(|c| c.name == name) {
            Some(c) => Some(c),
            None => self.users.get_mut(name),
        }
    }

    pub(crate) fn chains_mut(&mut self) -> impl Iterator<Item = &mut Chain> {
        self.builtins.iter_mut().chain(self.users.values_mut())
    }

    pub(crate) fn is_builtin_name(&self, name: &str) -> bool {
        self.builtins.iter().any(|c| c.name == name)
    }

    /// Create an empty user chain (caller checked it does not exist).
    pub(crate) fn create_user(&mut self, name: &str) {
        self.users.insert(name.to_string(), Chain::new_user(name));
    }

    /// Insert a rule at 0-based `index`, keeping reference counts.
    pub(crate) fn insert_rule(
        &mut self,
        chain: &str,
        index: usize,
        rule: Rule,
        counters: Counters,
    ) {
        if let Some(target) = rule.jump_chain() {
            *self.refs.entry(target.to_string()).or_insert(0) += 1;
        }
        if let Some(c) = self.chain_mut(chain) {
            c.rules.insert(index, rule);
            c.counters.insert(index, counters);
        }
    }

    /// Remove rule `index` (0-based), keeping reference counts.
    pub(crate) fn remove_rule(&mut self, chain: &str, index: usize) {
        let Some(c) = self.chain_mut(chain) else {
            return;
        };
        if index >= c.rules.len() {
            return;
        }
        let rule = c.rules.remove(index);
        c.counters.remove(index);
        self.unref(&rule);
    }

    /// Remove all rules of a chain, keeping reference counts.
    pub(crate) fn flush_chain(&mut self, chain: &str) {
        let Some(c) = self.chain_mut(chain) else {
            return;
        };
        let rules = std::mem::take(&mut c.rules);
        c.counters.clear();
        for r in &rules {
            self.unref(r);
        }
    }

    /// Delete an empty, unreferenced user chain.
    pub(crate) fn delete_user(&mut self, name: &str) {
        self.users.remove(name);
        self.refs.remove(name);
    }

    /// Rename a user chain, moving the references with it.
    pub(crate) fn rename_user(&mut self, old: &str, new: &str) {
        let Some(mut chain) = self.users.remove(old) else {
            return;
        };
        chain.name = new.to_string();
        self.users.insert(new.to_string(), chain);
        for c in self.chains_mut() {
            for r in &mut c.rules {
                if let Some(Target::Jump(n) | Target::Goto(n)) = &mut r.target {
                    if n == old {
                        *n = new.to_string();
                    }
                }
            }
        }
        if let Some(n) = self.refs.remove(old) {
            self.refs.insert(new.to_string(), n);
        }
    }

    /// Names of all user chains.
    pub(crate) fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    fn unref(&mut self, rule: &Rule) {
        if let Some(target) = rule.jump_chain() {
            if let Some(n) = self.refs.get_mut(target) {
                *n -= 1;
                if *n == 0 {
                    self.refs.remove(target);
                }
            }
        }
    }
}

/// The iptables state of one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    family: Family,
    variant: Variant,
    tables: Vec<Table>,
    /// Tables that exist, in the order they came into being.
    created: Vec<TableId>,
}

impl Ruleset {
    /// An empty ruleset, as in a fresh network namespace: no table exists yet.
    pub fn new(family: Family, variant: Variant) -> Ruleset {
        Ruleset {
            family,
            variant,
            tables: TableId::ALL.into_iter().map(Table::new).collect(),
            created: Vec::new(),
        }
    }

    /// The address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The iptables variant reproduced.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The existing tables in the order iptables-save prints them: for nft,
    /// mangle, raw, filter, nat; for legacy, the most recently created first.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        let order: Vec<TableId> = match self.variant {
            Variant::Nft => [TableId::Mangle, TableId::Raw, TableId::Filter, TableId::Nat]
                .into_iter()
                .filter(|t| self.created.contains(t))
                .collect(),
            Variant::Legacy => self.created.iter().rev().copied().collect(),
        };
        order.into_iter().map(|t| &self.tables[t.index()])
    }

    /// A table, if it exists.
    pub fn table(&self, id: TableId) -> Option<&Table> {
        self.created.contains(&id).then(|| &self.tables[id.index()])
    }

    /// A chain of a table, if both exist.
    pub fn chain(&self, table: TableId, chain: &str) -> Option<&Chain> {
        self.table(table)?.chain(chain)
    }

    /// The number of rules in all tables.
    pub fn rule_count(&self) -> usize {
        self.tables().map(Table::rule_count).sum()
    }

    /// Add one packet of `bytes` to a rule's counters (for the evaluator).
    /// Returns false if there is no such rule.
    pub fn count_rule(&mut self, table: TableId, chain: &str, index: usize, bytes: u64) -> bool {
        let t = &mut self.tables[table.index()];
        match t.chain_mut(chain).and_then(|c| c.counters.get_mut(index)) {
            Some(c) => {
                c.packets += 1;
                c.bytes += bytes;
                true
            }
            None => false,
        }
    }

    /// Add one packet of `bytes` to a built-in chain's policy counters.
    pub fn count_policy(&mut self, table: TableId, chain: &str, bytes: u64) -> bool {
        let t = &mut self.tables[table.index()];
        match t.chain_mut(chain).and_then(|c| c.builtin.as_mut()) {
            Some(b) => {
                b.counters.packets += 1;
                b.counters.bytes += bytes;
                true
            }
            None => false,
        }
    }

    pub(crate) fn table_mut(&mut self, id: TableId) -> &mut Table {
        &mut self.tables[id.index()]
    }

    /// Make a table exist (no-op if it does).
    pub(crate) fn instantiate(&mut self, id: TableId) {
        if !self.created.contains(&id) {
            self.created.push(id);
        }
    }

    /// Delete a table entirely (nft flush semantics): it stops existing and
    /// comes back with default built-in chains when next touched.
    pub(crate) fn delete_table(&mut self, id: TableId) {
        self.created.retain(|t| *t != id);
        self.tables[id.index()] = Table::new(id);
    }
}
