//! In-memory fakes of the dataplane traits, for the proxier's own unit tests.
//!
//! [`RecordingIptables`] keeps a line-level model of the tables (enough for
//! the proxier's stale-chain cleanup to see what exists) and records every
//! payload it was given. It is deliberately simple: the real fidelity lives in
//! the simulator. It still refuses what the kernel refuses that a proxier bug
//! could cause — a rule in an undeclared chain, deleting a missing chain — so
//! such bugs fail tests instead of passing silently.
//!
//! IPVS mode's fakes ([`RecordingIpvs`], [`RecordingIpset`],
//! [`RecordingAddresses`]) keep state like upstream's `ipvstest`,
//! `ipsettest` and `netlinktest` fakes, in the submodules of this one.

mod addresses;
mod ipset;
mod ipvs;

pub use addresses::RecordingAddresses;
pub use ipset::RecordingIpset;
pub use ipvs::RecordingIpvs;

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::iptables::{Iptables, RestoreFlags, RulePosition, Table};
use super::{
    Addresses, Conntrack, ConntrackFlow, DataplaneError, Ipset, Ipvs, Nfacct, Nftables, Sysctl,
};
use crate::k8s::{IpFamily, Protocol};

const BUILTIN: &[(Table, &[&str])] = &[
    (Table::Raw, &["PREROUTING", "OUTPUT"]),
    (
        Table::Mangle,
        &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
    ),
    (
        Table::Nat,
        &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
    ),
    (Table::Filter, &["INPUT", "FORWARD", "OUTPUT"]),
];

fn builtin(table: Table) -> &'static [&'static str] {
    BUILTIN
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
        .unwrap_or(&[])
}

fn parse_table(name: &str) -> Option<Table> {
    [Table::Raw, Table::Mangle, Table::Nat, Table::Filter]
        .into_iter()
        .find(|t| t.name() == name)
}

/// The chain a rule jumps or goes to, if any.
fn jump_target(rule: &str) -> Option<&str> {
    let mut words = rule.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-j" || w == "-g" {
            return words.next();
        }
    }
    None
}

fn is_builtin_target(target: &str) -> bool {
    matches!(
        target,
        "ACCEPT"
            | "DROP"
            | "RETURN"
            | "REJECT"
            | "DNAT"
            | "SNAT"
            | "MASQUERADE"
            | "MARK"
            | "CONNMARK"
            | "LOG"
            | "REDIRECT"
            | "NOTRACK"
            | "CT"
            | "TRACE"
    )
}

/// A fake `iptables` that remembers what it was told.
#[derive(Debug, Clone)]
pub struct RecordingIptables {
    family: IpFamily,
    random_fully: bool,
    /// When false, restores are recorded but not applied (benches measure
    /// the proxier, not this fake).
    apply_restores: bool,
    tables: BTreeMap<Table, IndexMap<String, Vec<String>>>,
    /// Every payload passed to `restore_all`, in order.
    pub restores: Vec<String>,
    /// Every `ensure_rule` call that added a rule: `(table, chain, argv)`.
    pub ensured_rules: Vec<(Table, String, Vec<String>)>,
    /// Every chain `ensure_chain` created: `(table, chain)`.
    pub ensured_chains: Vec<(Table, String)>,
}

impl RecordingIptables {
    pub fn new(family: IpFamily) -> Self {
        let mut tables = BTreeMap::new();
        for (table, chains) in BUILTIN {
            let mut t = IndexMap::new();
            for c in *chains {
                t.insert(c.to_string(), Vec::new());
            }
            tables.insert(*table, t);
        }
        RecordingIptables {
            family,
            random_fully: true,
            apply_restores: true,
            tables,
            restores: Vec::new(),
            ensured_rules: Vec::new(),
            ensured_chains: Vec::new(),
        }
    }

    /// Records payloads without applying them to the table model.
    pub fn payload_only(mut self) -> Self {
        self.apply_restores = false;
        self
    }

    /// Pretends the host's iptables lacks `--random-fully`.
    pub fn without_random_fully(mut self) -> Self {
        self.random_fully = false;
        self
    }

    /// The rules of a chain, as `-A CHAIN …` lines without the `-A CHAIN`.
    pub fn rules(&self, table: Table, chain: &str) -> Option<&[String]> {
        self.tables.get(&table)?.get(chain).map(Vec::as_slice)
    }

    /// The last payload restored.
    pub fn last_restore(&self) -> Option<&str> {
        self.restores.last().map(String::as_str)
    }

