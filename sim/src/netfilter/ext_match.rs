//! Option parsing for match extensions: which options each `-m` module takes,
//! and how the collected options become a [`Match`].
//!
//! Models: the option tables and final checks of the xtables match
//! libraries (libxt_tcp, libxt_multiport, libxt_recent, ...), including their
//! defaults (`recent --name DEFAULT --mask <all ones> --rsource`) and value
//! normalisations (marks and probabilities as the kernel stores them).
//!
//! Must never: ignore an option, a module, or a malformed value.
//!
//! Error contract: every failure is an [`ErrorKind`] naming the option or
//! value at fault; `MissingOption` when a required option is absent.

use super::addr::{parse_addr, Family, Negatable};
use super::error::ErrorKind;
use super::ext_common::{find_spec, parse_u32, Opt, OptSpec};
use super::l4::{PortRange, Protocol};
pub(crate) use super::match_values::parse_mark;
use super::match_values::{parse_addr_types, parse_icmp_type, parse_states, parse_tcp_flags};
use super::matches::*;

/// A match module this model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchKind {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Multiport,
    Comment,
    Mark,
    AddrType,
    Conntrack,
    State,
    Statistic,
    Recent,
    Set,
    Nfacct,
    Ipvs,
    Physdev,
}

const PORTS: &[OptSpec] = &[
    OptSpec::new(&["--sport", "--source-port"], 1, true),
    OptSpec::new(&["--dport", "--destination-port"], 1, true),
];
const TCP: &[OptSpec] = &[
    OptSpec::new(&["--sport", "--source-port"], 1, true),
    OptSpec::new(&["--dport", "--destination-port"], 1, true),
    OptSpec::new(&["--tcp-flags"], 2, true),
    OptSpec::new(&["--syn"], 0, true),
];
const ICMP: &[OptSpec] = &[OptSpec::new(&["--icmp-type"], 1, true)];
const ICMP6: &[OptSpec] = &[OptSpec::new(&["--icmpv6-type"], 1, true)];
const MULTIPORT: &[OptSpec] = &[
    OptSpec::new(&["--sports", "--source-ports"], 1, true),
    OptSpec::new(&["--dports", "--destination-ports"], 1, true),
    OptSpec::new(&["--ports"], 1, true),
];
const COMMENT: &[OptSpec] = &[OptSpec::new(&["--comment"], 1, false)];
const MARK: &[OptSpec] = &[OptSpec::new(&["--mark"], 1, true)];
const ADDRTYPE: &[OptSpec] = &[
    OptSpec::new(&["--src-type"], 1, true),
    OptSpec::new(&["--dst-type"], 1, true),
    OptSpec::new(&["--limit-iface-in"], 0, false),
    OptSpec::new(&["--limit-iface-out"], 0, false),
];
const CONNTRACK: &[OptSpec] = &[OptSpec::new(&["--ctstate"], 1, true)];
const STATE: &[OptSpec] = &[OptSpec::new(&["--state"], 1, true)];
const STATISTIC: &[OptSpec] = &[
    OptSpec::new(&["--mode"], 1, false),
    OptSpec::new(&["--probability"], 1, true),
    OptSpec::new(&["--every"], 1, true),
    OptSpec::new(&["--packet"], 1, false),
];
const RECENT: &[OptSpec] = &[
    OptSpec::new(&["--set"], 0, true),
    OptSpec::new(&["--rcheck"], 0, true),
    OptSpec::new(&["--update"], 0, true),
    OptSpec::new(&["--remove"], 0, true),
    OptSpec::new(&["--seconds"], 1, false),
    OptSpec::new(&["--reap"], 0, false),
    OptSpec::new(&["--hitcount"], 1, false),
    OptSpec::new(&["--rttl"], 0, false),
    OptSpec::new(&["--name"], 1, false),
    OptSpec::new(&["--rsource"], 0, false),
    OptSpec::new(&["--rdest"], 0, false),
    OptSpec::new(&["--mask"], 1, false),
];
const SET: &[OptSpec] = &[OptSpec::new(&["--match-set"], 2, true)];
const NFACCT: &[OptSpec] = &[OptSpec::new(&["--nfacct-name"], 1, false)];

