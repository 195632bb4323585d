//! Rule targets (`-j`/`-g`) as typed values, and how iptables-save prints
//! each one.
//!
//! Models: the verdicts `ACCEPT`, `DROP`, `RETURN`; jumps and gotos to user
//! chains; and the target extensions `REJECT`, `DNAT`, `SNAT`, `MASQUERADE`,
//! `MARK` and `LOG`, holding what the kernel stores (every `MARK` form is the
//! kernel's `--set-xmark value/mask`; `REJECT` always has its `--reject-with`).
//!
//! Must never: accept a target in a table the kernel refuses it in — that is
//! checked where rules are parsed ([`Target::table_allowed`]) — or print
//! anything iptables-save would not.
//!
//! Error contract: none here; `ext_target` parses and reports errors.

use std::fmt::Write;
use std::net::IpAddr;

use super::addr::Family;
use super::l4::PortRange;
use super::quoting::push_save_string;
use super::ruleset::{Hook, TableId};

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `-j ACCEPT`.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j RETURN`.
    Return,
    /// `-j CHAIN`: evaluate a user chain, then come back.
    Jump(String),
    /// `-g CHAIN`: evaluate a user chain and do not come back here.
    Goto(String),
    /// `-j REJECT --reject-with ...`.
    Reject(RejectWith),
    /// `-j DNAT --to-destination ...`.
    Dnat(Nat),
    /// `-j SNAT --to-source ...`.
    Snat(Nat),
    /// `-j MASQUERADE`.
    Masquerade(Masquerade),
    /// `-j MARK --set-xmark value/mask`.
    Mark(MarkTarget),
    /// `-j LOG`.
    Log(Log),
}

impl Target {
    /// The name after `-j`/`-g`.
    pub fn name(&self) -> &str {
        match self {
            Target::Accept => "ACCEPT",
            Target::Drop => "DROP",
            Target::Return => "RETURN",
            Target::Jump(c) | Target::Goto(c) => c,
            Target::Reject(_) => "REJECT",
            Target::Dnat(_) => "DNAT",
            Target::Snat(_) => "SNAT",
            Target::Masquerade(_) => "MASQUERADE",
            Target::Mark(_) => "MARK",
            Target::Log(_) => "LOG",
        }
    }

    /// The user chain this target continues in, if any.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Target::Jump(c) | Target::Goto(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the target may appear in `table` at all (kernel `.table`
    /// restrictions, and iptables' refusal of DROP in nat).
    pub(crate) fn table_allowed(&self, table: TableId) -> Result<(), &'static str> {
        match self {
            Target::Reject(_) if table != TableId::Filter => {
                Err("REJECT only works in the filter table")
            }
            Target::Dnat(_) | Target::Snat(_) | Target::Masquerade(_) if table != TableId::Nat => {
                Err("NAT targets only work in the nat table")
            }
            Target::Drop if table == TableId::Nat => {
                Err("the nat table is not for filtering; drop in the filter table")
            }
            _ => Ok(()),
        }
    }

    /// The hooks from which the target may be reached, if restricted.
    pub(crate) fn allowed_hooks(&self) -> Option<&'static [Hook]> {
        match self {
            Target::Reject(_) => Some(&[Hook::Input, Hook::Forward, Hook::Output]),
            Target::Dnat(_) => Some(&[Hook::Prerouting, Hook::Output]),
            Target::Snat(_) => Some(&[Hook::Postrouting, Hook::Input]),
            Target::Masquerade(_) => Some(&[Hook::Postrouting]),
            _ => None,
        }
    }

    /// Append ` -j NAME options` (or ` -g CHAIN`) as iptables-save prints it.
    pub(crate) fn save(&self, out: &mut String, family: Family) {
        if let Target::Goto(c) = self {
            let _ = write!(out, " -g {c}");
            return;
        }
        let _ = write!(out, " -j {}", self.name());
        match self {
            Target::Reject(r) => {
                let _ = write!(out, " --reject-with {}", r.name());
            }
            Target::Dnat(n) => {
                out.push_str(" --to-destination ");
                n.save(out, family);
            }
            Target::Snat(n) => {
                out.push_str(" --to-source ");
                n.save(out, family);
            }
            Target::Masquerade(m) => {
                if let Some(p) = m.ports {
                    out.push_str(" --to-ports ");
                    p.write(out, '-');
                }
                if m.random {
                    out.push_str(" --random");
                }
                if m.random_fully {
                    out.push_str(" --random-fully");
                }
            }
            Target::Mark(m) => {
                let _ = write!(out, " --set-xmark 0x{:x}/0x{:x}", m.value, m.mask);
            }
            Target::Log(l) => l.save(out),
            Target::Accept | Target::Drop | Target::Return | Target::Jump(_) | Target::Goto(_) => {}
        }
    }
}

/// The ICMP error (or TCP reset) a REJECT sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectWith {
    /// `icmp-net-unreachable`
    IcmpNetUnreachable,
    /// `icmp-host-unreachable`
    IcmpHostUnreachable,
    /// `icmp-port-unreachable` (IPv4 default)
    IcmpPortUnreachable,
    /// `icmp-proto-unreachable`
    IcmpProtoUnreachable,
    /// `icmp-net-prohibited`
    IcmpNetProhibited,
    /// `icmp-host-prohibited`
    IcmpHostProhibited,
    /// `icmp-admin-prohibited`
    IcmpAdminProhibited,
    /// `tcp-reset`
    TcpReset,
    /// `icmp6-no-route`
    Icmp6NoRoute,
    /// `icmp6-adm-prohibited`
    Icmp6AdmProhibited,
    /// `icmp6-addr-unreachable`
    Icmp6AddrUnreachable,
    /// `icmp6-port-unreachable` (IPv6 default)
    Icmp6PortUnreachable,
}

/// `--reject-with` spellings per family: (accepted names, value).
const REJECT_V4: &[(&[&str], RejectWith)] = &[
    (
        &["icmp-net-unreachable", "net-unreach"],
        RejectWith::IcmpNetUnreachable,
    ),
    (
        &["icmp-host-unreachable", "host-unreach"],
        RejectWith::IcmpHostUnreachable,
    ),
    (
        &["icmp-port-unreachable", "port-unreach"],
        RejectWith::IcmpPortUnreachable,
    ),
    (
        &["icmp-proto-unreachable", "proto-unreach"],
        RejectWith::IcmpProtoUnreachable,
    ),
    (
        &["icmp-net-prohibited", "net-prohib"],
        RejectWith::IcmpNetProhibited,
    ),
    (
        &["icmp-host-prohibited", "host-prohib"],
        RejectWith::IcmpHostProhibited,
    ),
    (&["tcp-reset", "tcp-rst"], RejectWith::TcpReset),
    (
        &["icmp-admin-prohibited", "admin-prohib"],
        RejectWith::IcmpAdminProhibited,
    ),
];
const REJECT_V6: &[(&[&str], RejectWith)] = &[
    (&["icmp6-no-route", "no-route"], RejectWith::Icmp6NoRoute),
    (
        &["icmp6-adm-prohibited", "adm-prohibited"],
        RejectWith::Icmp6AdmProhibited,
    ),
    (
        &["icmp6-addr-unreachable", "addr-unreach"],
        RejectWith::Icmp6AddrUnreachable,
    ),
    (
        &["icmp6-port-unreachable", "port-unreach"],
        RejectWith::Icmp6PortUnreachable,
    ),
    (&["tcp-reset"], RejectWith::TcpReset),
];

impl RejectWith {
    /// The default for a family.
    pub fn default_for(family: Family) -> RejectWith {
        match family {
            Family::Ipv4 => RejectWith::IcmpPortUnreachable,
            Family::Ipv6 => RejectWith::Icmp6PortUnreachable,
        }
    }

    /// Parse a `--reject-with` value for a family.
    pub(crate) fn parse(text: &str, family: Family) -> Option<RejectWith> {
        let table = match family {
            Family::Ipv4 => REJECT_V4,
            Family::Ipv6 => REJECT_V6,
        };
        table
            .iter()
            .find(|(names, _)| names.contains(&text))
            .map(|(_, v)| *v)
    }

    /// The name iptables-save prints.
    pub fn name(self) -> &'static str {
        REJECT_V4
            .iter()
            .chain(REJECT_V6)
            .find(|(_, v)| *v == self)
            .map(|(names, _)| names[0])
            .unwrap_or("icmp-port-unreachable")
    }
}

/// A DNAT/SNAT translation: an address range and/or a port range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nat {
    /// First and last address (equal for a single address); `None`: keep it.
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// Port range; `None`: keep the port.
    pub ports: Option<PortRange>,
    /// `--random`.
    pub random: bool,
    /// `--random-fully` (SNAT only).
    pub random_fully: bool,
    /// `--persistent`.
    pub persistent: bool,
}

impl Nat {
    fn save(&self, out: &mut String, family: Family) {
        let bracket = family == Family::Ipv6 && self.ports.is_some();
        if let Some((lo, hi)) = self.addrs {
            if bracket {
                out.push('[');
            }
            let _ = write!(out, "{lo}");
            if hi != lo {
                let _ = write!(out, "-{hi}");
            }
            if bracket {
                out.push(']');
            }
        }
        if let Some(p) = self.ports {
            out.push(':');
            p.write(out, '-');
        }
        if self.random {
            out.push_str(" --random");
        }
        if self.random_fully {
            out.push_str(" --random-fully");
        }
        if self.persistent {
            out.push_str(" --persistent");
        }
    }
}

/// `-j MASQUERADE [--to-ports p[-q]] [--random] [--random-fully]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Masquerade {
    /// `--to-ports`.
    pub ports: Option<PortRange>,
    /// `--random`.
    pub random: bool,
    /// `--random-fully`.
    pub random_fully: bool,
}

