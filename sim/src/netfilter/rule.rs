//! One iptables rule: the generic packet fields, the match list and the
//! target, as the kernel stores them.
//!
//! Models: `-s/-d` (networks, `!`), `-p` (`!`), `-i/-o` (`+` wildcard, `!`),
//! the ordered `-m` matches, and the optional target. Two rules that the
//! kernel stores identically compare equal (`-d 10.0.0.1` and
//! `-d 10.0.0.1/32` are one rule); counters are not part of a rule.
//!
//! Must never: keep a field the kernel would not keep (for example a
//! non-negated `-s 0.0.0.0/0` or `-i +` is absent), or print differently from
//! iptables-save.
//!
//! Error contract: [`Rule::parse`] returns [`ErrorKind`] naming the offending
//! token; see `parse_rule` for the grammar.

use super::addr::{Cidr, Family, Interface, Negatable};
use super::error::ErrorKind;
use super::l4::{PortRange, Protocol};
use super::matches::{Match, PortMatch};
use super::ruleset::{TableId, Variant};
use super::targets::Target;

/// One rule of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Rule {
    /// `-s`.
    pub source: Option<Negatable<Cidr>>,
    /// `-d`.
    pub destination: Option<Negatable<Cidr>>,
    /// `-i`.
    pub in_interface: Option<Negatable<Interface>>,
    /// `-o`.
    pub out_interface: Option<Negatable<Interface>>,
    /// `-p`; `None` is any protocol.
    pub protocol: Option<Negatable<Protocol>>,
    /// `-m` matches, in order.
    pub matches: Vec<Match>,
    /// `-j`/`-g`; `None` for a rule that only counts.
    pub target: Option<Target>,
}

impl Rule {
    /// Parse the rule part of an iptables command line (everything after
    /// `-A CHAIN`), for a rule that will live in `table`.
    pub fn parse(
        args: &str,
        table: TableId,
        family: Family,
        variant: Variant,
    ) -> Result<Rule, ErrorKind> {
        let tokens = super::quoting::tokenize(args)?;
        let parsed = super::parse_rule::parse_rule(&tokens, table, family)?;
        parsed.rule.normalized(variant)
    }

    /// The texts of the rule's `comment` matches, in order.
    pub fn comments(&self) -> impl Iterator<Item = &str> {
        self.matches.iter().filter_map(|m| match m {
            Match::Comment(c) => Some(c.as_str()),
            _ => None,
        })
    }

    /// The first comment, if any (kube-proxy puts one per rule).
    pub fn comment(&self) -> Option<&str> {
        self.comments().next()
    }

    /// The user chain this rule jumps or goes to, if any.
    pub fn jump_chain(&self) -> Option<&str> {
        self.target.as_ref().and_then(Target::chain)
    }

    /// The rule as iptables-save prints it after `-A CHAIN` (leading space
    /// included, no newline).
    pub fn to_save_args(&self, family: Family) -> String {
        let mut out = String::new();
        self.save(&mut out, family);
        out
    }

    pub(crate) fn save(&self, out: &mut String, family: Family) {
        for (flag, addr) in [('s', &self.source), ('d', &self.destination)] {
            if let Some(a) = addr {
                if a.negated {
                    out.push_str(" !");
                }
                out.push_str(&format!(" -{flag} {}", a.value));
            }
        }
        for (flag, iface) in [('i', &self.in_interface), ('o', &self.out_interface)] {
            if let Some(i) = iface {
                if i.negated {
                    out.push_str(" !");
                }
                out.push_str(&format!(" -{flag} {}", i.value));
            }
        }
        if let Some(p) = &self.protocol {
            if p.negated {
                out.push_str(" !");
            }
            out.push_str(&format!(" -p {}", p.value));
        }
        for m in &self.matches {
            m.save(out, family);
        }
        if let Some(t) = &self.target {
            t.save(out, family);
        }
    }

    /// The rule as the given iptables variant stores it (checked against
    /// iptables 1.8.9). The nf_tables variant translates addresses and
    /// `tcp`/`udp` port matches into native expressions and back, which
    /// refuses `! -s 0.0.0.0/0`, turns `! --dport 0:N` into
    /// `--dport N+1:65535` and folds a second `-m tcp`/`-m udp` into the
    /// first. The legacy variant drops `! -i +`/`! -o +` (it stores an empty
    /// interface; the kernel then matches nothing, which this model does not
    /// reproduce).
    pub(crate) fn normalized(mut self, variant: Variant) -> Result<Rule, ErrorKind> {
        if variant == Variant::Legacy {
            for iface in [&mut self.in_interface, &mut self.out_interface] {
                if iface.as_ref().is_some_and(|i| i.value.as_str() == "+") {
                    *iface = None;
                }
            }
            return Ok(self);
        }
        for (flag, addr) in [("-s", &self.source), ("-d", &self.destination)] {
            if addr
                .as_ref()
                .is_some_and(|a| a.negated && a.value.prefix() == 0)
            {
                return Err(ErrorKind::refused(
                    flag,
                    "iptables-nft refuses a negated /0 network (it matches nothing); hint: drop the rule",
                ));
            }
        }
        for m in &mut self.matches {
            if let Match::Tcp(t) = m {
                complement_low_ranges(&mut t.ports);
            } else if let Match::Udp(p) = m {
                complement_low_ranges(p);
            }
        }
        fold_port_matches(&mut self.matches);
        Ok(self)
    }
}

fn complement_low_ranges(p: &mut PortMatch) {
    for r in [&mut p.sport, &mut p.dport].into_iter().flatten() {
        let PortRange { lo, hi } = r.value;
        if r.negated && lo == 0 && hi > lo && hi < 65535 {
            *r = Negatable::new(
                PortRange {
                    lo: hi + 1,
                    hi: 65535,
                },
                false,
            );
        }
    }
}

/// Merge later `tcp`/`udp` matches into the first of their kind when the
/// fields do not overlap (nf_tables keeps one payload match per protocol).
fn fold_port_matches(matches: &mut Vec<Match>) {
    let mut i = 0;
    while i < matches.len() {
        let first = matches[..i]
            .iter()
            .position(|m| std::mem::discriminant(m) == std::mem::discriminant(&matches[i]));
        let merged = match (first, &matches[i]) {
            (Some(f), Match::Tcp(later)) => {
                let later = later.clone();
                match &mut matches[f] {
                    Match::Tcp(t) if t.flags.is_none() || later.flags.is_none() => {
                        let ok = merge_ports(&mut t.ports, &later.ports);
                        if ok && t.flags.is_none() {
                            t.flags = later.flags;
                        }
                        ok
                    }
                    _ => false,
                }
            }
            (Some(f), Match::Udp(later)) => {
                let later = later.clone();
                match &mut matches[f] {
                    Match::Udp(p) => merge_ports(p, &later),
                    _ => false,
                }
            }
            _ => false,
        };
        if merged {
            matches.remove(i);
        } else {
            i += 1;
        }
    }
}

fn merge_ports(into: &mut PortMatch, from: &PortMatch) -> bool {
    if (into.sport.is_some() && from.sport.is_some())
        || (into.dport.is_some() && from.dport.is_some())
    {
        return false;
    }
    if into.sport.is_none() {
        into.sport = from.sport;
    }
    if into.dport.is_none() {
        into.dport = from.dport;
    }
    true
}