impl MatchKind {
    /// The module for a `-m` name.
    pub(crate) fn from_name(name: &str) -> Option<MatchKind> {
        Some(match name {
            "tcp" => MatchKind::Tcp,
            "udp" => MatchKind::Udp,
            "sctp" => MatchKind::Sctp,
            "icmp" => MatchKind::Icmp,
            "icmp6" => MatchKind::Icmp6,
            "multiport" => MatchKind::Multiport,
            "comment" => MatchKind::Comment,
            "mark" => MatchKind::Mark,
            "addrtype" => MatchKind::AddrType,
            "conntrack" => MatchKind::Conntrack,
            "state" => MatchKind::State,
            "statistic" => MatchKind::Statistic,
            "recent" => MatchKind::Recent,
            "set" => MatchKind::Set,
            "nfacct" => MatchKind::Nfacct,
            "ipvs" => MatchKind::Ipvs,
            "physdev" => MatchKind::Physdev,
            _ => return None,
        })
    }

    /// The match iptables loads implicitly for `-p PROTO` options.
    pub(crate) fn for_protocol(p: Protocol) -> Option<MatchKind> {
        Some(match p {
            Protocol::Tcp => MatchKind::Tcp,
            Protocol::Udp => MatchKind::Udp,
            Protocol::Sctp => MatchKind::Sctp,
            Protocol::Icmp => MatchKind::Icmp,
            Protocol::IcmpV6 => MatchKind::Icmp6,
            Protocol::Other(_) => return None,
        })
    }

    fn specs(self) -> &'static [OptSpec] {
        match self {
            MatchKind::Tcp => TCP,
            MatchKind::Udp | MatchKind::Sctp => PORTS,
            MatchKind::Icmp => ICMP,
            MatchKind::Icmp6 => ICMP6,
            MatchKind::Multiport => MULTIPORT,
            MatchKind::Comment => COMMENT,
            MatchKind::Mark => MARK,
            MatchKind::AddrType => ADDRTYPE,
            MatchKind::Conntrack => CONNTRACK,
            MatchKind::State => STATE,
            MatchKind::Statistic => STATISTIC,
            MatchKind::Recent => RECENT,
            MatchKind::Set => SET,
            MatchKind::Nfacct => NFACCT,
            MatchKind::Ipvs => super::ext_ipvs::IPVS,
            MatchKind::Physdev => super::ext_ipvs::PHYSDEV,
        }
    }

    /// The spec of an option this module takes.
    pub(crate) fn option(self, name: &str) -> Option<&'static OptSpec> {
        find_spec(self.specs(), name)
    }
}

/// What `finalize` needs to know about the rest of the rule.
pub(crate) struct Ctx {
    pub family: Family,
    pub protocol: Option<Negatable<Protocol>>,
}

fn get<'a>(opts: &'a [Opt], name: &str) -> Option<&'a Opt> {
    opts.iter().find(|o| o.spec.canonical() == name)
}

