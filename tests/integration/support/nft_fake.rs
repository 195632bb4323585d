//! A minimal stateful fake `nft` for replaying upstream's nftables tests
//! (the part of knftables' `Fake` that upstream's tests rely on, v0.0.18).
//!
//! It applies each `nft -f` transaction to an in-memory table, atomically,
//! refusing what knftables' fake refuses (flushing or deleting a missing
//! object, a rule or map element jumping to a missing chain, a rule naming a
//! missing set or map, deleting a missing element), and prints the table
//! back both as knftables' `Dump()` (the text upstream's assertions compare)
//! and as `nft list table` output (what the proxier parses). It is no model
//! of packet processing: `nft_trace` walks its rules the way upstream's
//! tracer does. The full nftables model lives in `sim`.

use std::collections::BTreeMap;

use proxier::dataplane::{DataplaneError, Nftables};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub key: String,
    pub comment: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// What followed the name in the `add chain` line (`{ type … }` or "").
    pub decl: String,
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Container {
    pub decl: String,
    pub elements: Vec<Elem>,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub decl: String,
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Container>,
    pub maps: BTreeMap<String, Container>,
}

#[derive(Debug, Clone)]
pub struct NftFake {
    family: String,
    table: String,
    pub state: Option<Table>,
    /// Every transaction run, in order.
    pub transactions: Vec<String>,
}

fn fail(line: usize, msg: String) -> DataplaneError {
    DataplaneError {
        operation: "nft -f".into(),
        message: msg,
        line: Some(line),
    }
}

/// Splits `{ KEY [comment "C"] [: VALUE] }`.
fn parse_element(text: &str) -> Option<Elem> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
    let (key_part, value) = match inner.split_once(" : ") {
        Some((k, v)) => (k, v.trim().to_string()),
        None => (inner, String::new()),
    };
    let (key, comment) = match key_part.split_once(" comment ") {
        Some((k, c)) => (k, Some(c.trim().trim_matches('"').to_string())),
        None => (key_part, None),
    };
    Some(Elem {
        key: key.trim().to_string(),
        comment,
        value,
    })
}

fn render_element(e: &Elem) -> String {
    let mut s = format!("{{ {}", e.key);
    if let Some(c) = &e.comment {
        s.push_str(&format!(" comment \"{c}\""));
    }
    if !e.value.is_empty() {
        s.push_str(&format!(" : {}", e.value));
    }
    s.push_str(" }");
    s
}

/// knftables' `checkRuleRefs`.
fn check_rule_refs(rule: &str, t: &Table) -> Result<(), String> {
    let body = match rule.find(" comment \"") {
        Some(i) => &rule[..i],
        None => rule,
    };
    let words: Vec<&str> = body.split(' ').collect();
    for (i, w) in words.iter().enumerate() {
        if let Some(name) = w.strip_prefix('@') {
            let prev = if i > 0 { words[i - 1] } else { "" };
            let ok = if prev == "map" || prev == "vmap" {
                t.maps.contains_key(name)
            } else {
                t.sets.contains_key(name) || t.maps.contains_key(name)
            };
            if !ok {
                return Err(format!("no such set or map {name:?}"));
            }
        } else if (*w == "goto" || *w == "jump")
            && i + 1 < words.len()
            && !t.chains.contains_key(words[i + 1])
        {
            return Err(format!("no such chain {:?}", words[i + 1]));
        }
    }
    Ok(())
}

impl NftFake {
    pub fn new(family: &str, table: &str) -> Self {
        NftFake {
            family: family.into(),
            table: table.into(),
            state: None,
            transactions: Vec::new(),
        }
    }

    /// The last transaction run.
    pub fn last_transaction(&self) -> &str {
        self.transactions.last().map(String::as_str).unwrap_or("")
    }

    /// Operations in the last transaction (knftables' `NumOperations`).
    pub fn last_operations(&self) -> usize {
        self.last_transaction().lines().count()
    }

