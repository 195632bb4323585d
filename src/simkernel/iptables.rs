//! The proxier's [`Iptables`] trait over a simulated node's rulesets.
//!
//! Restores go through the node's iptables-restore (atomic, references to
//! ipsets and nfacct counters checked like the kernel); `ensure_chain` and
//! `ensure_rule` become one-line `--noflush` payloads, and an existing rule
//! is found the way `iptables -C` finds it: by comparing normalised rules.

use proxier::dataplane::{DataplaneError, Iptables, RestoreFlags, RulePosition, Table};
use proxier::k8s::IpFamily;
use sim::netfilter::{RestoreMode, Rule, SaveOptions, TableId};
use sim::node::NodeError;

use super::{sim_family, SimKernel};

fn table_id(table: Table) -> TableId {
    TableId::from_name(table.name()).expect("the four tables exist in the simulator")
}

/// Quotes one argv word for an iptables-restore line.
pub(crate) fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:!,+=[]".contains(c))
    {
        word.to_string()
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn restore_error(op: &str, e: NodeError) -> DataplaneError {
    match e {
        NodeError::Restore { error, .. } => DataplaneError {
            operation: op.to_string(),
            message: error.kind.to_string(),
            line: Some(error.line),
        },
        other => DataplaneError::new(op, other.to_string()),
    }
}

impl SimKernel<'_> {
    fn restore_text(
        &mut self,
        op: &str,
        text: &str,
        mode: RestoreMode,
    ) -> Result<(), DataplaneError> {
        self.node
            .restore(sim_family(self.family), text, mode)
            .map_err(|e| restore_error(op, e))
    }
}

impl Iptables for SimKernel<'_> {
    fn family(&self) -> IpFamily {
        self.family
    }

    fn restore_all(&mut self, payload: &str, flags: RestoreFlags) -> Result<(), DataplaneError> {
        let last = match self.family {
            IpFamily::V4 => &mut self.side.last_restore_v4,
            IpFamily::V6 => &mut self.side.last_restore_v6,
        };
        *last = Some(payload.to_string());
        let mode = if flags.noflush {
            RestoreMode::NoFlush
        } else {
            RestoreMode::Flush
        };
        self.restore_text("iptables-restore", payload, mode)
    }

    fn save(&mut self, table: Table) -> Result<String, DataplaneError> {
        let opts = SaveOptions {
            counters: false,
            table: Some(table_id(table)),
        };
        Ok(self.node.iptables(sim_family(self.family)).save_with(&opts))
    }

    fn ensure_chain(&mut self, table: Table, chain: &str) -> Result<bool, DataplaneError> {
        if self
            .node
            .iptables(sim_family(self.family))
            .chain(table_id(table), chain)
            .is_some()
        {
            return Ok(true);
        }
        let text = format!("*{}\n:{chain} - [0:0]\nCOMMIT\n", table.name());
        self.restore_text("iptables -N", &text, RestoreMode::NoFlush)?;
        Ok(false)
    }

    fn ensure_rule(
        &mut self,
        position: RulePosition,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        let (line, exists) = self.find_rule(table, chain, args)?;
        if exists {
            return Ok(true);
        }
        let command = match position {
            RulePosition::Prepend => format!("-I {chain} 1"),
            RulePosition::Append => format!("-A {chain}"),
        };
        let text = format!("*{}\n{command} {line}\nCOMMIT\n", table.name());
        self.restore_text("iptables", &text, RestoreMode::NoFlush)?;
        Ok(false)
    }

    fn has_random_fully(&self) -> bool {
        true
    }

    fn delete_rule(
        &mut self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        let (line, exists) = self.find_rule(table, chain, args)?;
        if !exists {
            return Ok(false);
        }
        let text = format!("*{}\n-D {chain} {line}\nCOMMIT\n", table.name());
        self.restore_text("iptables -D", &text, RestoreMode::NoFlush)?;
        Ok(true)
    }

    fn delete_chain(&mut self, table: Table, chain: &str) -> Result<(), DataplaneError> {
        let text = format!("*{}\n-X {chain}\nCOMMIT\n", table.name());
        self.restore_text("iptables -X", &text, RestoreMode::NoFlush)
    }
}

impl SimKernel<'_> {
    /// `args` as one restore line, and whether `chain` holds an equal rule
    /// (compared normalised, the way `iptables -C` compares).
    fn find_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(String, bool), DataplaneError> {
        let line: Vec<String> = args.iter().map(|a| quote(a)).collect();
        let line = line.join(" ");
        let id = table_id(table);
        let ruleset = self.node.iptables(sim_family(self.family));
        let (family, variant) = (ruleset.family(), ruleset.variant());
        let wanted = Rule::parse(&line, id, family, variant)
            .map_err(|e| DataplaneError::new("iptables -C", e.to_string()))?
            .to_save_args(family);
        let exists = ruleset
            .chain(id, chain)
            .is_some_and(|c| c.rules().iter().any(|r| r.to_save_args(family) == wanted));
        Ok((line, exists))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simkernel::KernelSide;
    use proxier::dataplane::Kernel;
    use sim::netfilter::Variant;
    use sim::node::Node;
    use sim::time::Instant;

    #[test]
    fn ensure_rule_is_idempotent_and_prepends() {
        let mut node = Node::new("n", 1, Variant::Nft);
        let mut side = KernelSide::default();
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        let ipt = k.iptables(IpFamily::V4);
        ipt.ensure_chain(Table::Nat, "KUBE-SERVICES").unwrap();
        let args: Vec<String> = [
            "-m",
            "comment",
            "--comment",
            "kubernetes service portals",
            "-j",
            "KUBE-SERVICES",
        ]
        .map(String::from)
        .to_vec();
        assert!(!ipt
            .ensure_rule(RulePosition::Prepend, Table::Nat, "PREROUTING", &args)
            .unwrap());
        assert!(ipt
            .ensure_rule(RulePosition::Prepend, Table::Nat, "PREROUTING", &args)
            .unwrap());
        let save = ipt.save(Table::Nat).unwrap();
        assert!(
            save.contains("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"),
            "{save}"
        );
        assert_eq!(save.matches("-A PREROUTING").count(), 1);
    }

    #[test]
    fn a_refused_payload_names_its_line_and_changes_nothing() {
        let mut node = Node::new("n", 1, Variant::Nft);
        let mut side = KernelSide::default();
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        let ipt = k.iptables(IpFamily::V4);
        let err = ipt
            .restore_all(
                "*nat\n:KUBE-X - [0:0]\n-A KUBE-X -m bogus -j RETURN\nCOMMIT\n",
                RestoreFlags::KUBE_PROXY,
            )
            .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(!ipt.save(Table::Nat).unwrap().contains("KUBE-X"));
    }
}
