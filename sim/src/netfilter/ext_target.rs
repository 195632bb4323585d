//! Option parsing for targets: which options each `-j` target takes, and how
//! the collected options become a [`Target`].
//!
//! Models: the option tables and checks of libxt_REJECT, libxt_NAT (DNAT,
//! SNAT), libxt_MASQUERADE, libxt_MARK and libxt_LOG, with their
//! normalisations (`--set-mark`, `--or-mark`, ... all become the kernel's
//! `--set-xmark value/mask`; `--log-level warning` is level 4).
//!
//! Must never: take an unknown target name as a chain without saying so —
//! names of real targets this model does not implement are refused here, and
//! anything else is a jump whose chain must exist when the rule is applied.
//!
//! Error contract: every failure is an [`ErrorKind`] naming the token.

use std::net::IpAddr;

use super::addr::{parse_addr, Family, Negatable};
use super::error::ErrorKind;
use super::ext_common::{find_spec, parse_u32, Opt, OptSpec};
use super::ext_match::parse_mark;
use super::l4::{parse_port, PortRange, Protocol};
use super::targets::{Log, MarkTarget, Masquerade, Nat, RejectWith, Target};

/// What `-j NAME` named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Accept,
    Drop,
    Return,
    Reject,
    Dnat,
    Snat,
    Masquerade,
    Mark,
    Log,
    /// A user chain (checked when the rule is applied).
    Chain(String),
}

/// Real iptables targets this model does not implement; refused by name
/// rather than taken for chains.
const UNSUPPORTED: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "QUEUE",
    "RATEEST",
    "REDIRECT",
    "SECMARK",
    "SET",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

/// Names a user chain may not take because they are target names.
pub(crate) fn is_target_name(name: &str) -> bool {
    UNSUPPORTED.contains(&name)
        || matches!(
            name,
            "ACCEPT"
                | "DROP"
                | "RETURN"
                | "REJECT"
                | "DNAT"
                | "SNAT"
                | "MASQUERADE"
                | "MARK"
                | "LOG"
        )
}

const REJECT: &[OptSpec] = &[OptSpec::new(&["--reject-with"], 1, false)];
const DNAT: &[OptSpec] = &[
    OptSpec::new(&["--to-destination", "--to"], 1, false),
    OptSpec::new(&["--random"], 0, false),
    OptSpec::new(&["--persistent"], 0, false),
];
const SNAT: &[OptSpec] = &[
    OptSpec::new(&["--to-source", "--to"], 1, false),
    OptSpec::new(&["--random"], 0, false),
    OptSpec::new(&["--random-fully"], 0, false),
    OptSpec::new(&["--persistent"], 0, false),
];
const MASQUERADE: &[OptSpec] = &[
    OptSpec::new(&["--to-ports"], 1, false),
    OptSpec::new(&["--random"], 0, false),
    OptSpec::new(&["--random-fully"], 0, false),
];
const MARK: &[OptSpec] = &[
    OptSpec::new(&["--set-xmark"], 1, false),
    OptSpec::new(&["--set-mark"], 1, false),
    OptSpec::new(&["--and-mark"], 1, false),
    OptSpec::new(&["--or-mark"], 1, false),
    OptSpec::new(&["--xor-mark"], 1, false),
];
const LOG: &[OptSpec] = &[
    OptSpec::new(&["--log-prefix"], 1, false),
    OptSpec::new(&["--log-level"], 1, false),
    OptSpec::new(&["--log-tcp-sequence"], 0, false),
    OptSpec::new(&["--log-tcp-options"], 0, false),
    OptSpec::new(&["--log-ip-options"], 0, false),
    OptSpec::new(&["--log-uid"], 0, false),
    OptSpec::new(&["--log-macdecode"], 0, false),
];

impl TargetKind {
    /// Classify a `-j` argument.
    pub(crate) fn from_name(name: &str) -> Result<TargetKind, ErrorKind> {
        Ok(match name {
            "ACCEPT" => TargetKind::Accept,
            "DROP" => TargetKind::Drop,
            "RETURN" => TargetKind::Return,
            "REJECT" => TargetKind::Reject,
            "DNAT" => TargetKind::Dnat,
            "SNAT" => TargetKind::Snat,
            "MASQUERADE" => TargetKind::Masquerade,
            "MARK" => TargetKind::Mark,
            "LOG" => TargetKind::Log,
            _ if UNSUPPORTED.contains(&name) => {
                return Err(ErrorKind::UnknownTarget {
                    token: name.to_string(),
                })
            }
            _ if name.is_empty() || name.len() > 28 => {
                return Err(ErrorKind::bad_value(
                    "-j",
                    name,
                    "target and chain names are 1 to 28 bytes",
                ))
            }
            _ => TargetKind::Chain(name.to_string()),
        })
    }