/// Turn a module's collected options into a [`Match`], with its checks.
pub(crate) fn finalize(kind: MatchKind, opts: &[Opt], ctx: &Ctx) -> Result<Match, ErrorKind> {
    let proto = |want: Protocol, module: &str| -> Result<(), ErrorKind> {
        match &ctx.protocol {
            Some(p) if p.value == want && !p.negated => Ok(()),
            _ => Err(ErrorKind::refused(
                &format!("-m {module}"),
                format!("the {module} match needs `-p {want}` (not negated) on the same rule"),
            )),
        }
    };
    Ok(match kind {
        MatchKind::Tcp => {
            proto(Protocol::Tcp, "tcp")?;
            let mut flags = None;
            if let Some(o) = get(opts, "--tcp-flags") {
                let mask = parse_tcp_flags(&o.values[0])?;
                let comp = parse_tcp_flags(&o.values[1])?;
                flags = Some(Negatable::new(TcpFlags { mask, comp }, o.negated));
            }
            if let Some(o) = get(opts, "--syn") {
                if flags.is_some() {
                    return Err(ErrorKind::conflict(
                        "--syn",
                        "only one of --syn and --tcp-flags",
                    ));
                }
                flags = Some(Negatable::new(
                    TcpFlags {
                        mask: 0x17,
                        comp: 0x02,
                    },
                    o.negated,
                ));
            }
            Match::Tcp(TcpMatch {
                ports: ports(opts)?,
                flags,
            })
        }
        MatchKind::Udp => {
            proto(Protocol::Udp, "udp")?;
            Match::Udp(ports(opts)?)
        }
        MatchKind::Sctp => {
            proto(Protocol::Sctp, "sctp")?;
            Match::Sctp(ports(opts)?)
        }
        MatchKind::Icmp | MatchKind::Icmp6 => {
            let (v6, name) = match kind {
                MatchKind::Icmp => (false, "--icmp-type"),
                _ => (true, "--icmpv6-type"),
            };
            if v6 != (ctx.family == Family::Ipv6) {
                return Err(ErrorKind::refused(
                    name,
                    "wrong ICMP version for this address family",
                ));
            }
            proto(
                if v6 { Protocol::IcmpV6 } else { Protocol::Icmp },
                if v6 { "icmp6" } else { "icmp" },
            )?;
            let o = get(opts, name).ok_or(ErrorKind::MissingOption {
                module: if v6 { "icmp6" } else { "icmp" },
                option: if v6 { "--icmpv6-type" } else { "--icmp-type" },
            })?;
            let m = IcmpMatch {
                negated: o.negated,
                kind: parse_icmp_type(name, &o.values[0], v6)?,
            };
            if v6 {
                Match::Icmp6(m)
            } else {
                Match::Icmp(m)
            }
        }
        MatchKind::Multiport => multiport(opts, ctx)?,
        MatchKind::Comment => {
            let o = get(opts, "--comment").ok_or(ErrorKind::MissingOption {
                module: "comment",
                option: "--comment",
            })?;
            // The kernel keeps at most 255 bytes; iptables cuts the rest.
            let mut text = o.values[0].clone();
            let mut cut = text.len().min(255);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            Match::Comment(text)
        }
        MatchKind::Mark => {
            let o = get(opts, "--mark").ok_or(ErrorKind::MissingOption {
                module: "mark",
                option: "--mark",
            })?;
            let (value, mask) = parse_mark("--mark", &o.values[0])?;
            Match::Mark(MarkMatch {
                negated: o.negated,
                value,
                mask,
            })
        }
        MatchKind::AddrType => {
            let types = |name: &str| -> Result<Option<Negatable<AddrTypes>>, ErrorKind> {
                get(opts, name)
                    .map(|o| {
                        Ok(Negatable::new(
                            parse_addr_types(name, &o.values[0])?,
                            o.negated,
                        ))
                    })
                    .transpose()
            };
            let m = AddrTypeMatch {
                src: types("--src-type")?,
                dst: types("--dst-type")?,
                limit_iface_in: get(opts, "--limit-iface-in").is_some(),
                limit_iface_out: get(opts, "--limit-iface-out").is_some(),
            };
            if m.src.is_none() && m.dst.is_none() {
                return Err(ErrorKind::MissingOption {
                    module: "addrtype",
                    option: "--src-type or --dst-type",
                });
            }
            if m.limit_iface_in && m.limit_iface_out {
                return Err(ErrorKind::conflict(
                    "--limit-iface-out",
                    "addrtype takes only one of --limit-iface-in and --limit-iface-out",
                ));
            }
            Match::AddrType(m)
        }
        MatchKind::Conntrack => {
            let o = get(opts, "--ctstate").ok_or(ErrorKind::MissingOption {
                module: "conntrack",
                option: "--ctstate",
            })?;
            Match::Conntrack(Negatable::new(
                parse_states("--ctstate", &o.values[0], true)?,
                o.negated,
            ))
        }
        MatchKind::State => {
            let o = get(opts, "--state").ok_or(ErrorKind::MissingOption {
                module: "state",
                option: "--state",
            })?;
            Match::State(Negatable::new(
                parse_states("--state", &o.values[0], false)?,
                o.negated,
            ))
        }
        MatchKind::Statistic => statistic(opts)?,
        MatchKind::Recent => recent(opts, ctx.family)?,
        MatchKind::Set => {
            let o = get(opts, "--match-set").ok_or(ErrorKind::MissingOption {
                module: "set",
                option: "--match-set",
            })?;
            let name = o.values[0].clone();
            if name.is_empty() || name.len() > 31 {
                return Err(ErrorKind::bad_value(
                    "--match-set",
                    &name,
                    "set names are 1 to 31 bytes",
                ));
            }
            let mut dirs = Vec::new();
            for d in o.values[1].split(',') {
                dirs.push(match d {
                    "src" => SetDir::Src,
                    "dst" => SetDir::Dst,
                    _ => {
                        return Err(ErrorKind::bad_value(
                            "--match-set",
                            &o.values[1],
                            "directions are a comma list of src and dst",
                        ))
                    }
                });
            }
            if dirs.len() > 6 {
                return Err(ErrorKind::bad_value(
                    "--match-set",
                    &o.values[1],
                    "at most 6 directions",
                ));
            }
            Match::Set(SetMatch {
                negated: o.negated,
                name,
                dirs,
            })
        }
        MatchKind::Nfacct => {
            let o = get(opts, "--nfacct-name").ok_or(ErrorKind::MissingOption {
                module: "nfacct",
                option: "--nfacct-name",
            })?;
            let name = o.values[0].clone();
            if name.is_empty() || name.len() > 31 {
                return Err(ErrorKind::bad_value(
                    "--nfacct-name",
                    &name,
                    "names are 1 to 31 bytes",
                ));
            }
            Match::Nfacct(name)
        }
        MatchKind::Ipvs => Match::Ipvs(super::ext_ipvs::parse_ipvs(opts, ctx.family)?),
        MatchKind::Physdev => Match::Physdev(super::ext_ipvs::parse_physdev(opts)?),
    })
}

