//! The fast way to apply a large `--noflush` payload with iptables-nft:
//! merge it into the current tables and restore those whole, in flush mode.
//!
//! `iptables-nft-restore --noflush` (iptables 1.8.9) is quadratic in the
//! size of the payload — a full sync of 10,000 services takes half a minute,
//! 30,000 does not finish in ten minutes — while flush mode is linear. Both
//! are atomic per table. So for a big payload the kernel backend reads the
//! tables the payload names (`iptables-save -c`, with counters), applies the
//! payload to that text exactly as `--noflush` would apply it to the kernel
//! (a declared chain is created or flushed in place, `-A` appends, `-X`
//! deletes; chains the payload does not name — foreign ones, jump rules in
//! built-in chains — stay as they are, counters included), and restores the
//! result in flush mode with `--counters`. The kernel ends in the same state
//! the `--noflush` restore would have left; the kernel tests compare the two
//! `iptables-save` outputs.
//!
//! The price: a writer that changes one of these tables between the save
//! and the restore loses its change (upstream's `--noflush` exists to avoid
//! exactly that), and the counters of built-in chains and preserved rules
//! miss the packets counted meanwhile. That is why only large payloads take
//! this path (see `FAST_PATH_MIN_CHAINS` in `mod.rs`).
//!
//! Anything this module does not model — a payload verb other than `:`,
//! `-A`, `-X`, `COMMIT`; a saved table iptables-nft calls incompatible; a
//! rule for a chain that does not exist — is [`Unsupported`], and the caller
//! falls back to the plain `--noflush` restore, which then reports the
//! kernel's own error.

use indexmap::IndexMap;

/// Why a payload cannot be merged (the plain restore is used instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// The text to restore in flush mode, with its line map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub text: String,
    /// `line_map[i]`: the payload line (1-based) restored line `i + 1` comes
    /// from; `None` for lines kept from the current tables.
    pub line_map: Vec<Option<usize>>,
    /// The tables written, in payload order.
    pub tables: Vec<String>,
}

/// A line and the payload line it came from.
type Line = (String, Option<usize>);

#[derive(Debug, Clone)]
struct Chain {
    decl: Line,
    builtin: bool,
    rules: Vec<Line>,
}

#[derive(Debug, Clone, Default)]
struct Table {
    chains: IndexMap<String, Chain>,
    start: Option<usize>,
    commit: Option<usize>,
}

fn builtins(table: &str) -> &'static [&'static str] {
    match table {
        "raw" => &["PREROUTING", "OUTPUT"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => &[],
    }
}

/// A table as a fresh kernel has it (what iptables-save lists once it exists).
fn fresh_table(name: &str) -> Table {
    let mut t = Table::default();
    for c in builtins(name) {
        t.chains.insert(
            c.to_string(),
            Chain {
                decl: (format!(":{c} ACCEPT [0:0]"), None),
                builtin: true,
                rules: Vec::new(),
            },
        );
    }
    t
}

/// The chain named by `-A NAME …` (after an optional `[p:b] ` counter).
fn rule_chain(line: &str) -> Option<&str> {
    let rest = match line.strip_prefix('[') {
        Some(r) => r.split_once("] ")?.1,
        None => line,
    };
    rest.strip_prefix("-A ")?.split_whitespace().next()
}

/// Parses `iptables-save -c` output into tables.
fn parse_save(saved: &str) -> Result<IndexMap<String, Table>, Unsupported> {
    let mut tables: IndexMap<String, Table> = IndexMap::new();
    let mut current: Option<String> = None;
    for line in saved.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.contains("incompatible") {
                return Err(Unsupported(format!(
                    "iptables-save says: {}",
                    comment.trim()
                )));
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            tables.insert(name.to_string(), Table::default());
            current = Some(name.to_string());
            continue;
        }
        let Some(table) = current.as_ref().and_then(|t| tables.get_mut(t)) else {
            return Err(Unsupported(format!("saved line outside a table: {line}")));
        };
        if line == "COMMIT" {
            current = None;
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().unwrap_or_default().to_string();
            let builtin = words.next().is_some_and(|p| p != "-");
            table.chains.insert(
                name,
                Chain {
                    decl: (line.to_string(), None),
                    builtin,
                    rules: Vec::new(),
                },
            );
        } else if let Some(chain) = rule_chain(line) {
            table
                .chains
                .get_mut(chain)
                .ok_or_else(|| Unsupported(format!("saved rule for an undeclared chain: {line}")))?
                .rules
                .push((line.to_string(), None));
        } else {
            return Err(Unsupported(format!("saved line not understood: {line}")));
        }
    }
    Ok(tables)
}

