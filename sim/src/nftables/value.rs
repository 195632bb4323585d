//! Typed values as nft parses and prints them: addresses, protocols, ports,
//! marks, interface names, conntrack states, route types, integers; and
//! atoms (a value, a prefix or a range) that rules and sets compare against.
//!
//! Models: nft 1.0.6's printing — marks as `0x%08x`, ports as numbers,
//! protocols by their `/etc/protocols` name from a fixed table (Debian
//! netbase, the table the reference captures were made with), IPv6 the way
//! glibc's `inet_ntop` writes it, bitmask flags in bit order
//! (`established,new`); and the sort order of `nft list` (numeric for single
//! values, nft's `concat_expr_msort_value` for concatenations).
//!
//! Must never: resolve names through the host (`/etc/services`, DNS).
//!
//! Error contract: parse functions return [`ErrorKind::BadValue`] or
//! [`ErrorKind::Unsupported`] naming the token.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::ErrorKind;
use super::names::{flag, write_flags, CT_STATES, CT_STATUSES, FIB_TYPES, PROTOCOLS};
pub use super::names::{proto_name, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use super::types::DataType;

/// One value of a [`DataType`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// `ipv4_addr`
    Ipv4(Ipv4Addr),
    /// `ipv6_addr`
    Ipv6(Ipv6Addr),
    /// `inet_proto`
    Proto(u8),
    /// `inet_service`
    Port(u16),
    /// `mark`
    Mark(u32),
    /// `ifname` (may end in `*` as a wildcard in rule matches)
    Ifname(String),
    /// `nf_proto` (2 = ipv4, 10 = ipv6)
    NfProto(u8),
    /// `ct_state` bits (invalid 1, established 2, related 4, new 8, untracked 64)
    CtState(u32),
    /// `ct_status` bits (expected 1, seen-reply 2, assured 4, confirmed 8, snat 16, dnat 32, dying 512)
    CtStatus(u32),
    /// `fib_addrtype` (RTN_*: unicast 1, local 2, broadcast 3, …)
    FibType(u32),
    /// `integer`
    Int(u32),
}

fn parse_u32(token: &str) -> Option<u32> {
    match token.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => token.parse().ok(),
    }
}

