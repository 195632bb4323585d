//! The node's ipsets: the set types kube-proxy's IPVS mode uses.
//!
//! Models: `hash:ip`, `hash:ip,port`, `hash:net`, `hash:ip,port,ip`,
//! `hash:ip,port,net` and `bitmap:port`, each with its family, `hashsize`,
//! `maxelem` (adding beyond it fails like "Hash is full") or `range`;
//! `ipset restore` lines (`create`, `add`, `del`, `flush`, `destroy`,
//! `-exist` semantics), `ipset test`, and `ipset list`/`ipset save` output
//! as ipset v7.17 prints it minus the lines that depend on the kernel's
//! memory and random seed (`Size in memory`, `initval`); members are listed
//! sorted where the kernel lists hash order. The `set` match asks
//! [`IpSets::test_packet`] (a packet of the other family never matches).
//!
//! Must never: accept an entry of the wrong family or shape for the set.
//!
//! Error contract: [`IpSetError`] naming the set and the offending entry;
//! a failed `restore` leaves the sets unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::IpAddr;

use crate::netfilter::eval::SetLookup;
use crate::netfilter::{Cidr, Family, Protocol, SetDir};
use crate::packet::Packet;

/// A set type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetType {
    /// `hash:ip`
    HashIp,
    /// `hash:ip,port`
    HashIpPort,
    /// `hash:net`
    HashNet,
    /// `hash:ip,port,ip`
    HashIpPortIp,
    /// `hash:ip,port,net`
    HashIpPortNet,
    /// `bitmap:port`
    BitmapPort,
}

impl SetType {
    const ALL: [(SetType, &'static str, u8); 6] = [
        (SetType::HashIp, "hash:ip", 6),
        (SetType::HashIpPort, "hash:ip,port", 7),
        (SetType::HashNet, "hash:net", 7),
        (SetType::HashIpPortIp, "hash:ip,port,ip", 6),
        (SetType::HashIpPortNet, "hash:ip,port,net", 8),
        (SetType::BitmapPort, "bitmap:port", 3),
    ];

    /// The name ipset uses.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|t| t.0 == self).map_or("", |t| t.1)
    }

    fn revision(self) -> u8 {
        Self::ALL.iter().find(|t| t.0 == self).map_or(0, |t| t.2)
    }

    /// The type called `name`.
    pub fn parse(name: &str) -> Option<SetType> {
        Self::ALL.iter().find(|t| t.1 == name).map(|t| t.0)
    }

    fn dimension(self) -> usize {
        match self {
            SetType::HashIp | SetType::HashNet | SetType::BitmapPort => 1,
            SetType::HashIpPort => 2,
            SetType::HashIpPortIp | SetType::HashIpPortNet => 3,
        }
    }
}

/// One member of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Member {
    /// `hash:ip`
    Ip(IpAddr),
    /// `hash:net` (a host address is a /32 or /128)
    Net(Cidr),
    /// `hash:ip,port`
    IpPort(IpAddr, Protocol, u16),
    /// `hash:ip,port,ip`
    IpPortIp(IpAddr, Protocol, u16, IpAddr),
    /// `hash:ip,port,net`
    IpPortNet(IpAddr, Protocol, u16, Cidr),
    /// `bitmap:port`
    Port(u16),
}

/// One set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: SetType,
    /// Its family (hash types).
    pub family: Family,
    /// `hashsize`.
    pub hashsize: u32,
    /// `maxelem`.
    pub maxelem: u32,
    /// `range` (bitmap:port).
    pub range: (u16, u16),
    members: BTreeSet<Member>,
}

/// Why an ipset operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ipset {set}: {reason}")]
pub struct IpSetError {
    /// The set (or command) concerned.
    pub set: String,
    /// What went wrong, with the offending text.
    pub reason: String,
}

fn err(set: &str, reason: impl Into<String>) -> IpSetError {
    IpSetError {
        set: set.to_string(),
        reason: reason.into(),
    }
}

impl IpSet {
    fn parse_ip(&self, t: &str) -> Result<IpAddr, IpSetError> {
        let a: IpAddr = t
            .parse()
            .map_err(|_| err(&self.name, format!("`{t}` is not an IP address")))?;
        if Family::of(a) != self.family {
            return Err(err(&self.name, format!("`{t}` is of the wrong family")));
        }
        Ok(a)
    }