    fn apply(&mut self, payload: &str, flags: RestoreFlags) -> Result<(), DataplaneError> {
        let fail = |n: usize, msg: String| DataplaneError {
            operation: "iptables-restore".into(),
            message: msg,
            line: Some(n),
        };
        let mut tables = self.tables.clone();
        let mut current: Option<Table> = None;
        for (i, line) in payload.lines().enumerate() {
            let n = i + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                let table =
                    parse_table(name).ok_or_else(|| fail(n, format!("unknown table {name:?}")))?;
                if !flags.noflush {
                    let t = tables.get_mut(&table).expect("all tables exist");
                    t.retain(|c, _| builtin(table).contains(&c.as_str()));
                    t.values_mut().for_each(Vec::clear);
                }
                current = Some(table);
                continue;
            }
            let table = current.ok_or_else(|| fail(n, "line outside a table".into()))?;
            let chains = tables.get_mut(&table).expect("all tables exist");
            if line == "COMMIT" {
                current = None;
            } else if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or("").to_string();
                chains.entry(name).or_default().clear();
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let (chain, rule) = rest.split_once(' ').unwrap_or((rest, ""));
                chains
                    .get_mut(chain)
                    .ok_or_else(|| fail(n, format!("chain {chain} does not exist")))?
                    .push(rule.to_string());
            } else if let Some(chain) = line.strip_prefix("-X ") {
                if builtin(table).contains(&chain) {
                    return Err(fail(n, format!("cannot delete built-in chain {chain}")));
                }
                chains
                    .shift_remove(chain)
                    .ok_or_else(|| fail(n, format!("chain {chain} does not exist")))?;
            } else {
                return Err(fail(n, format!("unsupported line {line:?}")));
            }
        }
        if current.is_some() {
            return Err(fail(payload.lines().count(), "missing COMMIT".into()));
        }
        // Like the kernel, refuse a ruleset where a rule jumps to a chain
        // that does not exist (e.g. one deleted by this payload).
        for (table, chains) in &tables {
            for (name, rules) in chains {
                for rule in rules {
                    if let Some(target) = jump_target(rule) {
                        if !chains.contains_key(target) && !is_builtin_target(target) {
                            return Err(DataplaneError {
                                operation: "iptables-restore".into(),
                                message: format!(
                                    "rule in {table} chain {name} jumps to missing chain {target}"
                                ),
                                line: None,
                            });
                        }
                    }
                }
            }
        }
        self.tables = tables;
        Ok(())
    }
}

impl Iptables for RecordingIptables {
    fn family(&self) -> IpFamily {
        self.family
    }

    fn restore_all(&mut self, payload: &str, flags: RestoreFlags) -> Result<(), DataplaneError> {
        self.restores.push(payload.to_string());
        if self.apply_restores {
            self.apply(payload, flags)
        } else {
            Ok(())
        }
    }

    fn save(&mut self, table: Table) -> Result<String, DataplaneError> {
        let mut out = format!("*{}\n", table.name());
        let chains = &self.tables[&table];
        for name in chains.keys() {
            let policy = if builtin(table).contains(&name.as_str()) {
                "ACCEPT"
            } else {
                "-"
            };
            out.push_str(&format!(":{name} {policy} [0:0]\n"));
        }
        for (name, rules) in chains {
            for r in rules {
                out.push_str(&format!("-A {name} {r}\n"));
            }
        }
        out.push_str("COMMIT\n");
        Ok(out)
    }

    fn ensure_chain(&mut self, table: Table, chain: &str) -> Result<bool, DataplaneError> {
        let chains = self.tables.get_mut(&table).expect("all tables exist");
        let existed = chains.contains_key(chain);
        if !existed {
            chains.insert(chain.to_string(), Vec::new());
            self.ensured_chains.push((table, chain.to_string()));
        }
        Ok(existed)
    }

    fn ensure_rule(
        &mut self,
        position: RulePosition,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        let rule = args.join(" ");
        let rules = self
            .tables
            .get_mut(&table)
            .and_then(|t| t.get_mut(chain))
            .ok_or_else(|| {
                DataplaneError::new(
                    "iptables",
                    format!("chain {chain} does not exist in table {table}"),
                )
            })?;
        if rules.contains(&rule) {
            return Ok(true);
        }
        match position {
            RulePosition::Prepend => rules.insert(0, rule.clone()),
            RulePosition::Append => rules.push(rule.clone()),
        }
        self.ensured_rules
            .push((table, chain.to_string(), args.to_vec()));
        Ok(false)
    }