impl Value {
    /// The value's type.
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Ipv4(_) => DataType::Ipv4Addr,
            Value::Ipv6(_) => DataType::Ipv6Addr,
            Value::Proto(_) => DataType::InetProto,
            Value::Port(_) => DataType::InetService,
            Value::Mark(_) => DataType::Mark,
            Value::Ifname(_) => DataType::Ifname,
            Value::NfProto(_) => DataType::NfProto,
            Value::CtState(_) => DataType::CtState,
            Value::CtStatus(_) => DataType::CtStatus,
            Value::FibType(_) => DataType::FibAddrType,
            Value::Int(_) => DataType::Integer,
        }
    }

    /// Parse one value of type `dt` (flag types take one flag name).
    pub(crate) fn parse(dt: DataType, token: &str) -> Result<Value, ErrorKind> {
        let bad = |reason: &str| ErrorKind::bad(dt.name(), token, reason);
        Ok(match dt {
            DataType::Ipv4Addr => Value::Ipv4(token.parse().map_err(|_| {
                bad("not an IPv4 address (host names are not resolved by the simulator)")
            })?),
            DataType::Ipv6Addr => Value::Ipv6(token.parse().map_err(|_| {
                bad("not an IPv6 address (host names are not resolved by the simulator)")
            })?),
            DataType::InetProto => {
                if let Some((n, _)) = PROTOCOLS.iter().find(|(_, s)| *s == token) {
                    Value::Proto(*n)
                } else if token == "icmpv6" {
                    Value::Proto(58)
                } else {
                    let n: u32 = token
                        .parse()
                        .map_err(|_| bad("not a protocol name or number"))?;
                    Value::Proto(u8::try_from(n).map_err(|_| bad("protocol out of range"))?)
                }
            }
            DataType::InetService => {
                let n: u32 = token.parse().map_err(|_| {
                    ErrorKind::unsupported(
                        token,
                        "service names are not resolved by the simulator; write the port number",
                    )
                })?;
                Value::Port(u16::try_from(n).map_err(|_| bad("service out of range"))?)
            }
            DataType::Mark => {
                Value::Mark(parse_u32(token).ok_or_else(|| bad("not a 32-bit number"))?)
            }
            DataType::Integer => {
                Value::Int(parse_u32(token).ok_or_else(|| bad("not a 32-bit number"))?)
            }
            DataType::Ifname => {
                if token.is_empty() || token.len() > 15 {
                    return Err(bad("interface names are 1 to 15 bytes"));
                }
                Value::Ifname(token.to_string())
            }
            DataType::NfProto => match token {
                "ipv4" => Value::NfProto(2),
                "ipv6" => Value::NfProto(10),
                _ => return Err(bad("expected ipv4 or ipv6")),
            },
            DataType::CtState => Value::CtState(flag(CT_STATES, token).ok_or_else(|| {
                bad("not a conntrack state (invalid, established, related, new, untracked)")
            })?),
            DataType::CtStatus => Value::CtStatus(
                flag(CT_STATUSES, token).ok_or_else(|| bad("not a conntrack status"))?,
            ),
            DataType::FibAddrType => Value::FibType(
                flag(FIB_TYPES, token).ok_or_else(|| bad("not a route address type"))?,
            ),
            DataType::Verdict => return Err(bad("a verdict is not a value")),
        })
    }

    /// The value as an unsigned integer (addresses, ports, numbers), for
    /// ranges and prefixes.
    pub(crate) fn as_u128(&self) -> Option<u128> {
        Some(match self {
            Value::Ipv4(a) => u128::from(u32::from(*a)),
            Value::Ipv6(a) => u128::from(*a),
            Value::Proto(n) | Value::NfProto(n) => u128::from(*n),
            Value::Port(n) => u128::from(*n),
            Value::Mark(n) | Value::Int(n) => u128::from(*n),
            _ => return None,
        })
    }

    /// The value of type `dt` with integer `n` (inverse of `as_u128`).
    pub(crate) fn from_u128(dt: DataType, n: u128) -> Option<Value> {
        Some(match dt {
            DataType::Ipv4Addr => Value::Ipv4(Ipv4Addr::from(u32::try_from(n).ok()?)),
            DataType::Ipv6Addr => Value::Ipv6(Ipv6Addr::from(n)),
            DataType::InetProto => Value::Proto(u8::try_from(n).ok()?),
            DataType::InetService => Value::Port(u16::try_from(n).ok()?),
            DataType::Mark => Value::Mark(u32::try_from(n).ok()?),
            DataType::Integer => Value::Int(u32::try_from(n).ok()?),
            _ => return None,
        })
    }

    /// Bits of the type (address width for prefixes).
    pub(crate) fn bits(dt: DataType) -> u32 {
        (dt.byte_len() * 8) as u32
    }

    /// The bytes the kernel stores, in the order nft exports them for
    /// sorting concatenations (network order for addresses and ports, host
    /// order — little endian here — for marks and integers).
    fn export_bytes(&self) -> Vec<u8> {
        match self {
            Value::Ipv4(a) => a.octets().to_vec(),
            Value::Ipv6(a) => a.octets().to_vec(),
            Value::Proto(n) | Value::NfProto(n) => vec![*n],
            Value::Port(n) => n.to_be_bytes().to_vec(),
            Value::Mark(n)
            | Value::Int(n)
            | Value::CtState(n)
            | Value::CtStatus(n)
            | Value::FibType(n) => n.to_le_bytes().to_vec(),
            Value::Ifname(s) => {
                let mut b = s.as_bytes().to_vec();
                b.resize(16, 0);
                b
            }
        }
    }

    /// The numeric value nft sorts a single value by, as 16 big-endian bytes.
    fn sort_number(&self) -> [u8; 16] {
        let n = match self {
            Value::Ifname(_) => {
                let mut b = self.export_bytes();
                b.reverse();
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[..16]);
                return a;
            }
            Value::CtState(n) | Value::CtStatus(n) | Value::FibType(n) => u128::from(*n),
            other => other.as_u128().unwrap_or(0),
        };
        n.to_be_bytes()
    }
}

/// The byte string whose lexicographic order is `nft list`'s element order
/// for a key of these values.
pub(crate) fn sort_key(values: &[Value]) -> Vec<u8> {
    match values {
        [one] => one.sort_number().to_vec(),
        many => {
            let mut b: Vec<u8> = many.iter().flat_map(Value::export_bytes).collect();
            b.reverse();
            b
        }
    }
}

