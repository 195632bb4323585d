//! Chains: regular chains, and base chains attached to a netfilter hook with
//! a type, a priority and a policy.
//!
//! Models: chain types `filter` and `nat`; hooks prerouting, input, forward,
//! output, postrouting; priorities as numbers, written as numbers or as the
//! standard names (`raw` -300, `mangle` -150, `dstnat` -100, `filter` 0,
//! `security` 50, `srcnat` 100) with an offset (`dstnat - 10`,
//! `dstnat-10`), and printed as nft 1.0.6 does (a name within ±10 when the
//! name is valid for the hook — `dstnat` only in prerouting, `srcnat` only
//! in postrouting — else the number); policies accept and drop.
//!
//! Must never: accept a named priority the hook does not allow (nft 1.0.6
//! refuses `dstnat` in the output hook).
//!
//! Error contract: parsers return [`ErrorKind`] naming the token.

use std::fmt;

use super::error::ErrorKind;
use super::stmt::Rule;

/// A base chain's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainType {
    /// `filter`
    Filter,
    /// `nat`
    Nat,
}

impl ChainType {
    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// A netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// `prerouting`
    Prerouting,
    /// `input`
    Input,
    /// `forward`
    Forward,
    /// `output`
    Output,
    /// `postrouting`
    Postrouting,
}

impl Hook {
    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Hook> {
        Some(match s {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// A base chain's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Policy {
    /// `accept`
    #[default]
    Accept,
    /// `drop`
    Drop,
}

impl Policy {
    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
        }
    }
}

const STD_PRIOS: [(&str, i32); 6] = [
    ("raw", -300),
    ("mangle", -150),
    ("dstnat", -100),
    ("filter", 0),
    ("security", 50),
    ("srcnat", 100),
];

fn name_allowed(prio: i32, hook: Hook) -> bool {
    match prio {
        -100 => hook == Hook::Prerouting,
        100 => hook == Hook::Postrouting,
        _ => true,
    }
}

/// Parse a priority: `-110`, `filter`, `dstnat - 10`, `srcnat + 5`,
/// `raw+1` (the tokens after `priority`, joined with spaces). As in nft
/// 1.0.6, `dstnat-10` without spaces is one unknown name and is refused.
pub(crate) fn parse_priority(text: &str, hook: Hook) -> Result<i32, ErrorKind> {
    if let Some(first) = text.split(' ').next() {
        if first.contains('-') && first.parse::<i32>().is_err() {
            return Err(ErrorKind::invalid(
                text,
                "invalid priority expression value in this context: write `dstnat - 10` with spaces, or the number",
            ));
        }
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if let Ok(n) = compact.parse::<i32>() {
        return Ok(n);
    }
    for (name, base) in STD_PRIOS {
        if let Some(rest) = compact.strip_prefix(name) {
            let offset = match rest {
                "" => 0,
                r if r.starts_with('+') || r.starts_with('-') => r
                    .parse::<i32>()
                    .map_err(|_| ErrorKind::bad("priority", text, "bad offset"))?,
                _ => continue,
            };
            if !name_allowed(base, hook) {
                return Err(ErrorKind::invalid(
                    text,
                    format!(
                        "invalid priority expression value in this context: `{name}` is not valid in the {} hook; write the number ({})",
                        hook.name(),
                        base + offset
                    ),
                ));
            }
            return Ok(base + offset);
        }
    }
    Err(ErrorKind::bad(
        "priority",
        text,
        "expected a number or raw, mangle, dstnat, filter, security, srcnat with an optional ± offset",
    ))
}

/// Print a priority as nft 1.0.6 does.
pub(crate) fn fmt_priority(prio: i32, hook: Hook) -> String {
    for (name, base) in STD_PRIOS {
        if (prio - base).abs() <= 10 {
            if !name_allowed(base, hook) {
                break;
            }
            return match prio - base {
                0 => name.to_string(),
                o if o > 0 => format!("{name} + {o}"),
                o => format!("{name} - {}", -o),
            };
        }
    }
    prio.to_string()
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BaseChain {
    /// The type.
    pub chain_type: ChainType,
    /// The hook.
    pub hook: Hook,
    /// The priority (lower runs first).
    pub priority: i32,
    /// The policy.
    pub policy: Policy,
}

impl fmt::Display for BaseChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {} hook {} priority {}; policy {};",
            self.chain_type.name(),
            self.hook.name(),
            fmt_priority(self.priority, self.hook),
            self.policy.name()
        )
    }
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub(crate) name: String,
    pub(crate) handle: u64,
    pub(crate) base: Option<BaseChain>,
    pub(crate) comment: Option<String>,
    pub(crate) rules: Vec<Rule>,
}

impl Chain {
    /// The chain's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The chain's handle.
    pub fn handle(&self) -> u64 {
        self.handle
    }
    /// Type, hook, priority and policy of a base chain.
    pub fn base(&self) -> Option<&BaseChain> {
        self.base.as_ref()
    }
    /// The comment.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }
    /// The rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    /// The rule with `handle`.
    pub fn rule_by_handle(&self, handle: u64) -> Option<&Rule> {
        self.rules.iter().find(|r| r.handle == handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_print_like_nft_1_0_6() {
        assert_eq!(fmt_priority(-110, Hook::Prerouting), "dstnat - 10");
        assert_eq!(fmt_priority(-110, Hook::Output), "-110");
        assert_eq!(fmt_priority(-100, Hook::Output), "-100");
        assert_eq!(fmt_priority(100, Hook::Postrouting), "srcnat");
        assert_eq!(fmt_priority(10, Hook::Forward), "filter + 10");
        assert_eq!(fmt_priority(-300, Hook::Output), "raw");
        assert_eq!(fmt_priority(-200, Hook::Input), "-200");
        assert!(parse_priority("dstnat-10", Hook::Prerouting).is_err());
        assert_eq!(parse_priority("raw+1", Hook::Output), Ok(-299));
        assert_eq!(parse_priority("dstnat - 10", Hook::Prerouting), Ok(-110));
        assert_eq!(parse_priority("srcnat + 5", Hook::Postrouting), Ok(105));
        assert!(parse_priority("dstnat - 10", Hook::Output).is_err());
        assert_eq!(parse_priority("-110", Hook::Output), Ok(-110));
    }
}