    fn parse_net(&self, t: &str) -> Result<Cidr, IpSetError> {
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let a = self.parse_ip(a)?;
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p >= 1 && *p <= self.family.bits())
                .ok_or_else(|| err(&self.name, format!("bad prefix in `{t}`")))?,
            None => self.family.bits(),
        };
        Cidr::new(a, prefix).ok_or_else(|| err(&self.name, format!("bad network `{t}`")))
    }

    fn parse_port(&self, t: &str) -> Result<(Protocol, u16), IpSetError> {
        let (proto, port) = match t.split_once(':') {
            Some((p, n)) => {
                let proto = match p {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "sctp" => Protocol::Sctp,
                    _ => return Err(err(&self.name, format!("unknown protocol in `{t}`"))),
                };
                (proto, n)
            }
            None => (Protocol::Tcp, t),
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| err(&self.name, format!("bad port in `{t}`")))?;
        Ok((proto, port))
    }

    /// Parse an entry as `ipset add` takes it for this set.
    pub fn parse_member(&self, text: &str) -> Result<Member, IpSetError> {
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() != self.kind.dimension() {
            return Err(err(
                &self.name,
                format!("`{text}` does not fit {}", self.kind.name()),
            ));
        }
        Ok(match self.kind {
            SetType::HashIp => Member::Ip(self.parse_ip(parts[0])?),
            SetType::HashNet => Member::Net(self.parse_net(parts[0])?),
            SetType::HashIpPort => {
                let (p, n) = self.parse_port(parts[1])?;
                Member::IpPort(self.parse_ip(parts[0])?, p, n)
            }
            SetType::HashIpPortIp => {
                let (p, n) = self.parse_port(parts[1])?;
                Member::IpPortIp(self.parse_ip(parts[0])?, p, n, self.parse_ip(parts[2])?)
            }
            SetType::HashIpPortNet => {
                let (p, n) = self.parse_port(parts[1])?;
                Member::IpPortNet(self.parse_ip(parts[0])?, p, n, self.parse_net(parts[2])?)
            }
            SetType::BitmapPort => {
                let (_, n) = self.parse_port(parts[0])?;
                if n < self.range.0 || n > self.range.1 {
                    return Err(err(&self.name, format!("port {n} is outside the range")));
                }
                Member::Port(n)
            }
        })
    }

    /// Whether `m` is in the set (for `hash:net`-like members, contained).
    pub fn contains(&self, m: &Member) -> bool {
        match m {
            Member::Ip(a) if self.kind == SetType::HashNet => self
                .members
                .iter()
                .any(|x| matches!(x, Member::Net(n) if n.contains(*a))),
            Member::IpPortIp(a, p, n, b) if self.kind == SetType::HashIpPortNet => {
                self.members.iter().any(
                    |x| matches!(x, Member::IpPortNet(xa, xp, xn, net) if xa == a && xp == p && xn == n && net.contains(*b)),
                )
            }
            _ => self.members.contains(m),
        }
    }

    /// The members, sorted.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    fn header(&self) -> String {
        match self.kind {
            SetType::BitmapPort => format!("range {}-{}", self.range.0, self.range.1),
            _ => format!(
                "family {} hashsize {} maxelem {} bucketsize 12",
                match self.family {
                    Family::Ipv4 => "inet",
                    Family::Ipv6 => "inet6",
                },
                self.hashsize,
                self.maxelem
            ),
        }
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        _ => "tcp",
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let net = |c: &Cidr| {
            if c.prefix() == c.family().bits() {
                c.addr().to_string()
            } else {
                c.to_string()
            }
        };
        match self {
            Member::Ip(a) => write!(f, "{a}"),
            Member::Net(n) => write!(f, "{}", net(n)),
            Member::IpPort(a, p, n) => write!(f, "{a},{}:{n}", proto_name(*p)),
            Member::IpPortIp(a, p, n, b) => write!(f, "{a},{}:{n},{b}", proto_name(*p)),
            Member::IpPortNet(a, p, n, c) => write!(f, "{a},{}:{n},{}", proto_name(*p), net(c)),
            Member::Port(n) => write!(f, "{n}"),
        }
    }
}

/// All ipsets of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpSets {
    sets: BTreeMap<String, IpSet>,
}

impl IpSets {
    /// A set by name.
    pub fn get(&self, name: &str) -> Option<&IpSet> {
        self.sets.get(name)
    }

    /// Every set, by name.
    pub fn iter(&self) -> impl Iterator<Item = &IpSet> {
        self.sets.values()
    }

