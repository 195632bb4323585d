//! Reading and normalising iptables-restore payloads the way upstream's
//! test helpers do (`pkg/util/iptables/testing/parse.go`, the sorting in
//! `assertIPTablesRulesEqual`, and `checkIPTablesRuleJumps`).
//!
//! Upstream writes services in random (Go map) order, so its tests sort the
//! proxier's output before comparing: chain declarations in a fixed order,
//! rules grouped by chain, and the rules of KUBE-SERVICES / KUBE-NODEPORTS
//! by service name. Within every other chain the order must match exactly.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<String>,
    pub deleted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub name: String,
    pub chains: Vec<Chain>,
}

/// Parses a restore payload (chain lines, then `-A`/`-X` lines, per table).
pub fn parse(payload: &str) -> Result<Vec<Table>, String> {
    let mut tables: Vec<Table> = Vec::new();
    for (i, raw) in payload.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        if let Some(name) = line.strip_prefix('*') {
            tables.push(Table {
                name: name.to_string(),
                chains: Vec::new(),
            });
            continue;
        }
        let table = tables
            .last_mut()
            .ok_or(format!("line {n}: outside a table"))?;
        if line == "COMMIT" {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split(' ').next().unwrap_or("").to_string();
            table.chains.push(Chain {
                name,
                ..Chain::default()
            });
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain_name = rest.split(' ').next().unwrap_or("");
            let chain = table
                .chains
                .iter_mut()
                .find(|c| c.name == chain_name)
                .ok_or(format!("line {n}: rule in undeclared chain {chain_name}"))?;
            chain.rules.push(line.to_string());
        } else if let Some(name) = line.strip_prefix("-X ") {
            let chain = table
                .chains
                .iter_mut()
                .find(|c| c.name == name)
                .ok_or(format!("line {n}: -X of undeclared chain {name}"))?;
            if !chain.rules.is_empty() {
                return Err(format!("line {n}: -X of chain {name} that has rules"));
            }
            chain.deleted = true;
        } else {
            return Err(format!("line {n}: unexpected line {line:?}"));
        }
    }
    Ok(tables)
}

fn chain_rank(name: &str) -> (u8, &str) {
    match name {
        "KUBE-NODEPORTS" => (0, name),
        "KUBE-SERVICES" => (1, name),
        n if n.starts_with("KUBE-") => (2, n),
        n => (3, n),
    }
}

/// The `--comment` value of a rule (quotes stripped).
pub fn comment(rule: &str) -> Option<String> {
    let at = rule.find("--comment ")? + "--comment ".len();
    let rest = &rule[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').map(|end| quoted[..end].to_string())
    } else {
        Some(rest.split(' ').next().unwrap_or("").to_string())
    }
}

/// Upstream's `sortIPTablesRules`.
pub fn sort(payload: &str) -> Result<String, String> {
    let mut tables = parse(payload.trim_start_matches([' ', '\t', '\n']))?;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for table in &mut tables {
        table
            .chains
            .sort_by(|a, b| chain_rank(&a.name).cmp(&chain_rank(&b.name)));
        for chain in &mut table.chains {
            if matches!(chain.name.as_str(), "KUBE-SERVICES" | "KUBE-NODEPORTS")
                && chain.rules.iter().all(|r| comment(r).is_some())
            {
                chain.rules.sort_by_key(|r| {
                    let c = comment(r).unwrap_or_default();
                    let last = c.contains("must be the last rule");
                    let service = c.split([' ', ':']).next().unwrap_or("").to_string();
                    (last, service)
                });
            }
        }
        out.push_str(&format!("*{}\n", table.name));
        for chain in &table.chains {
            out.push_str(&format!(":{} - [0:0]\n", chain.name));
        }
        for chain in &table.chains {
            for rule in &chain.rules {
                out.push_str(rule);
                out.push('\n');
            }
        }
        for chain in table.chains.iter().filter(|c| c.deleted) {
            out.push_str(&format!("-X {}\n", chain.name));
        }
        out.push_str("COMMIT\n");
    }
    Ok(out)
}

/// The rules of one chain, in payload order, each followed by a newline.
pub fn chain_rules(payload: &str, table: &str, chain: &str) -> Result<String, String> {
    let tables = parse(payload)?;
    Ok(tables
        .iter()
        .filter(|t| t.name == table)
        .flat_map(|t| t.chains.iter().filter(|c| c.name == chain))
        .flat_map(|c| c.rules.iter())
        .map(|r| format!("{r}\n"))
        .collect())
}

fn word_after<'a>(rule: &'a str, flag: &str) -> Option<&'a str> {
    let mut words = rule.split(' ');
    while let Some(w) = words.next() {
        if w == flag {
            return words.next();
        }
    }
    None
}

/// Upstream's `checkIPTablesRuleJumps`: every chain used is declared, every
/// chain jumped to has rules, and no service chain is declared but unused.
pub fn check_rule_jumps(payload: &str) -> Result<(), String> {
    const TARGETS: &[&str] = &[
        "ACCEPT",
        "REJECT",
        "DROP",
        "MARK",
        "RETURN",
        "DNAT",
        "SNAT",
        "MASQUERADE",
    ];
    const TOP_LEVEL: &[&str] = &[
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-FORWARD",
        "KUBE-MARK-MASQ",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FIREWALL",
    ];
    // Line-based like upstream (no parser: a rule in an undeclared chain
    // must be reported, not refused).
    for chunk in payload.split("COMMIT\n").filter(|c| !c.trim().is_empty()) {
        let t = chunk
            .lines()
            .find_map(|l| l.strip_prefix('*'))
            .ok_or("a table without a *name line")?;
        let mut created: BTreeSet<&str> = BTreeSet::new();
        let mut deleted: BTreeSet<&str> = BTreeSet::new();
        let mut filled: BTreeSet<&str> = BTreeSet::new();
        let mut jumped: BTreeSet<&str> = BTreeSet::new();
        for line in chunk.lines() {
            if let Some(rest) = line.strip_prefix(':') {
                created.insert(rest.split(' ').next().unwrap_or(""));
            } else if let Some(rest) = line.strip_prefix("-X ") {
                deleted.insert(rest.split(' ').next().unwrap_or(""));
            } else if let Some(rest) = line.strip_prefix("-A ") {
                filled.insert(rest.split(' ').next().unwrap_or(""));
            }
            if let Some(target) = word_after(line, "-j") {
                if !TARGETS.contains(&target) {
                    jumped.insert(target);
                }
            }
        }
        let created: BTreeSet<&str> = created.difference(&deleted).copied().collect();
        let used: BTreeSet<&str> = jumped.union(&filled).copied().collect();
        let list = |v: Vec<&&str>| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let missing: Vec<_> = used.difference(&created).collect();
        if !missing.is_empty() {
            return Err(format!(
                "some chains in {t} are used but were not created: [{}]",
                list(missing)
            ));
        }
        let empty: Vec<_> = jumped
            .difference(&filled)
            .filter(|c| **c != "KUBE-NODEPORTS")
            .collect();
        if !empty.is_empty() {
            return Err(format!(
                "some chains in {t} are jumped to but have no rules: [{}]",
                list(empty)
            ));
        }
        let unused: Vec<_> = created
            .difference(&jumped)
            .filter(|c| !TOP_LEVEL.contains(c))
            .collect();
        if !unused.is_empty() {
            return Err(format!(
                "some chains in {t} are created but not used: [{}]",
                list(unused)
            ));
        }
    }
    Ok(())
}