    fn delete_rule(
        &mut self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        let rule = args.join(" ");
        let Some(rules) = self.tables.get_mut(&table).and_then(|t| t.get_mut(chain)) else {
            return Ok(false);
        };
        match rules.iter().position(|r| *r == rule) {
            Some(i) => {
                rules.remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn delete_chain(&mut self, table: Table, chain: &str) -> Result<(), DataplaneError> {
        let chains = self.tables.get_mut(&table).expect("all tables exist");
        let referenced = chains
            .values()
            .flatten()
            .any(|r| jump_target(r) == Some(chain));
        match chains.get(chain) {
            None => Err(DataplaneError::new(
                "iptables -X",
                format!("chain {chain} does not exist in table {table}"),
            )),
            Some(rules) if !rules.is_empty() || referenced => Err(DataplaneError::new(
                "iptables -X",
                format!("chain {chain} in table {table} is not empty or still referenced"),
            )),
            Some(_) => {
                chains.shift_remove(chain);
                Ok(())
            }
        }
    }

    fn has_random_fully(&self) -> bool {
        self.random_fully
    }
}

/// A fake conntrack table: flows put in by the test, deletions recorded.
#[derive(Debug, Clone, Default)]
pub struct RecordingConntrack {
    pub flows: Vec<ConntrackFlow>,
    pub deleted: Vec<ConntrackFlow>,
}

impl Conntrack for RecordingConntrack {
    fn list_flows(
        &mut self,
        family: IpFamily,
        protocol: Protocol,
    ) -> Result<Vec<ConntrackFlow>, DataplaneError> {
        Ok(self
            .flows
            .iter()
            .filter(|f| f.protocol == protocol && IpFamily::of(&f.orig_dst) == family)
            .cloned()
            .collect())
    }

    fn delete_flows(&mut self, flows: &[ConntrackFlow]) -> Result<usize, DataplaneError> {
        let before = self.flows.len();
        self.flows.retain(|f| !flows.contains(f));
        self.deleted.extend_from_slice(flows);
        Ok(before - self.flows.len())
    }
}

/// A fake nfacct. Counters named in `unavailable` fail to be created, like
/// a kernel without `nfnetlink_acct` (or one that refuses that counter).
#[derive(Debug, Clone, Default)]
pub struct RecordingNfacct {
    pub unavailable: Vec<String>,
    pub counters: Vec<String>,
}

impl Nfacct for RecordingNfacct {
    fn ensure(&mut self, name: &str) -> Result<(), DataplaneError> {
        if self.unavailable.iter().any(|u| u == name) {
            return Err(DataplaneError::new(
                "nfacct",
                format!("cannot create counter {name}"),
            ));
        }
        if !self.counters.iter().any(|c| c == name) {
            self.counters.push(name.to_string());
        }
        Ok(())
    }
}

/// A fake `/proc/sys`.
#[derive(Debug, Clone, Default)]
pub struct RecordingSysctl {
    pub values: BTreeMap<String, i64>,
}

impl Sysctl for RecordingSysctl {
    fn get(&self, name: &str) -> Result<i64, DataplaneError> {
        self.values
            .get(name)
            .copied()
            .ok_or_else(|| DataplaneError::new("sysctl", format!("{name}: no such key")))
    }

    fn set(&mut self, name: &str, value: i64) -> Result<(), DataplaneError> {
        self.values.insert(name.to_string(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noflush_restore_keeps_unnamed_chains_and_is_atomic() {
        let mut ipt = RecordingIptables::new(IpFamily::V4);
        ipt.restore_all(
            "*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\nCOMMIT\n",
            RestoreFlags::KUBE_PROXY,
        )
        .unwrap();
        ipt.restore_all(
            "*nat\n:KUBE-B - [0:0]\n-A KUBE-B -j RETURN\nCOMMIT\n",
            RestoreFlags::KUBE_PROXY,
        )
        .unwrap();
        assert_eq!(ipt.rules(Table::Nat, "KUBE-A").unwrap(), ["-j KUBE-B"]);
        assert_eq!(ipt.rules(Table::Nat, "KUBE-B").unwrap(), ["-j RETURN"]);
        // A failing payload changes nothing.
        let err = ipt
            .restore_all(
                "*nat\n:KUBE-A - [0:0]\n-A KUBE-C -j RETURN\nCOMMIT\n",
                RestoreFlags::KUBE_PROXY,
            )
            .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(ipt.rules(Table::Nat, "KUBE-A").unwrap(), ["-j KUBE-B"]);
        // Deleting a chain that is still jumped to is refused as a whole.
        let err = ipt
            .restore_all(
                "*nat\n:KUBE-B - [0:0]\n-X KUBE-B\nCOMMIT\n",
                RestoreFlags::KUBE_PROXY,
            )
            .unwrap_err();
        assert!(err.message.contains("missing chain KUBE-B"), "{err}");
        assert!(ipt.rules(Table::Nat, "KUBE-B").is_some());
    }

    #[test]
    fn save_lists_declared_chains() {
        let mut ipt = RecordingIptables::new(IpFamily::V4);
        ipt.restore_all(
            "*filter\n:KUBE-X - [0:0]\nCOMMIT\n",
            RestoreFlags::KUBE_PROXY,
        )
        .unwrap();
        let save = ipt.save(Table::Filter).unwrap();
        assert_eq!(
            super::super::iptables::chains_in_save(&save),
            ["INPUT", "FORWARD", "OUTPUT", "KUBE-X"]
        );
    }
}

/// A fake `nft`: records every transaction. It does not interpret them
/// (the simulator's nftables model does); listings return what the test put
/// in `tables`.
#[derive(Debug, Clone, Default)]
pub struct RecordingNftables {
    pub transactions: Vec<String>,
    /// `(family, name) → listing` for `list_table`.
    pub tables: BTreeMap<(String, String), String>,
    /// Makes the next `run` fail with this message.
    pub fail_next: Option<String>,
}

impl Nftables for RecordingNftables {
    fn run(&mut self, transaction: &str) -> Result<(), DataplaneError> {
        self.transactions.push(transaction.to_string());
        match self.fail_next.take() {
            Some(msg) => Err(DataplaneError::new("nft -f", msg)),
            None => Ok(()),
        }
    }

    fn list_table(&mut self, family: &str, table: &str) -> Result<Option<String>, DataplaneError> {
        Ok(self
            .tables
            .get(&(family.to_string(), table.to_string()))
            .cloned())
    }

    fn list_ruleset(&mut self) -> Result<String, DataplaneError> {
        Ok(self.tables.values().cloned().collect())
    }
}

/// Every fake together: a whole recording node.
#[derive(Debug, Clone)]
pub struct RecordingKernel {
    pub iptables_v4: RecordingIptables,
    pub iptables_v6: RecordingIptables,
    pub nftables: RecordingNftables,
    pub conntrack: RecordingConntrack,
    pub nfacct: RecordingNfacct,
    pub sysctl: RecordingSysctl,
    pub ipvs: RecordingIpvs,
    pub ipset: RecordingIpset,
    pub addresses: RecordingAddresses,
}

impl Default for RecordingKernel {
    fn default() -> Self {
        RecordingKernel {
            iptables_v4: RecordingIptables::new(IpFamily::V4),
            iptables_v6: RecordingIptables::new(IpFamily::V6),
            nftables: RecordingNftables::default(),
            conntrack: RecordingConntrack::default(),
            nfacct: RecordingNfacct::default(),
            sysctl: RecordingSysctl::default(),
            ipvs: RecordingIpvs::default(),
            ipset: RecordingIpset::default(),
            addresses: RecordingAddresses::default(),
        }
    }
}

impl super::Kernel for RecordingKernel {
    fn iptables(&mut self, family: IpFamily) -> &mut dyn Iptables {
        match family {
            IpFamily::V4 => &mut self.iptables_v4,
            IpFamily::V6 => &mut self.iptables_v6,
        }
    }
    fn nftables(&mut self) -> &mut dyn Nftables {
        &mut self.nftables
    }
    fn conntrack(&mut self) -> &mut dyn Conntrack {
        &mut self.conntrack
    }
    fn nfacct(&mut self) -> &mut dyn Nfacct {
        &mut self.nfacct
    }
    fn sysctl(&mut self) -> &mut dyn Sysctl {
        &mut self.sysctl
    }
    fn ipvs(&mut self) -> &mut dyn Ipvs {
        &mut self.ipvs
    }
    fn ipset(&mut self) -> &mut dyn Ipset {
        &mut self.ipset
    }
    fn addresses(&mut self) -> &mut dyn Addresses {
        &mut self.addresses
    }
}
