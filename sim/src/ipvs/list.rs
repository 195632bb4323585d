//! `ipvsadm` output, byte for byte as ipvsadm 1.31 prints it with `-n`:
//! `-Ln` (plain, `--stats`, `--rate`, `--thresholds`, `--persistent-conn`,
//! with `--exact` and `--nosort`), `-Lnc`, `-Ln --timeout` and `-Sn`.
//!
//! Models: the printf formats of `print_title`, `print_service_entry`,
//! `print_largenum`, `print_sched_flags`, `list_conn`/`print_conn` and
//! `list_timeout`; the header `IP Virtual Server version 1.2.1
//! (size=N)`; ipvsadm's default sort of services and real servers
//! (`ipvs_cmp_services` / `ipvs_cmp_dests`, with their C `int` subtraction
//! of unsigned values — addresses more than 2^31 apart compare "backwards" —
//! run through glibc's merge sort, which is what `qsort` uses); the
//! connection expiry as `mm:ss` of whole seconds left. Entries of
//! `-Lnc` are listed in creation order (the kernel's order comes from a
//! randomly seeded hash table). Counters and rates come from the last
//! 2-second estimator tick, as the kernel reports them.
//!
//! Must never: resolve names (ipvsadm without `-n` asks DNS and
//! `/etc/services`; only numeric output exists here).
//!
//! Error contract: listing one unknown service is [`IpvsError::NoSuchService`].

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::dest::{Dest, Service};
use super::error::IpvsError;
use super::stats::StatsView;
use super::types::{proto_name, Scheduler, ServiceKey};
use super::Ipvs;
use crate::netfilter::{Family, Protocol};
use crate::time::Instant;

/// Which table `ipvsadm -L` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ListFormat {
    /// `-Ln`: scheduler, flags, forwarding method, weight, connections.
    #[default]
    Plain,
    /// `-Ln --stats`: connection, packet and byte counters.
    Stats,
    /// `-Ln --rate`: the estimator's rates.
    Rate,
    /// `-Ln --thresholds`.
    Thresholds,
    /// `-Ln --persistent-conn`.
    PersistentConn,
}

/// `addrport_to_anyname` with `FMT_NUMERIC`.
fn addrport(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(a) => format!("{a}:{}", addr.port()),
        IpAddr::V6(a) => format!("[{a}]:{}", addr.port()),
    }
}

/// `print_largenum`.
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        write!(out, "{i:>width$}")
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// `print_sched_flags` (without the surrounding parentheses).
fn sched_flags(svc: &Service) -> String {
    let f = svc.spec.sched_flags;
    let mut names = Vec::new();
    match svc.spec.scheduler {
        Scheduler::Sh | Scheduler::Mh => {
            let n = svc.spec.scheduler.name();
            if f.flag1 {
                names.push(format!("{n}-fallback"));
            }
            if f.flag2 {
                names.push(format!("{n}-port"));
            }
        }
        _ => {
            for (on, name) in [
                (f.flag1, "flag-1"),
                (f.flag2, "flag-2"),
                (f.flag3, "flag-3"),
            ] {
                if on {
                    names.push(name.to_string());
                }
            }
        }
    }
    names.join(",")
}

/// The 32-bit words of an address as `ntohl` gives them.
fn words(ip: IpAddr) -> Vec<u32> {
    match ip {
        IpAddr::V4(a) => vec![u32::from(a)],
        IpAddr::V6(a) => a
            .segments()
            .chunks(2)
            .map(|w| (u32::from(w[0]) << 16) | u32::from(w[1]))
            .collect(),
    }
}

