//! An nftables transaction as knftables (sigs.k8s.io/knftables v0.0.18,
//! `transaction.go` + `objects.go`) builds and prints it.
//!
//! Upstream's proxier calls `tx.Add(&knftables.Rule{…})`, `tx.Flush(…)`,
//! `tx.Delete(…)`; knftables turns each call into one line of `nft -f` input.
//! [`Transaction`] keeps the same operations and [`Transaction::render`]
//! writes the same bytes: `VERB TYPE FAMILY TABLE NAME [{ … }]`, comments in
//! Go's `%q` quoting, base-chain priorities as numbers, set elements as
//! `KEY [comment "…"] [: VALUE]`. Nothing here talks to the kernel and
//! nothing fails: the proxier only builds operations it knows are valid.

use std::fmt::Write;

/// `add`, `flush` or `delete` (the verbs the proxier uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Flush,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::Flush => "flush",
            Verb::Delete => "delete",
        }
    }
}

/// A base chain's hook settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter` or `nat`.
    pub kind: &'static str,
    pub hook: &'static str,
    /// The numeric priority knftables prints (`dstnat-10` → `-110`).
    pub priority: i32,
}

/// One nftables object, with the fields the proxier sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Table {
        comment: Option<String>,
    },
    Chain {
        name: String,
        base: Option<BaseChain>,
        comment: Option<String>,
    },
    Rule {
        chain: String,
        rule: String,
        comment: Option<String>,
    },
    Set {
        name: String,
        /// Empty for flush/delete.
        type_: String,
        flags: Vec<&'static str>,
        timeout_secs: Option<u64>,
        comment: Option<String>,
    },
    Map {
        name: String,
        type_: String,
        comment: Option<String>,
    },
    Element(Element),
}

/// A set or map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The set or map name.
    pub container: String,
    pub key: Vec<String>,
    /// Empty for set elements and for deletions.
    pub value: Vec<String>,
    pub comment: Option<String>,
}

/// An ordered list of operations on one table.
#[derive(Debug, Clone)]
pub struct Transaction {
    family: &'static str,
    table: &'static str,
    ops: Vec<(Verb, Object)>,
}

impl Transaction {
    pub fn new(family: &'static str, table: &'static str) -> Self {
        Transaction {
            family,
            table,
            ops: Vec::new(),
        }
    }

    pub fn add(&mut self, obj: Object) {
        self.ops.push((Verb::Add, obj));
    }

    pub fn flush(&mut self, obj: Object) {
        self.ops.push((Verb::Flush, obj));
    }

    pub fn delete(&mut self, obj: Object) {
        self.ops.push((Verb::Delete, obj));
    }

    /// knftables' `NumOperations()`.
    pub fn num_operations(&self) -> usize {
        self.ops.len()
    }

    /// The `nft -f` input, one line per operation.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (verb, obj) in &self.ops {
            write_operation(&mut out, *verb, obj, self.family, self.table);
        }
        out
    }
}

/// `tx.Add(&knftables.Chain{Name: name})`.
pub fn chain(name: &str) -> Object {
    Object::Chain {
        name: name.to_string(),
        base: None,
        comment: None,
    }
}

/// `tx.Add(&knftables.Rule{Chain: chain, Rule: rule})`.
pub fn rule(chain: &str, rule: impl Into<String>) -> Object {
    Object::Rule {
        chain: chain.to_string(),
        rule: rule.into(),
        comment: None,
    }
}

/// A rule with a comment.
pub fn rule_c(chain: &str, rule: impl Into<String>, comment: &str) -> Object {
    Object::Rule {
        chain: chain.to_string(),
        rule: rule.into(),
        comment: Some(comment.to_string()),
    }
}

/// A set or map referred to by name only (flush/delete).
pub fn set_named(name: &str) -> Object {
    Object::Set {
        name: name.to_string(),
        type_: String::new(),
        flags: Vec::new(),
        timeout_secs: None,
        comment: None,
    }
}

pub fn map_named(name: &str) -> Object {
    Object::Map {
        name: name.to_string(),
        type_: String::new(),
        comment: None,
    }
}