/// IPv6 text as glibc `inet_ntop` writes it (RFC 5952 compression, and
/// `::a.b.c.d` / `::ffff:a.b.c.d` for embedded IPv4).
pub(crate) fn fmt_ipv6(a: &Ipv6Addr) -> String {
    let w = a.segments();
    // Longest run of zero words (length >= 2), leftmost on ties.
    let (mut best, mut cur): ((usize, usize), (usize, usize)) = ((0, 0), (0, 0));
    for (i, word) in w.iter().enumerate() {
        if *word == 0 {
            if cur.1 == 0 {
                cur = (i, 1);
            } else {
                cur.1 += 1;
            }
            if cur.1 > best.1 {
                best = cur;
            }
        } else {
            cur = (0, 0);
        }
    }
    if best.1 < 2 {
        best = (0, 0);
    }
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if best.1 > 0 && i == best.0 {
            s.push(':');
            i += best.1;
            if i == 8 {
                s.push(':');
            }
            continue;
        }
        if i > 0 {
            s.push(':');
        }
        if i == 6 && best.0 == 0 && (best.1 == 6 || (best.1 == 5 && w[5] == 0xffff)) {
            let o = a.octets();
            s.push_str(&format!("{}.{}.{}.{}", o[12], o[13], o[14], o[15]));
            break;
        }
        s.push_str(&format!("{:x}", w[i]));
        i += 1;
    }
    s
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Ipv4(a) => write!(f, "{a}"),
            Value::Ipv6(a) => f.write_str(&fmt_ipv6(a)),
            Value::Proto(n) => match proto_name(*n) {
                Some(name) => f.write_str(name),
                None => write!(f, "{n}"),
            },
            Value::Port(n) => write!(f, "{n}"),
            Value::Mark(n) => write!(f, "0x{n:08x}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Ifname(s) => write!(f, "\"{s}\""),
            Value::NfProto(2) => f.write_str("ipv4"),
            Value::NfProto(10) => f.write_str("ipv6"),
            Value::NfProto(n) => write!(f, "{n}"),
            Value::CtState(b) => write_flags(f, CT_STATES, *b),
            Value::CtStatus(b) => write_flags(f, CT_STATUSES, *b),
            Value::FibType(n) => match FIB_TYPES.iter().find(|(v, _)| v == n) {
                Some((_, name)) => f.write_str(name),
                None => write!(f, "{n}"),
            },
        }
    }
}

/// What a rule compares against, or a set element key component: a value,
/// a prefix (`10.0.0.0/8`) or a range (`1-1024`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    /// One value.
    Value(Value),
    /// An address prefix: the network (host bits cleared) and its length.
    Prefix(Value, u8),
    /// An inclusive range.
    Range(Value, Value),
}

impl Atom {
    /// Parse a value, `addr/len` or `low-high` of type `dt`.
    pub(crate) fn parse(dt: DataType, token: &str) -> Result<Atom, ErrorKind> {
        if dt.is_address() {
            if let Some((addr, len)) = token.split_once('/') {
                let v = Value::parse(dt, addr)?;
                let bits = Value::bits(dt);
                let len: u32 = len
                    .parse()
                    .ok()
                    .filter(|l| *l <= bits)
                    .ok_or_else(|| ErrorKind::bad(dt.name(), token, "bad prefix length"))?;
                return Ok(Atom::prefix(&v, dt, len as u8));
            }
        }
        if let Ok(v) = Value::parse(dt, token) {
            return Ok(Atom::Value(v));
        }
        if matches!(
            dt,
            DataType::Ipv4Addr
                | DataType::Ipv6Addr
                | DataType::InetService
                | DataType::InetProto
                | DataType::Mark
                | DataType::Integer
        ) {
            if let Some((lo, hi)) = token.split_once('-') {
                if !lo.is_empty() && !hi.is_empty() {
                    let (l, h) = (Value::parse(dt, lo)?, Value::parse(dt, hi)?);
                    if l.as_u128() > h.as_u128() {
                        return Err(ErrorKind::bad(dt.name(), token, "range is reversed"));
                    }
                    return Ok(Atom::Range(l, h));
                }
            }
        }
        Value::parse(dt, token).map(Atom::Value)
    }

    fn prefix(v: &Value, dt: DataType, len: u8) -> Atom {
        let bits = Value::bits(dt);
        let n = v.as_u128().unwrap_or(0);
        let mask = if len == 0 {
            0
        } else {
            (u128::MAX << (128 - u32::from(len))) >> (128 - bits)
        };
        let net = Value::from_u128(dt, n & mask).unwrap_or_else(|| v.clone());
        if u32::from(len) == bits {
            Atom::Value(net)
        } else {
            Atom::Prefix(net, len)
        }
    }