fn ports(opts: &[Opt]) -> Result<PortMatch, ErrorKind> {
    let one = |name: &str| -> Result<Option<Negatable<PortRange>>, ErrorKind> {
        get(opts, name)
            .map(|o| {
                Ok(Negatable::new(
                    PortRange::parse(name, &o.values[0])?,
                    o.negated,
                ))
            })
            .transpose()
    };
    Ok(PortMatch {
        sport: one("--sport")?,
        dport: one("--dport")?,
    })
}

fn multiport(opts: &[Opt], ctx: &Ctx) -> Result<Match, ErrorKind> {
    let sides = [
        ("--sports", PortSide::Source),
        ("--dports", PortSide::Destination),
        ("--ports", PortSide::Either),
    ];
    let mut found = sides
        .iter()
        .filter_map(|(n, s)| get(opts, n).map(|o| (o, *s)));
    let (o, side) = found.next().ok_or(ErrorKind::MissingOption {
        module: "multiport",
        option: "--dports, --sports or --ports",
    })?;
    if let Some((other, _)) = found.next() {
        return Err(ErrorKind::conflict(
            other.spec.canonical(),
            "multiport takes only one of --sports, --dports and --ports",
        ));
    }
    match &ctx.protocol {
        Some(p) if p.value.has_ports() && !p.negated => {}
        _ => {
            return Err(ErrorKind::refused(
                "-m multiport",
                "multiport needs `-p tcp`, `-p udp` or `-p sctp` (not negated)",
            ))
        }
    }
    let name = o.spec.canonical();
    let mut ports = Vec::new();
    let mut slots = 0;
    for part in o.values[0].split(',') {
        let r = PortRange::parse(name, part)?;
        slots += if r.lo == r.hi { 1 } else { 2 };
        ports.push(r);
    }
    if slots > 15 {
        return Err(ErrorKind::bad_value(
            name,
            &o.values[0],
            "too many ports specified (15 slots; a range takes two)",
        ));
    }
    Ok(Match::Multiport(Multiport {
        negated: o.negated,
        side,
        ports,
    }))
}