fn write_operation(out: &mut String, verb: Verb, obj: &Object, family: &str, table: &str) {
    let v = verb.as_str();
    let add = verb == Verb::Add;
    // Writing into a String cannot fail.
    let _ = match obj {
        Object::Table { comment } => {
            let _ = write!(out, "{v} table {family} {table}");
            if let (true, Some(c)) = (add, comment) {
                let _ = write!(out, " {{ comment {} ; }}", go_quote(c));
            }
            writeln!(out)
        }
        Object::Chain {
            name,
            base,
            comment,
        } => {
            let _ = write!(out, "{v} chain {family} {table} {name}");
            if add && (base.is_some() || comment.is_some()) {
                out.push_str(" {");
                if let Some(b) = base {
                    let _ = write!(
                        out,
                        " type {} hook {} priority {} ;",
                        b.kind, b.hook, b.priority
                    );
                }
                if let Some(c) = comment {
                    let _ = write!(out, " comment {} ;", go_quote(c));
                }
                out.push_str(" }");
            }
            writeln!(out)
        }
        Object::Rule {
            chain,
            rule,
            comment,
        } => {
            let _ = write!(out, "{v} rule {family} {table} {chain}");
            if add {
                let _ = write!(out, " {rule}");
                if let Some(c) = comment {
                    let _ = write!(out, " comment {}", go_quote(c));
                }
            }
            writeln!(out)
        }
        Object::Set {
            name,
            type_,
            flags,
            timeout_secs,
            comment,
        } => {
            let _ = write!(out, "{v} set {family} {table} {name}");
            if add {
                let _ = write!(out, " {{ type {type_} ;");
                if !flags.is_empty() {
                    let _ = write!(out, " flags {} ;", flags.join(","));
                }
                if let Some(t) = timeout_secs {
                    let _ = write!(out, " timeout {t}s ;");
                }
                if let Some(c) = comment {
                    let _ = write!(out, " comment {} ;", go_quote(c));
                }
                out.push_str(" }");
            }
            writeln!(out)
        }
        Object::Map {
            name,
            type_,
            comment,
        } => {
            let _ = write!(out, "{v} map {family} {table} {name}");
            if add {
                let _ = write!(out, " {{ type {type_} ;");
                if let Some(c) = comment {
                    let _ = write!(out, " comment {} ;", go_quote(c));
                }
                out.push_str(" }");
            }
            writeln!(out)
        }
        Object::Element(e) => {
            let _ = write!(
                out,
                "{v} element {family} {table} {} {{ {}",
                e.container,
                e.key.join(" . ")
            );
            if add {
                if let Some(c) = &e.comment {
                    let _ = write!(out, " comment {}", go_quote(c));
                }
                if !e.value.is_empty() {
                    let _ = write!(out, " : {}", e.value.join(" . "));
                }
            }
            writeln!(out, " }}")
        }
    };
}

/// Go's `%q` for the strings kube-proxy writes: double quotes, with `"` and
/// `\` escaped and control characters as Go escapes them.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_knftables() {
        let mut tx = Transaction::new("ip", "kube-proxy");
        tx.add(Object::Table {
            comment: Some("rules for kube-proxy".into()),
        });
        tx.add(Object::Chain {
            name: "nat-output".into(),
            base: Some(BaseChain {
                kind: "nat",
                hook: "output",
                priority: -100,
            }),
            comment: None,
        });
        tx.add(Object::Chain {
            name: "reject-chain".into(),
            base: None,
            comment: Some("helper for @no-endpoint-services / @no-endpoint-nodeports".into()),
        });
        tx.flush(chain("reject-chain"));
        tx.add(rule_c(
            "cluster-ips-check",
            "ip daddr @cluster-ips reject",
            "Reject traffic to invalid ports of ClusterIPs",
        ));
        tx.add(Object::Set {
            name: "affinity-X".into(),
            type_: "ipv4_addr".into(),
            flags: vec!["dynamic", "timeout"],
            timeout_secs: Some(10800),
            comment: None,
        });
        tx.delete(set_named("nodeport-ips"));
        assert_eq!(tx.num_operations(), 7);
        assert_eq!(
            tx.render(),
            "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n\
             add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }\n\
             add chain ip kube-proxy reject-chain { comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }\n\
             flush chain ip kube-proxy reject-chain\n\
             add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n\
             add set ip kube-proxy affinity-X { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n\
             delete set ip kube-proxy nodeport-ips\n"
        );
    }

    // Element lines as they appear in upstream's golden outputs.
    #[test]
    fn element_formatting() {
        let mut tx = Transaction::new("ip", "kube-proxy");
        let elem = Element {
            container: "no-endpoint-services".into(),
            key: vec!["172.30.0.46".into(), "tcp".into(), "80".into()],
            value: vec!["goto reject-chain".into()],
            comment: Some("ns6/svc6:p80".into()),
        };
        tx.add(Object::Element(elem.clone()));
        tx.delete(Object::Element(elem));
        tx.add(Object::Element(Element {
            container: "cluster-ips".into(),
            key: vec!["172.30.0.41".into()],
            value: vec![],
            comment: None,
        }));
        assert_eq!(
            tx.render(),
            "add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment \"ns6/svc6:p80\" : goto reject-chain }\n\
             delete element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 }\n\
             add element ip kube-proxy cluster-ips { 172.30.0.41 }\n"
        );
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a \"b\" \\c\n"), "\"a \\\"b\\\" \\\\c\\n\"");
    }
}