/// `-j MARK`: the new mark is `(mark & !mask) ^ value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkTarget {
    /// Bits XORed in after clearing.
    pub value: u32,
    /// Bits cleared first.
    pub mask: u32,
}

impl MarkTarget {
    /// Apply to a packet mark.
    pub fn apply(&self, mark: u32) -> u32 {
        (mark & !self.mask) ^ self.value
    }
}

/// `-j LOG`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Log {
    /// `--log-prefix` (cut to 29 bytes as iptables does; empty when not given).
    pub prefix: String,
    /// `--log-level` as a syslog number (4, `warning`, when not given).
    pub level: u8,
    /// `--log-tcp-sequence`.
    pub tcp_sequence: bool,
    /// `--log-tcp-options`.
    pub tcp_options: bool,
    /// `--log-ip-options`.
    pub ip_options: bool,
    /// `--log-uid`.
    pub uid: bool,
    /// `--log-macdecode`.
    pub macdecode: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            prefix: String::new(),
            level: 4,
            tcp_sequence: false,
            tcp_options: false,
            ip_options: false,
            uid: false,
            macdecode: false,
        }
    }
}

impl Log {
    fn save(&self, out: &mut String) {
        if !self.prefix.is_empty() {
            out.push_str(" --log-prefix");
            push_save_string(out, &self.prefix);
        }
        if self.level != 4 {
            let _ = write!(out, " --log-level {}", self.level);
        }
        for (on, flag) in [
            (self.tcp_sequence, " --log-tcp-sequence"),
            (self.tcp_options, " --log-tcp-options"),
            (self.ip_options, " --log-ip-options"),
            (self.uid, " --log-uid"),
            (self.macdecode, " --log-macdecode"),
        ] {
            if on {
                out.push_str(flag);
            }
        }
    }
}