/// Applies `payload` (noflush semantics) to the `saved` tables and returns
/// the flush-mode text for the tables the payload names.
pub fn merge(saved: &str, payload: &str) -> Result<Merged, Unsupported> {
    let mut tables = parse_save(saved)?;
    let mut order: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for (i, line) in payload.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if order.iter().any(|t| t == name) {
                return Err(Unsupported(format!("table {name} appears twice")));
            }
            let table = tables
                .entry(name.to_string())
                .or_insert_with(|| fresh_table(name));
            table.start = Some(n);
            order.push(name.to_string());
            current = Some(name.to_string());
            continue;
        }
        let Some(table) = current.as_ref().and_then(|t| tables.get_mut(t)) else {
            return Err(Unsupported(format!("line {n} is outside a table")));
        };
        if line == "COMMIT" {
            table.commit = Some(n);
            current = None;
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().unwrap_or_default();
            let policy = words.next().unwrap_or("-");
            match table.chains.get_mut(name) {
                Some(chain) => {
                    // --noflush: a declared chain is flushed where it is.
                    chain.rules.clear();
                    if chain.builtin && policy == "-" {
                        return Err(Unsupported(format!(
                            "line {n} declares built-in {name} without a policy"
                        )));
                    }
                    chain.decl = (line.to_string(), Some(n));
                }
                None => {
                    table.chains.insert(
                        name.to_string(),
                        Chain {
                            decl: (line.to_string(), Some(n)),
                            builtin: policy != "-",
                            rules: Vec::new(),
                        },
                    );
                }
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            table
                .chains
                .get_mut(name)
                .ok_or_else(|| Unsupported(format!("line {n} appends to missing chain {name}")))?
                .rules
                .push((line.to_string(), Some(n)));
        } else if let Some(name) = line.strip_prefix("-X ") {
            let name = name.trim();
            match table.chains.get(name) {
                Some(c) if !c.builtin => {
                    table.chains.shift_remove(name);
                }
                _ => {
                    return Err(Unsupported(format!(
                        "line {n} deletes {name}, which cannot be deleted"
                    )))
                }
            }
        } else {
            return Err(Unsupported(format!(
                "line {n} is not a chain, -A, -X or COMMIT line"
            )));
        }
    }
    if current.is_some() {
        return Err(Unsupported("the payload ends inside a table".into()));
    }

    let mut text = String::with_capacity(saved.len() + payload.len());
    let mut line_map = Vec::new();
    let mut push = |line: &str, from: Option<usize>| {
        text.push_str(line);
        text.push('\n');
        line_map.push(from);
    };
    for name in &order {
        let table = &tables[name];
        push(&format!("*{name}"), table.start);
        for chain in table.chains.values() {
            push(&chain.decl.0, chain.decl.1);
        }
        for chain in table.chains.values() {
            for (rule, from) in &chain.rules {
                push(rule, *from);
            }
        }
        push("COMMIT", table.commit);
    }
    Ok(Merged {
        text,
        line_map,
        tables: order,
    })
}

/// The number of chain declarations in a payload.
pub fn declared_chains(payload: &str) -> usize {
    payload.lines().filter(|l| l.starts_with(':')).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = "# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [10:600]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [3:180]
:DOCKER - [0:0]
:KUBE-SERVICES - [0:0]
[5:300] -A INPUT -j KUBE-SERVICES
[0:0] -A DOCKER -d 172.17.0.2/32 -j ACCEPT
[1:60] -A KUBE-SERVICES -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SVC-OLD - [0:0]
[0:0] -A KUBE-SVC-OLD -j RETURN
COMMIT
";

    #[test]
    fn noflush_semantics_keep_foreign_chains_and_counters() {
        let payload = "*filter
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
-A KUBE-SERVICES -d 10.0.0.1/32 -j REJECT
-A KUBE-FORWARD -j ACCEPT
COMMIT
*nat
:KUBE-SVC-OLD - [0:0]
-X KUBE-SVC-OLD
COMMIT
";
        let m = merge(SAVED, payload).unwrap();
        assert_eq!(
            m.text,
            "*filter
:INPUT ACCEPT [10:600]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [3:180]
:DOCKER - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
[5:300] -A INPUT -j KUBE-SERVICES
[0:0] -A DOCKER -d 172.17.0.2/32 -j ACCEPT
-A KUBE-SERVICES -d 10.0.0.1/32 -j REJECT
-A KUBE-FORWARD -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
"
        );
        assert_eq!(m.tables, ["filter", "nat"]);
        // `*filter` ← payload 1, `:INPUT` kept, `-A KUBE-SERVICES …` ← 4.
        assert_eq!(m.line_map[0], Some(1));
        assert_eq!(m.line_map[1], None);
        assert_eq!(m.line_map[9], Some(4));
        assert_eq!(m.line_map[11], Some(6));
    }

    #[test]
    fn a_table_missing_from_the_save_starts_fresh() {
        let m = merge("", "*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j RETURN\nCOMMIT\n").unwrap();
        assert_eq!(
            m.text,
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-A - [0:0]\n-A KUBE-A -j RETURN\nCOMMIT\n"
        );
    }

    #[test]
    fn what_is_not_modelled_falls_back() {
        for payload in [
            "*nat\n-I PREROUTING -j ACCEPT\nCOMMIT\n",
            "*nat\n-A KUBE-MISSING -j RETURN\nCOMMIT\n",
            "*nat\n-X PREROUTING\nCOMMIT\n",
            "*nat\n:KUBE-A - [0:0]\n",
        ] {
            assert!(merge(SAVED, payload).is_err(), "{payload}");
        }
        let incompatible = "# Table `nat' is incompatible, use 'nft' tool.\n";
        assert!(merge(incompatible, "*nat\nCOMMIT\n").is_err());
        assert_eq!(declared_chains("*nat\n:A - [0:0]\n:B - [0:0]\nCOMMIT\n"), 2);
    }
}