    /// `ipset create NAME TYPE OPTIONS…` (options as words, e.g.
    /// `["family", "inet", "hashsize", "1024"]`). With `exist`, creating an
    /// identical set again is not an error.
    pub fn create(
        &mut self,
        name: &str,
        kind: &str,
        options: &[&str],
        exist: bool,
    ) -> Result<(), IpSetError> {
        let kind =
            SetType::parse(kind).ok_or_else(|| err(name, format!("unknown set type `{kind}`")))?;
        let mut set = IpSet {
            name: name.to_string(),
            kind,
            family: Family::Ipv4,
            hashsize: 1024,
            maxelem: 65536,
            range: (0, 65535),
            members: BTreeSet::new(),
        };
        let mut it = options.iter();
        while let Some(opt) = it.next() {
            let mut val = || {
                it.next()
                    .copied()
                    .ok_or_else(|| err(name, format!("option `{opt}` needs a value")))
            };
            match *opt {
                "family" => {
                    set.family = match val()? {
                        "inet" => Family::Ipv4,
                        "inet6" => Family::Ipv6,
                        v => return Err(err(name, format!("unknown family `{v}`"))),
                    }
                }
                "hashsize" | "maxelem" | "bucketsize" | "timeout" => {
                    let v = val()?;
                    let n: u32 = v
                        .parse()
                        .map_err(|_| err(name, format!("`{v}` is not a number")))?;
                    match *opt {
                        "hashsize" => set.hashsize = n,
                        "maxelem" => set.maxelem = n,
                        _ => {}
                    }
                }
                "initval" => {
                    val()?;
                }
                "range" => {
                    let v = val()?;
                    let (a, b) = v.split_once('-').unwrap_or((v, v));
                    let p = |s: &str| {
                        s.parse::<u16>()
                            .map_err(|_| err(name, format!("bad range `{v}`")))
                    };
                    set.range = (p(a)?, p(b)?);
                }
                "comment" | "counters" | "skbinfo" => {}
                o => return Err(err(name, format!("unknown option `{o}`"))),
            }
        }
        if let Some(old) = self.sets.get(name) {
            if exist && old.kind == set.kind && old.family == set.family {
                return Ok(());
            }
            return Err(err(name, "a set with the same name already exists"));
        }
        self.sets.insert(name.to_string(), set);
        Ok(())
    }

    fn set_mut(&mut self, name: &str) -> Result<&mut IpSet, IpSetError> {
        self.sets
            .get_mut(name)
            .ok_or_else(|| err(name, "the set does not exist"))
    }

    /// `ipset add`.
    pub fn add(&mut self, name: &str, entry: &str, exist: bool) -> Result<(), IpSetError> {
        let set = self.set_mut(name)?;
        let m = set.parse_member(entry)?;
        if set.members.contains(&m) {
            return if exist {
                Ok(())
            } else {
                Err(err(name, format!("`{entry}` is already added")))
            };
        }
        if set.kind != SetType::BitmapPort && set.members.len() >= set.maxelem as usize {
            return Err(err(name, "Hash is full, cannot add more elements"));
        }
        set.members.insert(m);
        Ok(())
    }

    /// `ipset del`.
    pub fn del(&mut self, name: &str, entry: &str, exist: bool) -> Result<(), IpSetError> {
        let set = self.set_mut(name)?;
        let m = set.parse_member(entry)?;
        if !set.members.remove(&m) && !exist {
            return Err(err(name, format!("`{entry}` is not in the set")));
        }
        Ok(())
    }

    /// `ipset test`.
    pub fn test(&self, name: &str, entry: &str) -> Result<bool, IpSetError> {
        let set = self
            .sets
            .get(name)
            .ok_or_else(|| err(name, "the set does not exist"))?;
        let m = set.parse_member(entry)?;
        let host = |c: &Cidr| c.prefix() == c.family().bits();
        let m = match m {
            Member::Net(c) if host(&c) => Member::Ip(c.addr()),
            Member::IpPortNet(a, p, n, c) if host(&c) => Member::IpPortIp(a, p, n, c.addr()),
            m => m,
        };
        Ok(set.contains(&m))
    }

    /// `ipset flush [NAME]`.
    pub fn flush(&mut self, name: Option<&str>) -> Result<(), IpSetError> {
        match name {
            Some(n) => self.set_mut(n)?.members.clear(),
            None => self.sets.values_mut().for_each(|s| s.members.clear()),
        }
        Ok(())
    }

    /// `ipset destroy [NAME]`.
    pub fn destroy(&mut self, name: Option<&str>) -> Result<(), IpSetError> {
        match name {
            Some(n) => {
                self.sets
                    .remove(n)
                    .ok_or_else(|| err(n, "the set does not exist"))?;
            }
            None => self.sets.clear(),
        }
        Ok(())
    }

