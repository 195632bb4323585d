//! Match extensions (`-m NAME ...`) as typed values, and how iptables-save
//! prints each one.
//!
//! Models: the matches kube-proxy (iptables and IPVS modes) and common node
//! agents emit — `tcp`/`udp`/`sctp` ports, `icmp`/`icmp6` types, `multiport`,
//! `comment`, `mark`, `addrtype`, `conntrack --ctstate`, `state` and
//! `nfacct` here; `statistic`, `recent` and `set`, whose answer depends on
//! more than the packet, in `match_state` — holding exactly what the kernel
//! stores.
//!
//! Must never: print anything iptables-save would not print for the same
//! kernel state, or hold state that changes while packets are evaluated
//! (the per-name `recent` tables live in the evaluator, not here).
//!
//! Error contract: none here; values are built by `ext_match`, which reports
//! errors.

use std::fmt::Write;

use super::addr::{Family, Negatable};
use super::ext_ipvs::{IpvsMatch, PhysdevMatch};
use super::l4::PortRange;
use super::quoting::push_save_string;

pub use super::match_state::{
    Recent, RecentAction, RecentSide, SetDir, SetMatch, Statistic, StatisticMode,
};

/// One `-m` match of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// `-m tcp`: ports and flags.
    Tcp(TcpMatch),
    /// `-m udp`: ports.
    Udp(PortMatch),
    /// `-m sctp`: ports.
    Sctp(PortMatch),
    /// `-m icmp --icmp-type` (IPv4).
    Icmp(IcmpMatch),
    /// `-m icmp6 --icmpv6-type` (IPv6).
    Icmp6(IcmpMatch),
    /// `-m multiport --dports/--sports/--ports`.
    Multiport(Multiport),
    /// `-m comment --comment TEXT` (the text as the kernel keeps it, ≤ 255 bytes).
    Comment(String),
    /// `-m mark [!] --mark value[/mask]`.
    Mark(MarkMatch),
    /// `-m addrtype`.
    AddrType(AddrTypeMatch),
    /// `-m conntrack [!] --ctstate LIST`.
    Conntrack(Negatable<CtStates>),
    /// `-m state [!] --state LIST`.
    State(Negatable<CtStates>),
    /// `-m statistic`.
    Statistic(Statistic),
    /// `-m recent`.
    Recent(Recent),
    /// `-m set [!] --match-set NAME dirs`.
    Set(SetMatch),
    /// `-m nfacct --nfacct-name NAME`.
    Nfacct(String),
    /// `-m ipvs` (see `ext_ipvs`).
    Ipvs(IpvsMatch),
    /// `-m physdev` flag options (see `ext_ipvs`).
    Physdev(PhysdevMatch),
}

impl Match {
    /// The module name printed after `-m`.
    pub fn module(&self) -> &'static str {
        match self {
            Match::Tcp(_) => "tcp",
            Match::Udp(_) => "udp",
            Match::Sctp(_) => "sctp",
            Match::Icmp(_) => "icmp",
            Match::Icmp6(_) => "icmp6",
            Match::Multiport(_) => "multiport",
            Match::Comment(_) => "comment",
            Match::Mark(_) => "mark",
            Match::AddrType(_) => "addrtype",
            Match::Conntrack(_) => "conntrack",
            Match::State(_) => "state",
            Match::Statistic(_) => "statistic",
            Match::Recent(_) => "recent",
            Match::Set(_) => "set",
            Match::Nfacct(_) => "nfacct",
            Match::Ipvs(_) => "ipvs",
            Match::Physdev(_) => "physdev",
        }
    }

    /// Append ` -m NAME options...` as iptables-save prints it.
    pub(crate) fn save(&self, out: &mut String, family: Family) {
        out.push_str(" -m ");
        out.push_str(self.module());
        match self {
            Match::Tcp(t) => {
                t.ports.save(out);
                if let Some(f) = &t.flags {
                    neg(out, f.negated);
                    out.push_str(" --tcp-flags ");
                    push_tcp_flags(out, f.value.mask);
                    out.push(' ');
                    push_tcp_flags(out, f.value.comp);
                }
            }
            Match::Udp(p) | Match::Sctp(p) => p.save(out),
            Match::Icmp(i) => {
                neg(out, i.negated);
                if i.kind == IcmpKind::Any {
                    out.push_str(" --icmp-type any");
                } else {
                    out.push_str(" --icmp-type");
                    i.save_type(out);
                }
            }
            Match::Icmp6(i) => {
                neg(out, i.negated);
                out.push_str(" --icmpv6-type");
                i.save_type(out);
            }
            Match::Multiport(m) => m.save(out),
            Match::Comment(c) => {
                out.push_str(" --comment");
                push_save_string(out, c);
            }
            Match::Mark(m) => {
                neg(out, m.negated);
                out.push_str(" --mark");
                push_mark(out, m.value, m.mask);
            }
            Match::AddrType(a) => a.save(out),
            Match::Conntrack(s) => {
                neg(out, s.negated);
                out.push_str(" --ctstate ");
                s.value.write(out);
            }
            Match::State(s) => {
                neg(out, s.negated);
                out.push_str(" --state ");
                s.value.write(out);
            }
            Match::Statistic(s) => s.save(out),
            Match::Recent(r) => r.save(out, family),
            Match::Set(s) => {
                neg(out, s.negated);
                out.push_str(" --match-set ");
                out.push_str(&s.name);
                for (i, d) in s.dirs.iter().enumerate() {
                    out.push(if i == 0 { ' ' } else { ',' });
                    out.push_str(match d {
                        SetDir::Src => "src",
                        SetDir::Dst => "dst",
                    });
                }
            }
            Match::Nfacct(name) => {
                // libxt_nfacct prints the option with a trailing space and then
                // the quoted-if-needed name with a leading one: two spaces.
                out.push_str(" --nfacct-name ");
                push_save_string(out, name);
            }
            Match::Ipvs(m) => m.save(out),
            Match::Physdev(m) => m.save(out),
        }
    }
}

