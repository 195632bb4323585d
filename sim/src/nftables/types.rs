//! The names nft uses for families, data types and verdicts.
//!
//! Models: table families `ip`, `ip6`, `inet`; the data types of set keys,
//! map values and expressions ([`DataType`]) with their nft names, byte
//! lengths and the listing's line-wrapping policy; concatenated key types
//! ([`KeyType`], `ipv4_addr . inet_proto . inet_service`); verdicts
//! ([`Verdict`]).
//!
//! Must never: resolve names through the host; other families (`arp`,
//! `bridge`, `netdev`) and other types are refused, not guessed.
//!
//! Error contract: parsers return [`ErrorKind`] naming the token with a hint.

use std::fmt;

use super::error::ErrorKind;

/// A table family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `ip` (IPv4)
    Ip,
    /// `ip6` (IPv6)
    Ip6,
    /// `inet` (both)
    Inet,
}

impl Family {
    /// The family as nft spells it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        }
    }

    /// The family called `name`, if it is one this model has.
    pub fn from_name(name: &str) -> Option<Family> {
        match name {
            "ip" => Some(Family::Ip),
            "ip6" => Some(Family::Ip6),
            "inet" => Some(Family::Inet),
            _ => None,
        }
    }

    /// Whether `name` is a family nft knows but this model does not.
    pub(crate) fn is_other_family(name: &str) -> bool {
        matches!(name, "arp" | "bridge" | "netdev")
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type of a value: a set key component, a map value, or what an
/// expression yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataType {
    /// `ipv4_addr`
    Ipv4Addr,
    /// `ipv6_addr`
    Ipv6Addr,
    /// `inet_proto` (the IP protocol / next header number)
    InetProto,
    /// `inet_service` (a port)
    InetService,
    /// `mark` (a packet mark)
    Mark,
    /// `ifname` (an interface name)
    Ifname,
    /// `nf_proto` (`meta nfproto`: ipv4 or ipv6)
    NfProto,
    /// `ct_state` (a bitmask)
    CtState,
    /// `ct_status` (a bitmask)
    CtStatus,
    /// `fib_addrtype` (the route type of an address)
    FibAddrType,
    /// `integer` (numgen results)
    Integer,
    /// `verdict` (only as a map's value type)
    Verdict,
}

impl DataType {
    /// The nft name of the type.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Ipv4Addr => "ipv4_addr",
            DataType::Ipv6Addr => "ipv6_addr",
            DataType::InetProto => "inet_proto",
            DataType::InetService => "inet_service",
            DataType::Mark => "mark",
            DataType::Ifname => "ifname",
            DataType::NfProto => "nf_proto",
            DataType::CtState => "ct_state",
            DataType::CtStatus => "ct_status",
            DataType::FibAddrType => "fib_addrtype",
            DataType::Integer => "integer",
            DataType::Verdict => "verdict",
        }
    }

    /// A type that may appear in a `type …` declaration of a set or map.
    pub(crate) fn from_decl(name: &str) -> Option<DataType> {
        Some(match name {
            "ipv4_addr" => DataType::Ipv4Addr,
            "ipv6_addr" => DataType::Ipv6Addr,
            "inet_proto" => DataType::InetProto,
            "inet_service" => DataType::InetService,
            "mark" => DataType::Mark,
            "ifname" => DataType::Ifname,
            "verdict" => DataType::Verdict,
            _ => return None,
        })
    }

    /// Byte length of a value of this type as the kernel stores it.
    pub(crate) fn byte_len(self) -> usize {
        match self {
            DataType::Ipv4Addr | DataType::Mark => 4,
            DataType::Ipv6Addr | DataType::Ifname => 16,
            DataType::InetProto | DataType::NfProto => 1,
            DataType::InetService => 2,
            DataType::CtState | DataType::CtStatus | DataType::FibAddrType => 4,
            DataType::Integer | DataType::Verdict => 4,
        }
    }

    /// Whether values of this type can be prefixes and ranges in sets.
    pub(crate) fn is_address(self) -> bool {
        matches!(self, DataType::Ipv4Addr | DataType::Ipv6Addr)
    }

    /// Whether the type is a bitmask (an implicit match tests any bit).
    pub(crate) fn is_bitmask(self) -> bool {
        matches!(self, DataType::CtState | DataType::CtStatus)
    }

    /// How many elements `nft list` prints on one line before wrapping, for a
    /// set keyed by this type alone (`None`: one per line). From nft 1.0.6
    /// `calculate_delim`.
    pub(crate) fn elements_per_line(self) -> Option<usize> {
        match self {
            DataType::Integer
            | DataType::InetProto
            | DataType::InetService
            | DataType::Mark
            | DataType::NfProto => Some(5),
            DataType::Ipv4Addr | DataType::CtState | DataType::CtStatus => Some(2),
            _ => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key type: one data type, or a concatenation of several.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyType(pub Vec<DataType>);

impl KeyType {
    /// A single-type key.
    pub fn single(t: DataType) -> KeyType {
        KeyType(vec![t])
    }

    /// The component types.
    pub fn parts(&self) -> &[DataType] {
        &self.0
    }

    /// Whether this is a concatenation.
    pub fn is_concat(&self) -> bool {
        self.0.len() > 1
    }

    /// Elements per listing line (see [`DataType::elements_per_line`]).
    pub(crate) fn elements_per_line(&self) -> Option<usize> {
        match self.0.as_slice() {
            [one] => one.elements_per_line(),
            _ => None,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" . ")?;
            }
            f.write_str(t.name())?;
        }
        Ok(())
    }
}

/// A verdict: what a rule, or a verdict map element, decides.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `accept`: stop this base chain, let the packet continue.
    Accept,
    /// `drop`
    Drop,
    /// `continue`: go on with the next rule.
    Continue,
    /// `return`: back to the calling chain (or the base chain's policy).
    Return,
    /// `jump CHAIN`: call the chain, come back after it.
    Jump(String),
    /// `goto CHAIN`: go to the chain, do not come back.
    Goto(String),
}

impl Verdict {
    /// The chain a `jump`/`goto` names.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }

    /// Parse a verdict starting at `word` (`jump`/`goto` take the chain).
    pub(crate) fn from_words(word: &str, chain: Option<&str>) -> Option<Verdict> {
        Some(match (word, chain) {
            ("accept", _) => Verdict::Accept,
            ("drop", _) => Verdict::Drop,
            ("continue", _) => Verdict::Continue,
            ("return", _) => Verdict::Return,
            ("jump", Some(c)) => Verdict::Jump(c.to_string()),
            ("goto", Some(c)) => Verdict::Goto(c.to_string()),
            _ => return None,
        })
    }

    pub(crate) fn takes_chain(word: &str) -> bool {
        matches!(word, "jump" | "goto")
    }

    pub(crate) fn is_keyword(word: &str) -> bool {
        matches!(
            word,
            "accept" | "drop" | "continue" | "return" | "jump" | "goto"
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Continue => f.write_str("continue"),
            Verdict::Return => f.write_str("return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// Check an object name (table, chain, set): nft allows up to 255 bytes.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), ErrorKind> {
    if name.is_empty() || name.len() > 255 {
        return Err(ErrorKind::bad(
            what,
            name,
            "names are 1 to 255 bytes (NFT_NAME_MAXLEN)",
        ));
    }
    Ok(())
}

/// Check a comment: the kernel keeps at most 128 bytes.
pub(crate) fn check_comment(text: &str) -> Result<(), ErrorKind> {
    if text.len() > 128 {
        return Err(ErrorKind::bad(
            "comment",
            text,
            "comments are at most 128 bytes",
        ));
    }
    Ok(())
}