    /// The spec of an option this target takes.
    pub(crate) fn option(&self, name: &str) -> Option<&'static OptSpec> {
        let specs: &'static [OptSpec] = match self {
            TargetKind::Reject => REJECT,
            TargetKind::Dnat => DNAT,
            TargetKind::Snat => SNAT,
            TargetKind::Masquerade => MASQUERADE,
            TargetKind::Mark => MARK,
            TargetKind::Log => LOG,
            _ => return None,
        };
        find_spec(specs, name)
    }
}

fn get<'a>(opts: &'a [Opt], name: &str) -> Option<&'a Opt> {
    opts.iter().find(|o| o.spec.canonical() == name)
}

/// Turn a target's collected options into a [`Target`], with its checks.
pub(crate) fn finalize(
    kind: TargetKind,
    opts: &[Opt],
    family: Family,
    protocol: Option<&Negatable<Protocol>>,
) -> Result<Target, ErrorKind> {
    let ported = protocol.is_some_and(|p| p.value.has_ports() && !p.negated);
    Ok(match kind {
        TargetKind::Accept => Target::Accept,
        TargetKind::Drop => Target::Drop,
        TargetKind::Return => Target::Return,
        TargetKind::Chain(c) => Target::Jump(c),
        TargetKind::Reject => {
            let with = match get(opts, "--reject-with") {
                None => RejectWith::default_for(family),
                Some(o) => RejectWith::parse(&o.values[0], family).ok_or_else(|| {
                    ErrorKind::bad_value(
                        "--reject-with",
                        &o.values[0],
                        "unknown reject type for this family",
                    )
                })?,
            };
            let tcp = protocol.is_some_and(|p| p.value == Protocol::Tcp && !p.negated);
            if with == RejectWith::TcpReset && !tcp {
                return Err(ErrorKind::refused(
                    "tcp-reset",
                    "REJECT --reject-with tcp-reset needs `-p tcp`",
                ));
            }
            Target::Reject(with)
        }
        TargetKind::Dnat | TargetKind::Snat => {
            let (name, snat) = match kind {
                TargetKind::Dnat => ("--to-destination", false),
                _ => ("--to-source", true),
            };
            let o = get(opts, name).ok_or(ErrorKind::MissingOption {
                module: if snat { "SNAT" } else { "DNAT" },
                option: name,
            })?;
            let (addrs, ports) = parse_nat_range(name, &o.values[0], family)?;
            if ports.is_some() && !ported {
                return Err(ErrorKind::refused(
                    &o.values[0],
                    "a port needs `-p tcp`, `-p udp` or `-p sctp` on the same rule",
                ));
            }
            let nat = Nat {
                addrs,
                ports,
                random: get(opts, "--random").is_some(),
                random_fully: get(opts, "--random-fully").is_some(),
                persistent: get(opts, "--persistent").is_some(),
            };
            if snat {
                Target::Snat(nat)
            } else {
                Target::Dnat(nat)
            }
        }
        TargetKind::Masquerade => {
            let ports = match get(opts, "--to-ports") {
                None => None,
                Some(o) => {
                    if !ported {
                        return Err(ErrorKind::refused(
                            "--to-ports",
                            "--to-ports needs `-p tcp`, `-p udp` or `-p sctp` on the same rule",
                        ));
                    }
                    Some(parse_port_dash("--to-ports", &o.values[0])?)
                }
            };
            Target::Masquerade(Masquerade {
                ports,
                random: get(opts, "--random").is_some(),
                random_fully: get(opts, "--random-fully").is_some(),
            })
        }
        TargetKind::Mark => {
            let mut given = opts.iter();
            let o = given.next().ok_or(ErrorKind::MissingOption {
                module: "MARK",
                option: "--set-xmark, --set-mark, --and-mark, --or-mark or --xor-mark",
            })?;
            if let Some(extra) = given.next() {
                return Err(ErrorKind::conflict(
                    extra.spec.canonical(),
                    "MARK takes one operation",
                ));
            }
            let name = o.spec.canonical();
            let text = &o.values[0];
            let (value, mask) = match name {
                "--set-xmark" => parse_mark(name, text)?,
                "--set-mark" => {
                    let (v, m) = parse_mark(name, text)?;
                    (v, v | m)
                }
                _ => {
                    if text.contains('/') {
                        return Err(ErrorKind::bad_value(
                            name,
                            text,
                            "takes a value without /mask",
                        ));
                    }
                    let v = parse_u32(name, text, text)?;
                    match name {
                        "--and-mark" => (0, !v),
                        "--or-mark" => (v, v),
                        _ => (v, 0),
                    }
                }
            };
            Target::Mark(MarkTarget { value, mask })
        }
        TargetKind::Log => {
            let mut log = Log::default();
            if let Some(o) = get(opts, "--log-prefix") {
                // The kernel keeps 29 bytes; iptables 1.8.9 cuts the rest.
                let mut prefix = o.values[0].clone();
                let mut cut = prefix.len().min(29);
                while !prefix.is_char_boundary(cut) {
                    cut -= 1;
                }
                prefix.truncate(cut);
                log.prefix = prefix;
            }
            if let Some(o) = get(opts, "--log-level") {
                log.level = parse_log_level(&o.values[0])?;
            }
            log.tcp_sequence = get(opts, "--log-tcp-sequence").is_some();
            log.tcp_options = get(opts, "--log-tcp-options").is_some();
            log.ip_options = get(opts, "--log-ip-options").is_some();
            log.uid = get(opts, "--log-uid").is_some();
            log.macdecode = get(opts, "--log-macdecode").is_some();
            Target::Log(log)
        }
    })
}