/// ` !` before a negated option, as xtables prints it.
pub(super) fn neg(out: &mut String, negated: bool) {
    if negated {
        out.push_str(" !");
    }
}

/// ` 0xV` or ` 0xV/0xM` (mask omitted when all ones), as xtables prints marks.
pub(crate) fn push_mark(out: &mut String, value: u32, mask: u32) {
    if mask == u32::MAX {
        let _ = write!(out, " 0x{value:x}");
    } else {
        let _ = write!(out, " 0x{value:x}/0x{mask:x}");
    }
}

/// Source and destination port ranges of `tcp`/`udp`/`sctp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PortMatch {
    /// `--sport`.
    pub sport: Option<Negatable<PortRange>>,
    /// `--dport`.
    pub dport: Option<Negatable<PortRange>>,
}

impl PortMatch {
    fn save(&self, out: &mut String) {
        for (name, p) in [("sport", &self.sport), ("dport", &self.dport)] {
            // The kernel stores 0:65535 for "no port given"; save omits it.
            if let Some(p) = p.as_ref().filter(|p| !p.value.is_all()) {
                neg(out, p.negated);
                let _ = write!(out, " --{name} ");
                p.value.write(out, ':');
            }
        }
    }
}

/// `-m tcp`: ports plus `--tcp-flags`/`--syn`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TcpMatch {
    /// Port ranges.
    pub ports: PortMatch,
    /// `--tcp-flags MASK COMP` (`--syn` is `FIN,SYN,RST,ACK SYN`).
    pub flags: Option<Negatable<TcpFlags>>,
}

/// TCP flag bits examined (`mask`) and required set (`comp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    /// Flags examined.
    pub mask: u8,
    /// Of those, the ones that must be set.
    pub comp: u8,
}

/// TCP flag names in the order iptables prints them.
pub(crate) const TCP_FLAGS: &[(&str, u8)] = &[
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
];

fn push_tcp_flags(out: &mut String, flags: u8) {
    let names: Vec<&str> = TCP_FLAGS
        .iter()
        .filter(|(_, bit)| flags & bit != 0)
        .map(|(n, _)| *n)
        .collect();
    if names.is_empty() {
        out.push_str("NONE");
    } else {
        out.push_str(&names.join(","));
    }
}

/// Which ICMP messages an `icmp`/`icmp6` match selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IcmpKind {
    /// `any` (IPv4 only).
    Any,
    /// A type with an inclusive code range (`0..=255` when no code was given).
    Type { ty: u8, codes: (u8, u8) },
}

/// `--icmp-type` / `--icmpv6-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    /// `!` before the option.
    pub negated: bool,
    /// What is matched.
    pub kind: IcmpKind,
}

impl IcmpMatch {
    fn save_type(&self, out: &mut String) {
        if let IcmpKind::Type { ty, codes } = self.kind {
            let _ = write!(out, " {ty}");
            if codes != (0, 255) {
                let _ = write!(out, "/{}", codes.0);
            }
        }
    }
}