/// C `int r = a - b` for unsigned 32-bit `a`, `b`.
fn csub(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn cmp_addrs(a: IpAddr, b: IpAddr) -> i32 {
    let mut r = 0;
    for (x, y) in words(a).into_iter().zip(words(b)) {
        if r != 0 {
            break;
        }
        r = csub(x, y);
    }
    r
}

fn af(f: Family) -> i32 {
    match f {
        Family::Ipv4 => 2,
        Family::Ipv6 => 10,
    }
}

/// `ipvs_cmp_services`.
fn cmp_services(a: &ServiceKey, b: &ServiceKey) -> i32 {
    let fields = |k: &ServiceKey| match *k {
        ServiceKey::Addr { protocol, addr } => (0, protocol.number(), addr),
        ServiceKey::Fwmark { family, mark } => {
            let unspecified = match family {
                Family::Ipv4 => IpAddr::from([0u8; 4]),
                Family::Ipv6 => IpAddr::from([0u8; 16]),
            };
            (
                mark,
                Protocol::Tcp.number(),
                SocketAddr::new(unspecified, 0),
            )
        }
    };
    let ((ma, pa, sa), (mb, pb, sb)) = (fields(a), fields(b));
    let mut r = csub(ma, mb);
    if r == 0 {
        r = af(a.family()) - af(b.family());
    }
    if r == 0 {
        r = i32::from(pa) - i32::from(pb);
    }
    if r == 0 {
        r = cmp_addrs(sa.ip(), sb.ip());
    }
    if r == 0 {
        r = i32::from(sa.port()) - i32::from(sb.port());
    }
    r
}

/// `ipvs_cmp_dests`.
fn cmp_dests(a: &Dest, b: &Dest) -> i32 {
    match cmp_addrs(a.addr.ip(), b.addr.ip()) {
        0 => i32::from(a.addr.port()) - i32::from(b.addr.port()),
        r => r,
    }
}

/// glibc `msort_with_tmp`: top-down merge sort, left element first on `<= 0`.
fn glibc_msort<T: Copy>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    glibc_msort(&mut v[..n1], cmp);
    glibc_msort(&mut v[n1..], cmp);
    let (mut i, mut j) = (0, n1);
    let mut merged = Vec::with_capacity(n);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            merged.push(v[i]);
            i += 1;
        } else {
            merged.push(v[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    merged.extend_from_slice(&v[j..]);
    v.copy_from_slice(&merged);
}

/// `svc_name` of `print_service_entry` (not rule format).
fn svc_name(key: &ServiceKey) -> String {
    match *key {
        ServiceKey::Fwmark { family, mark } => match family {
            Family::Ipv4 => format!("FWM  {mark}"),
            Family::Ipv6 => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Addr { protocol, addr } => {
            let mut s = format!("{:<4} {}", proto_name(Some(protocol)), addrport(addr));
            if addr.is_ipv4() {
                s.truncate(33);
            }
            s
        }
    }
}

/// ` persistent N [mask M]` (listing) or ` -p N [-M M]` (rules).
fn persistence_suffix(svc: &Service, rule: bool) -> String {
    let Some(p) = svc.spec.persistence else {
        return String::new();
    };
    let (word, mask_word) = if rule {
        ("-p", "-M")
    } else {
        ("persistent", "mask")
    };
    let mut s = format!(" {word} {}", p.timeout_secs);
    match svc.spec.key.family() {
        Family::Ipv4 if p.netmask_prefix != 32 => {
            let m = persistence_mask_v4(p.netmask_prefix);
            let _ = write!(s, " {} {}", mask_word, std::net::Ipv4Addr::from(m));
        }
        Family::Ipv6 if p.netmask_prefix != 128 => {
            let _ = write!(s, " {} {}", mask_word, p.netmask_prefix);
        }
        _ => {}
    }
    s
}

fn persistence_mask_v4(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl Ipvs {
    /// `ipvsadm -Ln [--stats|--rate|…]` at `now`.
    pub fn list(&self, now: Instant, format: ListFormat) -> String {
        self.list_with(now, format, false, false)
    }

    /// As [`Ipvs::list`], with `--exact` and `--nosort`. Unsorted, services
    /// come in key order (the kernel's would be its hash-table order) and
    /// real servers in the kernel's list order (newest first).
    pub fn list_with(&self, now: Instant, format: ListFormat, exact: bool, nosort: bool) -> String {
        let mut out = format!(
            "IP Virtual Server version 1.2.1 (size={})\n",
            1u64 << self.config.conn_tab_bits.min(40)
        );
        out.push_str(title(format));
        let mut keys: Vec<ServiceKey> = self.services.keys().copied().collect();
        if !nosort {
            glibc_msort(&mut keys, &cmp_services);
        }
        for key in keys {
            self.service_entry(&mut out, now, &key, format, exact, nosort);
        }
        out
    }

    /// `ipvsadm -Ln -t|-u|-f SERVICE [--stats|…]`.
    pub fn list_service(
        &self,
        now: Instant,
        key: &ServiceKey,
        format: ListFormat,
    ) -> Result<String, IpvsError> {
        if !self.services.contains_key(key) {
            return Err(IpvsError::NoSuchService(*key));
        }
        let mut out = title(format).to_string();
        self.service_entry(&mut out, now, key, format, false, false);
        Ok(out)
    }

    /// `ipvsadm -Ln --timeout`.
    pub fn list_timeout(&self) -> String {
        let t = self.get_timeout();
        format!(
            "Timeout (tcp tcpfin udp): {} {} {}\n",
            t.tcp, t.tcp_fin, t.udp
        )
    }

    /// `ipvsadm -Lnc` (with `--persistent-conn`: its header) at `now`.
    /// Listing does not run timers: call [`Ipvs::advance`] first, or
    /// entries already due show as `00:00`.
    pub fn list_conns(&self, now: Instant, persistent_conn: bool) -> String {
        let mut out = String::from("IPVS connection entries\n");
        if persistent_conn {
            let _ = writeln!(
                out,
                "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
                "state", "source", "virtual", "destination", "pe name"
            );
        } else {
            let _ = writeln!(
                out,
                "pro expire {:<11} {:<18} {:<18} destination",
                "state", "source", "virtual"
            );
        }
        for c in self.conns.iter() {
            let left = c.expires.saturating_since(now).as_secs();
            let expire = format!("{:02}:{:02}", left / 60, left % 60);
            let _ = writeln!(
                out,
                "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                proto_name(c.protocol),
                expire,
                c.state.name(),
                addrport(c.client),
                addrport(c.vaddr),
                addrport(c.daddr)
            );
        }
        out
    }

    /// `ipvsadm -Sn`: the table as ipvsadm rules.
    pub fn list_rules(&self, nosort: bool) -> String {
        let mut out = String::new();
        let mut keys: Vec<ServiceKey> = self.services.keys().copied().collect();
        if !nosort {
            glibc_msort(&mut keys, &cmp_services);
        }
        for key in keys {
            let svc = &self.services[&key];
            let name = match key {
                ServiceKey::Fwmark {
                    family: Family::Ipv4,
                    mark,
                } => format!("-f {mark}"),
                ServiceKey::Fwmark {
                    family: Family::Ipv6,
                    mark,
                } => format!("-f {mark} -6"),
                ServiceKey::Addr { protocol, addr } => {
                    let opt = match protocol {
                        Protocol::Tcp => "-t",
                        Protocol::Udp => "-u",
                        Protocol::Sctp => "--sctp-service",
                        _ => "--xxx-service",
                    };
                    format!("{opt} {}", addrport(addr))
                }
            };
            let _ = write!(out, "-A {name} -s {}", svc.spec.scheduler.name());
            out.push_str(&persistence_suffix(svc, true));
            if svc.spec.one_packet {
                out.push_str(" -o");
            }
            if svc.spec.sched_flags.any() {
                let _ = write!(out, " -b {}", sched_flags(svc));
            }
            out.push('\n');
            for d in self.sorted_dests(svc, nosort) {
                let switch = match d.fwd {
                    super::types::FwdMethod::Masq => "-m",
                    super::types::FwdMethod::Tunnel => "-i",
                    super::types::FwdMethod::Route => "-g",
                };
                let _ = writeln!(
                    out,
                    "-a {name} -r {} {switch} -w {}",
                    addrport(d.addr),
                    d.weight
                );
            }
        }
        out
    }

    fn sorted_dests(&self, svc: &Service, nosort: bool) -> Vec<&Dest> {
        let mut dests: Vec<&Dest> = svc.dests.iter().filter_map(|d| self.dests.get(d)).collect();
        if !nosort {
            glibc_msort(&mut dests, &|a: &&Dest, b: &&Dest| cmp_dests(a, b));
        }
        dests
    }

    fn service_entry(
        &self,
        out: &mut String,
        now: Instant,
        key: &ServiceKey,
        format: ListFormat,
        exact: bool,
        nosort: bool,
    ) {
        let Some(svc) = self.services.get(key) else {
            return;
        };
        let name = svc_name(key);
        let stats_line = |out: &mut String, v: StatsView, rate: bool| {
            let vals = if rate {
                [
                    v.rates.cps,
                    v.rates.inpps,
                    v.rates.outpps,
                    v.rates.inbps,
                    v.rates.outbps,
                ]
            } else {
                let c = v.counters;
                [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes]
            };
            for x in vals {
                largenum(out, x, exact);
            }
        };
        match format {
            ListFormat::Stats | ListFormat::Rate => {
                let _ = write!(out, "{name:<33}");
                stats_line(out, svc.stats(now), format == ListFormat::Rate);
            }
            _ => {
                let _ = write!(out, "{name} {}", svc.spec.scheduler.name());
                if svc.spec.sched_flags.any() {
                    let _ = write!(out, " ({})", sched_flags(svc));
                }
                out.push_str(&persistence_suffix(svc, false));
                if svc.spec.one_packet {
                    out.push_str(" ops");
                }
            }
        }
        out.push('\n');
        for d in self.sorted_dests(svc, nosort) {
            let mut dname = addrport(d.addr);
            if d.addr.is_ipv4() {
                dname.truncate(28);
            }
            let _ = match format {
                ListFormat::Stats => {
                    let _ = write!(out, "  -> {dname:<28}");
                    stats_line(out, d.stats(now), false);
                    writeln!(out)
                }
                ListFormat::Rate => {
                    let r = d.stats(now).rates;
                    let _ = write!(
                        out,
                        "  -> {dname:<28} {:>8} {:>8} {:>8}",
                        r.cps, r.inpps, r.outpps
                    );
                    largenum(out, r.inbps, exact);
                    largenum(out, r.outbps, exact);
                    writeln!(out)
                }
                ListFormat::Thresholds => writeln!(
                    out,
                    "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                    d.u_threshold, d.l_threshold, d.active_conns, d.inact_conns
                ),
                ListFormat::PersistentConn => writeln!(
                    out,
                    "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                    d.weight, d.persist_conns, d.active_conns, d.inact_conns
                ),
                ListFormat::Plain => writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    d.fwd.name(),
                    d.weight,
                    d.active_conns,
                    d.inact_conns
                ),
            };
        }
    }
}

/// `print_title`.
fn title(format: ListFormat) -> &'static str {
    match format {
        ListFormat::Plain => concat!(
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        ),
        ListFormat::Stats => concat!(
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
            "  -> RemoteAddress:Port\n"
        ),
        ListFormat::Rate => concat!(
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n",
            "  -> RemoteAddress:Port\n"
        ),
        ListFormat::Thresholds => concat!(
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n",
            "  -> RemoteAddress:Port\n"
        ),
        ListFormat::PersistentConn => concat!(
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n",
            "  -> RemoteAddress:Port\n"
        ),
    }
}