    /// `ipset restore [-exist]`: apply every line, all or nothing.
    pub fn restore(&mut self, text: &str, exist: bool) -> Result<(), IpSetError> {
        let mut next = self.clone();
        for (n, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = |e: IpSetError| IpSetError {
                set: e.set,
                reason: format!("line {}: {}", n + 1, e.reason),
            };
            match words.as_slice() {
                [] | ["COMMIT"] => {}
                [w, ..] if w.starts_with('#') => {}
                ["create", name, kind, opts @ ..] => {
                    next.create(name, kind, opts, exist).map_err(at)?
                }
                ["add", name, entry, ..] => next.add(name, entry, exist).map_err(at)?,
                ["del", name, entry, ..] => next.del(name, entry, exist).map_err(at)?,
                ["flush"] => next.flush(None).map_err(at)?,
                ["flush", name] => next.flush(Some(name)).map_err(at)?,
                ["destroy"] => next.destroy(None).map_err(at)?,
                ["destroy", name] => next.destroy(Some(name)).map_err(at)?,
                _ => return Err(at(err("restore", format!("cannot parse `{line}`")))),
            }
        }
        *self = next;
        Ok(())
    }

    /// `ipset list [NAME]` (`references` gives the `References:` count of
    /// each set).
    pub fn list(&self, name: Option<&str>, references: &dyn Fn(&str) -> usize) -> String {
        let mut out = String::new();
        for s in self
            .sets
            .values()
            .filter(|s| name.is_none_or(|n| n == s.name))
        {
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "Name: {}", s.name);
            let _ = writeln!(out, "Type: {}", s.kind.name());
            let _ = writeln!(out, "Revision: {}", s.kind.revision());
            let _ = writeln!(out, "Header: {}", s.header());
            let _ = writeln!(out, "References: {}", references(&s.name));
            let _ = writeln!(out, "Number of entries: {}", s.members.len());
            out.push_str("Members:\n");
            for m in &s.members {
                let _ = writeln!(out, "{m}");
            }
        }
        out
    }

    /// `ipset save`.
    pub fn save(&self) -> String {
        let mut out = String::new();
        for s in self.sets.values() {
            let _ = writeln!(out, "create {} {} {}", s.name, s.kind.name(), s.header());
            for m in &s.members {
                let _ = writeln!(out, "add {} {m}", s.name);
            }
        }
        out
    }
}

impl SetLookup for IpSets {
    fn test_packet(&self, name: &str, pkt: &Packet, dirs: &[SetDir]) -> Result<bool, String> {
        let set = self.sets.get(name).ok_or_else(|| {
            format!("ipset `{name}` does not exist; hint: create it before loading the rule")
        })?;
        if dirs.len() < set.kind.dimension() {
            return Err(format!(
                "set `{name}` ({}) needs {} directions, the rule gives {}",
                set.kind.name(),
                set.kind.dimension(),
                dirs.len()
            ));
        }
        if pkt.family() != set.family && set.kind != SetType::BitmapPort {
            return Ok(false);
        }
        let ip = |d: SetDir| match d {
            SetDir::Src => pkt.src(),
            SetDir::Dst => pkt.dst(),
        };
        let port = |d: SetDir| match d {
            SetDir::Src => pkt.src_port(),
            SetDir::Dst => pkt.dst_port(),
        };
        let proto = pkt.protocol();
        let m = match set.kind {
            SetType::HashIp => Member::Ip(ip(dirs[0])),
            SetType::HashNet => Member::Ip(ip(dirs[0])),
            SetType::BitmapPort => match port(dirs[0]) {
                Some(p) => Member::Port(p),
                None => return Ok(false),
            },
            SetType::HashIpPort => match port(dirs[1]) {
                Some(p) => Member::IpPort(ip(dirs[0]), proto, p),
                None => return Ok(false),
            },
            SetType::HashIpPortIp => match port(dirs[1]) {
                Some(p) => Member::IpPortIp(ip(dirs[0]), proto, p, ip(dirs[2])),
                None => return Ok(false),
            },
            SetType::HashIpPortNet => match port(dirs[1]) {
                Some(p) => Member::IpPortIp(ip(dirs[0]), proto, p, ip(dirs[2])),
                None => return Ok(false),
            },
        };
        let m = match (set.kind, m) {
            (SetType::HashNet, Member::Ip(a)) => {
                return Ok(set
                    .members
                    .iter()
                    .any(|x| matches!(x, Member::Net(n) if n.contains(a))))
            }
            (_, m) => m,
        };
        Ok(set.contains(&m))
    }
}