/// Which ports a `multiport` match looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortSide {
    /// `--sports`.
    Source,
    /// `--dports`.
    Destination,
    /// `--ports` (either).
    Either,
}

/// `-m multiport`: up to 15 port slots (a range takes two).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Multiport {
    /// `!` before the option.
    pub negated: bool,
    /// Which side.
    pub side: PortSide,
    /// Ports and ranges in the order given.
    pub ports: Vec<PortRange>,
}

impl Multiport {
    fn save(&self, out: &mut String) {
        neg(out, self.negated);
        out.push_str(match self.side {
            PortSide::Source => " --sports ",
            PortSide::Destination => " --dports ",
            PortSide::Either => " --ports ",
        });
        for (i, p) in self.ports.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            p.write(out, ':');
        }
    }
}

/// `-m mark [!] --mark value[/mask]`: matches when `(mark & mask) == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkMatch {
    /// `!` before `--mark`.
    pub negated: bool,
    /// Value compared.
    pub value: u32,
    /// Mask applied to the packet mark first (all ones when not given).
    pub mask: u32,
}

/// A set of routing address types (`LOCAL`, `UNICAST`, ...), bit `1 << rtn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddrTypes(pub u16);

/// Address type names in kernel `RTN_*` order (bit `1 << index`).
pub(crate) const ADDR_TYPES: &[&str] = &[
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];

impl AddrTypes {
    /// `LOCAL`.
    pub const LOCAL: AddrTypes = AddrTypes(1 << 2);

    /// Whether a type (by its `RTN_*` index) is in the set.
    pub fn contains_index(&self, rtn: usize) -> bool {
        rtn < 16 && self.0 & (1 << rtn) != 0
    }

    fn write(&self, out: &mut String) {
        let names: Vec<&str> = ADDR_TYPES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.contains_index(*i))
            .map(|(_, n)| *n)
            .collect();
        out.push_str(&names.join(","));
    }
}

/// `-m addrtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddrTypeMatch {
    /// `--src-type`.
    pub src: Option<Negatable<AddrTypes>>,
    /// `--dst-type`.
    pub dst: Option<Negatable<AddrTypes>>,
    /// `--limit-iface-in`: only addresses of the incoming interface count.
    pub limit_iface_in: bool,
    /// `--limit-iface-out`: only addresses of the outgoing interface count.
    pub limit_iface_out: bool,
}

impl AddrTypeMatch {
    fn save(&self, out: &mut String) {
        for (name, t) in [("src", &self.src), ("dst", &self.dst)] {
            if let Some(t) = t {
                neg(out, t.negated);
                let _ = write!(out, " --{name}-type ");
                t.value.write(out);
            }
        }
        if self.limit_iface_in {
            out.push_str(" --limit-iface-in");
        }
        if self.limit_iface_out {
            out.push_str(" --limit-iface-out");
        }
    }
}

/// A set of conntrack states, in the order iptables prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CtStates(pub u8);

/// Conntrack state names in print order (bit `1 << index`).
pub(crate) const CT_STATES: &[&str] = &[
    "INVALID",
    "NEW",
    "RELATED",
    "ESTABLISHED",
    "UNTRACKED",
    "SNAT",
    "DNAT",
];

impl CtStates {
    /// `INVALID`.
    pub const INVALID: CtStates = CtStates(1 << 0);
    /// `NEW`.
    pub const NEW: CtStates = CtStates(1 << 1);
    /// `RELATED`.
    pub const RELATED: CtStates = CtStates(1 << 2);
    /// `ESTABLISHED`.
    pub const ESTABLISHED: CtStates = CtStates(1 << 3);
    /// `UNTRACKED`.
    pub const UNTRACKED: CtStates = CtStates(1 << 4);
    /// `SNAT` (the connection's source was translated).
    pub const SNAT: CtStates = CtStates(1 << 5);
    /// `DNAT` (the connection's destination was translated).
    pub const DNAT: CtStates = CtStates(1 << 6);

    /// Whether every state of `other` is in `self`.
    pub fn contains(&self, other: CtStates) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any state of `other` is in `self`.
    pub fn intersects(&self, other: CtStates) -> bool {
        self.0 & other.0 != 0
    }

    fn write(&self, out: &mut String) {
        let names: Vec<&str> = CT_STATES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        out.push_str(&names.join(","));
    }
}