    /// The value's type.
    pub fn data_type(&self) -> DataType {
        match self {
            Atom::Value(v) | Atom::Prefix(v, _) | Atom::Range(v, _) => v.data_type(),
        }
    }

    /// The inclusive integer interval this atom covers (for interval sets).
    pub(crate) fn bounds(&self) -> Option<(u128, u128)> {
        match self {
            Atom::Value(v) => v.as_u128().map(|n| (n, n)),
            Atom::Range(l, h) => Some((l.as_u128()?, h.as_u128()?)),
            Atom::Prefix(v, len) => {
                let bits = Value::bits(v.data_type());
                let n = v.as_u128()?;
                let host = if u32::from(*len) >= bits {
                    0
                } else {
                    (u128::MAX >> (128 - bits)) >> u32::from(*len)
                };
                Some((n, n | host))
            }
        }
    }

    /// Whether `v` lies in this atom (exact for values and ifname wildcards).
    pub fn contains(&self, v: &Value) -> bool {
        match (self, v) {
            (Atom::Value(Value::Ifname(pat)), Value::Ifname(name)) => match pat.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => pat == name,
            },
            (Atom::Value(a), b) => a == b,
            _ => match (self.bounds(), v.as_u128()) {
                (Some((lo, hi)), Some(n)) => {
                    self.data_type() == v.data_type() && lo <= n && n <= hi
                }
                _ => false,
            },
        }
    }

    /// The atom nft prints for interval `[lo, hi]` of type `dt` in a set
    /// listing: a value, a prefix when aligned (addresses only), else a range.
    pub(crate) fn from_bounds(dt: DataType, lo: u128, hi: u128) -> Option<Atom> {
        let l = Value::from_u128(dt, lo)?;
        if lo == hi {
            return Some(Atom::Value(l));
        }
        if dt.is_address() {
            let size = hi - lo;
            let bits = Value::bits(dt);
            if size.checked_add(1).is_none_or(|s| s.is_power_of_two()) && lo & size == 0 {
                let host_bits = 128 - size.leading_zeros();
                return Some(Atom::Prefix(l, (bits - host_bits) as u8));
            }
        }
        Some(Atom::Range(l, Value::from_u128(dt, hi)?))
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Value(v) => write!(f, "{v}"),
            Atom::Prefix(v, len) => write!(f, "{v}/{len}"),
            Atom::Range(l, h) => write!(f, "{l}-{h}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_prints_like_glibc() {
        for (text, want) in [
            ("fd00:10:96:0:0:0:0:2", "fd00:10:96::2"),
            ("::1", "::1"),
            ("::", "::"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("fd00::", "fd00::"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
        ] {
            let a: Ipv6Addr = text.parse().unwrap();
            assert_eq!(fmt_ipv6(&a), want, "{text}");
        }
    }

    #[test]
    fn atoms_normalise_prefixes_and_print_intervals() {
        let a = Atom::parse(DataType::Ipv4Addr, "10.1.2.3/8").unwrap();
        assert_eq!(a.to_string(), "10.0.0.0/8");
        let a = Atom::parse(DataType::Ipv4Addr, "1.2.3.4/32").unwrap();
        assert_eq!(a.to_string(), "1.2.3.4");
        let a = Atom::parse(DataType::Ipv4Addr, "0.0.0.0/0").unwrap();
        assert_eq!(a.bounds(), Some((0, u128::from(u32::MAX))));
        let p = Atom::from_bounds(DataType::Ipv4Addr, 0x0a00_0000, 0x0aff_ffff).unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8");
        let r = Atom::from_bounds(DataType::Ipv4Addr, 1, 5).unwrap();
        assert_eq!(r.to_string(), "0.0.0.1-0.0.0.5");
        let all = Atom::from_bounds(DataType::Ipv6Addr, 0, u128::MAX).unwrap();
        assert_eq!(all.to_string(), "::/0");
        assert!(Atom::Value(Value::Ifname("veth*".into())).contains(&Value::Ifname("veth1".into())));
    }

    #[test]
    fn flags_print_in_bit_order() {
        assert_eq!(Value::CtState(8 | 2).to_string(), "established,new");
        assert_eq!(Value::CtStatus(16 | 32).to_string(), "snat,dnat");
        assert_eq!(Value::Mark(0x4000).to_string(), "0x00004000");
        assert_eq!(Value::Proto(58).to_string(), "ipv6-icmp");
    }
}
