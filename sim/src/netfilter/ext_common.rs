//! What match and target option parsing share: option specs, collected
//! options, and xtables' number syntax.
//!
//! Models: an extension's option table (names and aliases, how many values
//! each option takes, whether `!` may precede it) and `xtables_strtoui`
//! (decimal, `0x` hexadecimal, leading-`0` octal).
//!
//! Must never: accept an option twice or a `!` where the extension refuses
//! one — both are checked where options are collected (`parse_rule`).
//!
//! Error contract: [`parse_u32`] returns [`ErrorKind::BadValue`].

use super::error::ErrorKind;

/// One option an extension takes.
#[derive(Debug)]
pub(crate) struct OptSpec {
    /// Accepted spellings; the first is canonical.
    pub names: &'static [&'static str],
    /// How many values follow it.
    pub arity: usize,
    /// Whether `!` may precede it.
    pub negatable: bool,
}

impl OptSpec {
    pub(crate) const fn new(names: &'static [&'static str], arity: usize, negatable: bool) -> Self {
        OptSpec {
            names,
            arity,
            negatable,
        }
    }

    /// The canonical spelling.
    pub(crate) fn canonical(&self) -> &'static str {
        self.names[0]
    }
}

/// Find the spec an option name belongs to.
pub(crate) fn find_spec(specs: &'static [OptSpec], name: &str) -> Option<&'static OptSpec> {
    specs.iter().find(|s| s.names.contains(&name))
}

/// An option as given on a rule line.
#[derive(Debug, Clone)]
pub(crate) struct Opt {
    /// Which option.
    pub spec: &'static OptSpec,
    /// Whether `!` preceded it.
    pub negated: bool,
    /// Its values (`spec.arity` of them).
    pub values: Vec<String>,
}

/// Parse an unsigned 32-bit number the way `xtables_strtoui` does.
/// `whole` is the full argument, named in the error.
pub(crate) fn parse_u32(option: &str, text: &str, whole: &str) -> Result<u32, ErrorKind> {
    let parsed = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    };
    parsed.ok_or_else(|| {
        ErrorKind::bad_value(
            option,
            whole,
            "expected a 32-bit number (decimal or 0x hex)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_xtables() {
        assert_eq!(parse_u32("--mark", "16384", "x").unwrap(), 0x4000);
        assert_eq!(parse_u32("--mark", "0x4000", "x").unwrap(), 0x4000);
        assert_eq!(parse_u32("--mark", "010", "x").unwrap(), 8);
        assert_eq!(parse_u32("--mark", "0", "x").unwrap(), 0);
        assert!(parse_u32("--mark", "zz", "x").is_err());
        assert!(parse_u32("--mark", "0x100000000", "x").is_err());
        assert!(parse_u32("--mark", "-1", "x").is_err());
    }
}
