//! The proxier's [`Iptables`] trait over the simulator's netfilter ruleset.
//!
//! Restores go through `sim`'s iptables-restore parser (the same text the
//! kernel would load, applied atomically); `ensure_chain`/`ensure_rule` are
//! turned into one-line `--noflush` payloads, and an existing rule is found
//! the way `iptables -C` finds it: by comparing normalised rules.

use proxier::dataplane::{DataplaneError, Iptables, RestoreFlags, RulePosition, Table};
use proxier::k8s::IpFamily;
use sim::netfilter::{
    Family, RestoreMode, RestoreOptions, Rule, Ruleset, SaveOptions, TableId, Variant,
};

/// One family's simulated iptables.
#[derive(Debug, Clone)]
pub struct SimIptables {
    family: IpFamily,
    pub ruleset: Ruleset,
    random_fully: bool,
    /// The last payload given to `restore_all` (what `kpsim rules` prints).
    pub last_restore: Option<String>,
}

fn sim_family(family: IpFamily) -> Family {
    match family {
        IpFamily::V4 => Family::Ipv4,
        IpFamily::V6 => Family::Ipv6,
    }
}

fn table_id(table: Table) -> TableId {
    TableId::from_name(table.name()).expect("the four tables exist in the simulator")
}

/// Quotes one argv word for an iptables-restore line.
fn quote(word: &str) -> String {
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

impl SimIptables {
    pub fn new(family: IpFamily, variant: Variant) -> Self {
        SimIptables {
            family,
            ruleset: Ruleset::new(sim_family(family), variant),
            random_fully: true,
            last_restore: None,
        }
    }

    fn restore_text(
        &mut self,
        op: &str,
        text: &str,
        mode: RestoreMode,
        counters: bool,
    ) -> Result<(), DataplaneError> {
        self.ruleset
            .restore_with(
                text,
                &RestoreOptions {
                    mode,
                    counters,
                    objects: None,
                },
            )
            .map_err(|e| DataplaneError {
                operation: op.to_string(),
                message: e.kind.to_string(),
                line: Some(e.line),
            })
    }
}

impl Iptables for SimIptables {
    fn family(&self) -> IpFamily {
        self.family
    }

    fn restore_all(&mut self, payload: &str, flags: RestoreFlags) -> Result<(), DataplaneError> {
        self.last_restore = Some(payload.to_string());
        let mode = if flags.noflush {
            RestoreMode::NoFlush
        } else {
            RestoreMode::Flush
        };
        self.restore_text("iptables-restore", payload, mode, flags.counters)
    }

    fn save(&mut self, table: Table) -> Result<String, DataplaneError> {
        Ok(self.ruleset.save_with(&SaveOptions {
            counters: false,
            table: Some(table_id(table)),
        }))
    }

    fn ensure_chain(&mut self, table: Table, chain: &str) -> Result<bool, DataplaneError> {
        if self.ruleset.chain(table_id(table), chain).is_some() {
            return Ok(true);
        }
        let text = format!("*{}\n:{chain} - [0:0]\nCOMMIT\n", table.name());
        self.restore_text("iptables -N", &text, RestoreMode::NoFlush, false)?;
        Ok(false)
    }

    fn ensure_rule(
        &mut self,
        position: RulePosition,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        let line: Vec<String> = args.iter().map(|a| quote(a)).collect();
        let line = line.join(" ");
        let id = table_id(table);
        let wanted = Rule::parse(&line, id, self.ruleset.family(), self.ruleset.variant())
            .map_err(|e| DataplaneError::new("iptables -C", e.to_string()))?;
        let family = self.ruleset.family();
        let wanted_text = wanted.to_save_args(family);
        let exists = self.ruleset.chain(id, chain).is_some_and(|c| {
            c.rules()
                .iter()
                .any(|r| r.to_save_args(family) == wanted_text)
        });
        if exists {
            return Ok(true);
        }
        let command = match position {
            RulePosition::Prepend => format!("-I {chain} 1"),
            RulePosition::Append => format!("-A {chain}"),
        };
        let text = format!("*{}\n{command} {line}\nCOMMIT\n", table.name());
        self.restore_text("iptables", &text, RestoreMode::NoFlush, false)?;
        Ok(false)
    }

    fn has_random_fully(&self) -> bool {
        self.random_fully
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_rule_is_idempotent_and_prepends() {
        let mut ipt = SimIptables::new(IpFamily::V4, Variant::Nft);
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
    fn a_refused_payload_names_its_line() {
        let mut ipt = SimIptables::new(IpFamily::V4, Variant::Nft);
        let err = ipt
            .restore_all(
                "*nat\n:KUBE-X - [0:0]\n-A KUBE-X -m bogus -j RETURN\nCOMMIT\n",
                RestoreFlags::KUBE_PROXY,
            )
            .unwrap_err();
        assert_eq!(err.line, Some(3));
    }
}