fn statistic(opts: &[Opt]) -> Result<Match, ErrorKind> {
    let mode = get(opts, "--mode").ok_or(ErrorKind::MissingOption {
        module: "statistic",
        option: "--mode",
    })?;
    let prob = get(opts, "--probability");
    let every = get(opts, "--every");
    let packet = get(opts, "--packet");
    let (negated, mode) = match mode.values[0].as_str() {
        "random" => {
            if let Some(o) = every.or(packet) {
                return Err(ErrorKind::conflict(
                    o.spec.canonical(),
                    "only for --mode nth",
                ));
            }
            let o = prob.ok_or(ErrorKind::MissingOption {
                module: "statistic --mode random",
                option: "--probability",
            })?;
            let text = &o.values[0];
            let p: f64 = text
                .parse()
                .ok()
                .filter(|p: &f64| p.is_finite() && (0.0..=1.0).contains(p))
                .ok_or_else(|| {
                    ErrorKind::bad_value("--probability", text, "expected a number from 0 to 1")
                })?;
            // libxt_statistic: lround(0x80000000 * p); the kernel compares a
            // 31-bit random value against it.
            let threshold = (2147483648.0 * p).round() as u32;
            (o.negated, StatisticMode::Random { threshold })
        }
        "nth" => {
            if let Some(o) = prob {
                return Err(ErrorKind::conflict(
                    o.spec.canonical(),
                    "only for --mode random",
                ));
            }
            let e = every.ok_or(ErrorKind::MissingOption {
                module: "statistic --mode nth",
                option: "--every",
            })?;
            let p = packet.ok_or(ErrorKind::MissingOption {
                module: "statistic --every",
                option: "--packet",
            })?;
            let n = parse_u32("--every", &e.values[0], &e.values[0])?;
            let k = parse_u32("--packet", &p.values[0], &p.values[0])?;
            if n == 0 || k >= n {
                return Err(ErrorKind::bad_value(
                    "--packet",
                    &p.values[0],
                    "--every must be at least 1 and --packet below it",
                ));
            }
            (
                e.negated,
                StatisticMode::Nth {
                    every: n,
                    packet: k,
                },
            )
        }
        other => {
            return Err(ErrorKind::bad_value(
                "--mode",
                other,
                "modes are random and nth",
            ))
        }
    };
    Ok(Match::Statistic(Statistic { negated, mode }))
}

fn recent(opts: &[Opt], family: Family) -> Result<Match, ErrorKind> {
    let actions = [
        ("--set", RecentAction::Set),
        ("--rcheck", RecentAction::Check),
        ("--update", RecentAction::Update),
        ("--remove", RecentAction::Remove),
    ];
    let mut found = actions
        .iter()
        .filter_map(|(n, a)| get(opts, n).map(|o| (o, *a)));
    let (o, action) = found.next().ok_or(ErrorKind::MissingOption {
        module: "recent",
        option: "--set, --rcheck, --update or --remove",
    })?;
    if let Some((other, _)) = found.next() {
        return Err(ErrorKind::conflict(
            other.spec.canonical(),
            format!("cannot be used together with {}", o.spec.canonical()),
        ));
    }
    let num = |name: &str| -> Result<u32, ErrorKind> {
        get(opts, name).map_or(Ok(0), |o| parse_u32(name, &o.values[0], &o.values[0]))
    };
    let seconds = num("--seconds")?;
    let hitcount = num("--hitcount")?;
    let reap = get(opts, "--reap").is_some();
    if reap && get(opts, "--seconds").is_none() {
        return Err(ErrorKind::MissingOption {
            module: "recent --reap",
            option: "--seconds",
        });
    }
    let name = get(opts, "--name").map_or("DEFAULT".to_string(), |o| o.values[0].clone());
    if name.is_empty() || name.len() >= 200 {
        return Err(ErrorKind::bad_value(
            "--name",
            &name,
            "names are 1 to 199 bytes",
        ));
    }
    let mask = match get(opts, "--mask") {
        Some(m) => parse_addr("--mask", &m.values[0], family)?,
        None => family.all_ones(),
    };
    let side = match (get(opts, "--rsource"), get(opts, "--rdest")) {
        (Some(_), Some(d)) => {
            return Err(ErrorKind::conflict(
                d.spec.canonical(),
                "only one of --rsource and --rdest",
            ))
        }
        (_, Some(_)) => RecentSide::Dest,
        _ => RecentSide::Source,
    };
    Ok(Match::Recent(Recent {
        negated: o.negated,
        action,
        seconds,
        reap,
        hitcount,
        rttl: get(opts, "--rttl").is_some(),
        name,
        mask,
        side,
    }))
}
