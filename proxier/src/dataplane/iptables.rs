//! The iptables interface, as upstream's `pkg/util/iptables.Interface` uses it.
//!
//! Rules travel as text in `iptables-restore` format: the same bytes go to the
//! kernel's `iptables-restore` and to the simulator's parser, which is what
//! makes a rule snapshot also a test of what the kernel would load.

use std::fmt;

use super::DataplaneError;
use crate::k8s::IpFamily;

/// The netfilter tables kube-proxy touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Raw,
    Mangle,
    Nat,
    Filter,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `iptables-restore` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreFlags {
    /// `--noflush`: chains not named in the payload are left alone.
    pub noflush: bool,
    /// `--counters`: keep the `[packets:bytes]` given in the payload.
    pub counters: bool,
}

impl RestoreFlags {
    /// What kube-proxy's syncs use: `--noflush --counters`.
    pub const KUBE_PROXY: RestoreFlags = RestoreFlags {
        noflush: true,
        counters: true,
    };
}

/// Where `ensure_rule` puts a missing rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePosition {
    /// `-I chain` (first).
    Prepend,
    /// `-A chain` (last).
    Append,
}

/// One address family's iptables (`iptables` or `ip6tables`).
pub trait Iptables {
    /// Which family this handle manages.
    fn family(&self) -> IpFamily;

    /// Applies an `iptables-restore` payload atomically.
    fn restore_all(&mut self, payload: &str, flags: RestoreFlags) -> Result<(), DataplaneError>;

    /// `iptables-save -t TABLE` output.
    fn save(&mut self, table: Table) -> Result<String, DataplaneError>;

    /// Creates `chain` in `table` if missing; returns whether it existed.
    fn ensure_chain(&mut self, table: Table, chain: &str) -> Result<bool, DataplaneError>;

    /// Adds the rule `args` to `chain` unless an identical rule is there;
    /// returns whether it existed.
    fn ensure_rule(
        &mut self,
        position: RulePosition,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError>;

    /// Whether `MASQUERADE --random-fully` is supported.
    fn has_random_fully(&self) -> bool;

    /// `iptables -D CHAIN ARGS`: deletes the rule `args` from `chain` if it
    /// is there; returns whether it was (upstream's `DeleteRule`).
    fn delete_rule(
        &mut self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError>;

    /// `iptables -X CHAIN`: deletes an empty, unreferenced chain; an error
    /// if it does not exist or is referenced (upstream's `DeleteChain`).
    fn delete_chain(&mut self, table: Table, chain: &str) -> Result<(), DataplaneError>;

    /// Which tool and family this is, for reports: `iptables (IPv4)`.
    fn label(&self) -> String {
        format!("iptables ({})", self.family().api_name())
    }
}

/// The chain names declared in `iptables-save` output (`:NAME POLICY …`
/// lines), in order — upstream's `GetChainsFromTable`.
pub fn chains_in_save(save: &str) -> Vec<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}
