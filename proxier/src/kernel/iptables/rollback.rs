//! Keeping a multi-table restore all-or-nothing.
//!
//! `iptables-restore` commits each table at its `COMMIT` line (both
//! variants, measured with iptables 1.8.9): when the kernel refuses the
//! `*nat` section of a `*filter … *nat …` payload, the filter section is
//! already in. The [`Iptables`](crate::dataplane::Iptables) contract is
//! stricter — on error nothing of the payload is applied — so before a
//! payload with more than one table, the chains its earlier sections name
//! are read with `iptables -S CHAIN -t TABLE` (cheap: a few chains, and
//! iptables-nft fetches only that chain), and after a refusal the sections
//! that were committed are put back with one `--noflush` restore: chains
//! that existed get their old rules (and policy), chains that did not are
//! deleted. Rule counters in those chains restart from zero.
//!
//! The last section needs no snapshot: its own refusal leaves it untouched.

use std::collections::{BTreeMap, BTreeSet};

/// One `*table … COMMIT` section of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub table: String,
    /// 1-based lines of `*table` and of its `COMMIT`.
    pub first_line: usize,
    pub last_line: usize,
    /// Chains the section declares or deletes, in order, once each.
    pub chains: Vec<String>,
}

/// The payload's sections.
pub fn sections(payload: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut open = false;
    for (i, line) in payload.lines().enumerate() {
        let n = i + 1;
        if let Some(table) = line.strip_prefix('*') {
            seen.clear();
            out.push(Section {
                table: table.to_string(),
                first_line: n,
                last_line: n,
                chains: Vec::new(),
            });
            open = true;
            continue;
        }
        let Some(section) = out.last_mut().filter(|_| open) else {
            continue;
        };
        section.last_line = n;
        let chain = line
            .strip_prefix(':')
            .or_else(|| line.strip_prefix("-X "))
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(chain) = chain {
            if seen.insert(chain) {
                section.chains.push(chain.to_string());
            }
        }
        if line == "COMMIT" {
            open = false;
        }
    }
    out
}

/// A chain as it was before the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainState {
    /// It existed: its `:NAME POLICY [0:0]` line and its `-A` lines.
    Existed { decl: String, rules: Vec<String> },
    /// It did not exist.
    Absent { name: String },
}

/// Reads `iptables -S CHAIN` output (`-N`/`-P` then `-A` lines).
pub fn parse_listing(name: &str, listing: &str) -> ChainState {
    let mut decl = format!(":{name} - [0:0]");
    let mut rules = Vec::new();
    for line in listing.lines() {
        if let Some(rest) = line.strip_prefix("-P ") {
            let policy = rest.split_whitespace().nth(1).unwrap_or("ACCEPT");
            decl = format!(":{name} {policy} [0:0]");
        } else if line.starts_with("-A ") {
            rules.push(line.to_string());
        }
    }
    ChainState::Existed { decl, rules }
}

/// Above this many chains in a section, the snapshot reads the table with
/// one `iptables-save -t TABLE` instead of an `iptables -S` per chain.
pub const MAX_LISTED_CHAINS: usize = 32;

/// The states of `chains` in `iptables-save -t TABLE` output.
pub fn states_from_save(chains: &[String], save: &str) -> Vec<ChainState> {
    let mut decls: BTreeMap<&str, String> = BTreeMap::new();
    let mut rules: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for line in save.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            if let (Some(name), Some(policy)) = (words.next(), words.next()) {
                decls.insert(name, format!(":{name} {policy} [0:0]"));
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            if let Some(name) = rest.split_whitespace().next() {
                rules.entry(name).or_default().push(line.to_string());
            }
        }
    }
    chains
        .iter()
        .map(|c| match decls.get(c.as_str()) {
            Some(decl) => ChainState::Existed {
                decl: decl.clone(),
                rules: rules.remove(c.as_str()).unwrap_or_default(),
            },
            None => ChainState::Absent { name: c.clone() },
        })
        .collect()
}

/// The `--noflush` payload putting `table`'s chains back as they were.
pub fn rollback_payload(table: &str, chains: &[ChainState]) -> String {
    let mut s = format!("*{table}\n");
    for c in chains {
        match c {
            ChainState::Existed { decl, .. } => s.push_str(&format!("{decl}\n")),
            ChainState::Absent { name } => s.push_str(&format!(":{name} - [0:0]\n")),
        }
    }
    for c in chains {
        if let ChainState::Existed { rules, .. } = c {
            for r in rules {
                s.push_str(&format!("{r}\n"));
            }
        }
    }
    for c in chains {
        if let ChainState::Absent { name } = c {
            s.push_str(&format!("-X {name}\n"));
        }
    }
    s.push_str("COMMIT\n");
    s
}

/// The sections to put back after a refusal at payload line `failed`
/// (`None`: unknown, so every section but the last).
pub fn committed_before(sections: &[Section], failed: Option<usize>) -> usize {
    match failed {
        Some(n) => sections.iter().take_while(|s| s.last_line < n).count(),
        None => sections.len().saturating_sub(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_name_their_chains() {
        let p = "*filter\n:KUBE-A - [0:0]\n-A KUBE-A -j RETURN\nCOMMIT\n*nat\n:KUBE-B - [0:0]\n-X KUBE-B\nCOMMIT\n";
        let s = sections(p);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].first_line, s[0].last_line), (1, 4));
        assert_eq!(s[0].chains, ["KUBE-A"]);
        assert_eq!(s[1].chains, ["KUBE-B"]);
        assert_eq!(committed_before(&s, Some(3)), 0);
        assert_eq!(committed_before(&s, Some(7)), 1);
        assert_eq!(committed_before(&s, None), 1);
    }

    #[test]
    fn a_save_gives_the_same_states_as_listings() {
        let save = "*filter\n:INPUT DROP [5:10]\n:KUBE-A - [0:0]\n-A INPUT -j KUBE-A\n-A KUBE-A -j RETURN\nCOMMIT\n";
        let chains: Vec<String> = ["KUBE-A", "INPUT", "KUBE-NEW"].map(String::from).to_vec();
        assert_eq!(
            states_from_save(&chains, save),
            [
                parse_listing("KUBE-A", "-N KUBE-A\n-A KUBE-A -j RETURN\n"),
                parse_listing("INPUT", "-P INPUT DROP\n-A INPUT -j KUBE-A\n"),
                ChainState::Absent {
                    name: "KUBE-NEW".into()
                },
            ]
        );
    }

    #[test]
    fn rollback_restores_rules_and_deletes_new_chains() {
        let old = parse_listing(
            "KUBE-A",
            "-N KUBE-A\n-A KUBE-A -m comment --comment \"x y\" -j RETURN\n",
        );
        let builtin = parse_listing("INPUT", "-P INPUT DROP\n-A INPUT -j KUBE-A\n");
        let payload = rollback_payload(
            "filter",
            &[
                old,
                builtin,
                ChainState::Absent {
                    name: "KUBE-NEW".into(),
                },
            ],
        );
        assert_eq!(
            payload,
            "*filter\n:KUBE-A - [0:0]\n:INPUT DROP [0:0]\n:KUBE-NEW - [0:0]\n-A KUBE-A -m comment --comment \"x y\" -j RETURN\n-A INPUT -j KUBE-A\n-X KUBE-NEW\nCOMMIT\n"
        );
    }
}