fn parse_log_level(text: &str) -> Result<u8, ErrorKind> {
    const NAMES: &[(&str, u8)] = &[
        ("emerg", 0),
        ("panic", 0),
        ("alert", 1),
        ("crit", 2),
        ("error", 3),
        ("err", 3),
        ("warning", 4),
        ("warn", 4),
        ("notice", 5),
        ("info", 6),
        ("debug", 7),
    ];
    if let Some((_, l)) = NAMES.iter().find(|(n, _)| *n == text) {
        return Ok(*l);
    }
    match text.parse::<u8>() {
        Ok(l) if l <= 7 => Ok(l),
        _ => Err(ErrorKind::bad_value(
            "--log-level",
            text,
            "levels are 0-7 or a syslog level name",
        )),
    }
}

/// `p` or `p-q`.
fn parse_port_dash(option: &str, text: &str) -> Result<PortRange, ErrorKind> {
    let r = match text.split_once('-') {
        Some((lo, hi)) => PortRange {
            lo: parse_port(option, lo)?,
            hi: parse_port(option, hi)?,
        },
        None => PortRange::single(parse_port(option, text)?),
    };
    if r.lo > r.hi {
        return Err(ErrorKind::bad_value(
            option,
            text,
            "invalid port range (min > max)",
        ));
    }
    Ok(r)
}

type NatRange = (Option<(IpAddr, IpAddr)>, Option<PortRange>);

/// `addr[-addr][:port[-port]]`; IPv6 addresses with ports are bracketed.
fn parse_nat_range(option: &str, text: &str, family: Family) -> Result<NatRange, ErrorKind> {
    let (addr_part, port_part) = match family {
        Family::Ipv4 => match text.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        },
        Family::Ipv6 => {
            if let Some(rest) = text.strip_prefix('[') {
                let (a, after) = rest.split_once(']').ok_or_else(|| {
                    ErrorKind::bad_value(option, text, "unclosed `[` around the address")
                })?;
                match after.strip_prefix(':') {
                    Some(p) => (a, Some(p)),
                    None if after.is_empty() => (a, None),
                    None => {
                        return Err(ErrorKind::bad_value(option, text, "expected `[addr]:port`"))
                    }
                }
            } else if let Some(p) = text.strip_prefix(':') {
                ("", Some(p))
            } else {
                (text, None)
            }
        }
    };
    let addrs = if addr_part.is_empty() {
        None
    } else {
        let (lo, hi) = match addr_part.split_once('-') {
            Some((lo, hi)) if family == Family::Ipv4 => (lo, hi),
            Some(_) => {
                return Err(ErrorKind::bad_value(
                    option,
                    text,
                    "IPv6 address ranges are not supported",
                ))
            }
            None => (addr_part, addr_part),
        };
        let lo = parse_addr(option, lo, family)?;
        let hi = parse_addr(option, hi, family)?;
        if lo > hi {
            return Err(ErrorKind::bad_value(
                option,
                text,
                "address range min > max",
            ));
        }
        Some((lo, hi))
    };
    let ports = match port_part {
        None => None,
        Some(p) => Some(parse_port_dash(option, p)?),
    };
    if addrs.is_none() && ports.is_none() {
        return Err(ErrorKind::bad_value(
            option,
            text,
            "expected an address and/or a port",
        ));
    }
    Ok((addrs, ports))
}