    /// Loads state from dump text (knftables' `ParseDump`).
    pub fn parse_dump(&mut self, text: &str) -> Result<(), DataplaneError> {
        let tx: String = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("add "))
            .map(|l| format!("{l}\n"))
            .collect();
        let next = self.apply(&tx)?;
        self.state = next;
        Ok(())
    }

    fn apply(&self, tx: &str) -> Result<Option<Table>, DataplaneError> {
        let mut state = self.state.clone();
        for (i, line) in tx.lines().enumerate() {
            let n = i + 1;
            let mut words = line.splitn(3, ' ');
            let (verb, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let rest = words.next().unwrap_or("");
            let fam_table = format!("{} {}", self.family, self.table);
            if !rest.starts_with(&fam_table) {
                return Err(fail(n, format!("wrong table in {line:?}")));
            }
            let rest = rest[fam_table.len()..].trim_start();
            if kind == "table" {
                match verb {
                    "add" => {
                        if state.is_none() {
                            state = Some(Table {
                                decl: rest.to_string(),
                                ..Table::default()
                            });
                        }
                    }
                    "delete" => state = None,
                    "flush" => {
                        if state.is_none() {
                            return Err(fail(n, "no such table".into()));
                        }
                        state = Some(Table::default());
                    }
                    _ => return Err(fail(n, format!("unsupported {line:?}"))),
                }
                continue;
            }
            let t = state
                .as_mut()
                .ok_or_else(|| fail(n, "no such table".into()))?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            match kind {
                "chain" => match verb {
                    "add" => {
                        t.chains.entry(name.to_string()).or_insert(Chain {
                            decl: tail.to_string(),
                            rules: Vec::new(),
                        });
                    }
                    "flush" => t
                        .chains
                        .get_mut(name)
                        .ok_or_else(|| fail(n, format!("no such chain {name:?}")))?
                        .rules
                        .clear(),
                    "delete" => {
                        t.chains
                            .remove(name)
                            .ok_or_else(|| fail(n, format!("no such chain {name:?}")))?;
                    }
                    _ => return Err(fail(n, format!("unsupported {line:?}"))),
                },
                "rule" => {
                    if verb != "add" {
                        return Err(fail(n, format!("unsupported {line:?}")));
                    }
                    check_rule_refs(tail, t).map_err(|e| fail(n, e))?;
                    t.chains
                        .get_mut(name)
                        .ok_or_else(|| fail(n, format!("no such chain {name:?}")))?
                        .rules
                        .push(tail.to_string());
                }
                "set" | "map" => {
                    let objs = if kind == "set" {
                        &mut t.sets
                    } else {
                        &mut t.maps
                    };
                    match verb {
                        "add" => {
                            objs.entry(name.to_string()).or_insert(Container {
                                decl: tail.to_string(),
                                elements: Vec::new(),
                            });
                        }
                        "flush" => objs
                            .get_mut(name)
                            .ok_or_else(|| fail(n, format!("no such {kind} {name:?}")))?
                            .elements
                            .clear(),
                        "delete" => {
                            objs.remove(name)
                                .ok_or_else(|| fail(n, format!("no such {kind} {name:?}")))?;
                        }
                        _ => return Err(fail(n, format!("unsupported {line:?}"))),
                    }
                }
                "element" => {
                    let e = parse_element(tail).ok_or_else(|| fail(n, "bad element".into()))?;
                    if let Some(target) = e
                        .value
                        .strip_prefix("goto ")
                        .or(e.value.strip_prefix("jump "))
                    {
                        if !t.chains.contains_key(target) {
                            return Err(fail(n, format!("no such chain {target:?}")));
                        }
                    }
                    let c = match t.sets.get_mut(name) {
                        Some(c) => c,
                        None => t
                            .maps
                            .get_mut(name)
                            .ok_or_else(|| fail(n, format!("no such set or map {name:?}")))?,
                    };
                    let pos = c.elements.iter().position(|x| x.key == e.key);
                    match (verb, pos) {
                        ("add", Some(p)) => c.elements[p] = e,
                        ("add", None) => c.elements.push(e),
                        ("delete", Some(p)) => {
                            c.elements.remove(p);
                        }
                        ("delete", None) => {
                            return Err(fail(n, format!("no such element {:?}", e.key)))
                        }
                        _ => return Err(fail(n, format!("unsupported {line:?}"))),
                    }
                }
                _ => return Err(fail(n, format!("unsupported {line:?}"))),
            }
        }
        Ok(state)
    }

    /// knftables' `Fake.Dump()`.
    pub fn dump(&self) -> String {
        let Some(t) = &self.state else {
            return String::new();
        };
        let pre = format!("{} {}", self.family, self.table);
        let mut out = String::new();
        let sp = |d: &str| {
            if d.is_empty() {
                String::new()
            } else {
                format!(" {d}")
            }
        };
        out.push_str(&format!("add table {pre}{}\n", sp(&t.decl)));
        for (name, c) in &t.chains {
            out.push_str(&format!("add chain {pre} {name}{}\n", sp(&c.decl)));
        }
        for (name, s) in &t.sets {
            out.push_str(&format!("add set {pre} {name}{}\n", sp(&s.decl)));
        }
        for (name, m) in &t.maps {
            out.push_str(&format!("add map {pre} {name}{}\n", sp(&m.decl)));
        }
        for (name, c) in &t.chains {
            for r in &c.rules {
                out.push_str(&format!("add rule {pre} {name} {r}\n"));
            }
        }
        for (name, c) in t.sets.iter().chain(t.maps.iter()) {
            for e in &c.elements {
                out.push_str(&format!("add element {pre} {name} {}\n", render_element(e)));
            }
        }
        out
    }

    /// `nft list table` output, formatted like nft prints it.
    pub fn list(&self) -> Option<String> {
        let t = self.state.as_ref()?;
        let mut out = format!("table {} {} {{\n", self.family, self.table);
        let fields = |decl: &str| -> Vec<String> {
            decl.trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .split(" ; ")
                .map(|f| f.trim().trim_end_matches(';').trim().to_string())
                .filter(|f| !f.is_empty())
                .collect()
        };
        for (kind, objs) in [("set", &t.sets), ("map", &t.maps)] {
            for (name, c) in objs {
                out.push_str(&format!("\t{kind} {name} {{\n"));
                for f in fields(&c.decl) {
                    out.push_str(&format!("\t\t{f}\n"));
                }
                if !c.elements.is_empty() {
                    let elems: Vec<String> = c
                        .elements
                        .iter()
                        .map(|e| {
                            let r = render_element(e);
                            r[2..r.len() - 2].to_string()
                        })
                        .collect();
                    out.push_str(&format!(
                        "\t\telements = {{ {} }}\n",
                        elems.join(",\n\t\t\t     ")
                    ));
                }
                out.push_str("\t}\n\n");
            }
        }
        for (name, c) in &t.chains {
            out.push_str(&format!("\tchain {name} {{\n"));
            for f in fields(&c.decl).iter().filter(|f| f.starts_with("type ")) {
                out.push_str(&format!("\t\t{f}; policy accept;\n"));
            }
            for r in &c.rules {
                out.push_str(&format!("\t\t{r}\n"));
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        Some(out)
    }
}

impl Nftables for NftFake {
    fn run(&mut self, transaction: &str) -> Result<(), DataplaneError> {
        self.transactions.push(transaction.to_string());
        let next = self.apply(transaction)?;
        self.state = next;
        Ok(())
    }

    fn list_table(&mut self, family: &str, table: &str) -> Result<Option<String>, DataplaneError> {
        if family != self.family || table != self.table {
            return Ok(None);
        }
        Ok(self.list())
    }

    fn list_ruleset(&mut self) -> Result<String, DataplaneError> {
        Ok(self.list().unwrap_or_default())
    }
}
