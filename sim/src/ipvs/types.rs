//! The values a caller hands IPVS: service keys and specs, real-server
//! specs, scheduler names, forwarding methods and the `net.ipv4.vs.*`
//! sysctls, as `ip_vs_service_user_kern` / `ip_vs_dest_user_kern` and
//! `ip_vs_ctl.c`'s sysctl table define them.
//!
//! Must never: hold host state (names are never resolved) or anything
//! time-dependent.
//!
//! Error contract: name parsers return [`IpvsError::UnknownScheduler`] /
//! [`IpvsError::UnknownForwarding`]; `validate` methods return the errno-like
//! [`IpvsError`] the kernel would.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use super::error::IpvsError;
use crate::netfilter::{Family, Protocol};

/// What identifies a virtual service: `<protocol, address, port>` or a
/// firewall mark (`ipvsadm -t/-u/--sctp-service` or `-f`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKey {
    /// A TCP, UDP or SCTP service on `addr` (port 0: every port, persistent
    /// services only).
    Addr {
        protocol: Protocol,
        addr: SocketAddr,
    },
    /// A service matching packets with `skb->mark == mark` (mark > 0).
    Fwmark { family: Family, mark: u32 },
}

impl ServiceKey {
    /// `-t addr`.
    pub fn tcp(addr: SocketAddr) -> Self {
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr,
        }
    }

    /// `-u addr`.
    pub fn udp(addr: SocketAddr) -> Self {
        ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr,
        }
    }

    /// `--sctp-service addr`.
    pub fn sctp(addr: SocketAddr) -> Self {
        ServiceKey::Addr {
            protocol: Protocol::Sctp,
            addr,
        }
    }

    /// The address family of the service.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr.ip()),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }

    /// The service port (0 for fwmark services).
    pub fn port(&self) -> u16 {
        match self {
            ServiceKey::Addr { addr, .. } => addr.port(),
            ServiceKey::Fwmark { .. } => 0,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), IpvsError> {
        match self {
            ServiceKey::Addr { protocol, .. } => match protocol {
                Protocol::Tcp | Protocol::Udp | Protocol::Sctp => Ok(()),
                other => Err(IpvsError::UnsupportedProtocol(other.number())),
            },
            ServiceKey::Fwmark { mark: 0, .. } => Err(IpvsError::ZeroFwmark),
            ServiceKey::Fwmark { .. } => Ok(()),
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `TCP 10.0.0.1:80`, `UDP [fd00::1]:53`, `FWM 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { protocol, addr } => {
                write!(f, "{} {}", proto_name(Some(*protocol)), addr)
            }
            ServiceKey::Fwmark { family, mark } => match family {
                Family::Ipv4 => write!(f, "FWM {mark}"),
                Family::Ipv6 => write!(f, "FWM {mark} IPv6"),
            },
        }
    }
}

/// `ip_vs_proto_name`: `TCP`, `UDP`, `SCTP`, `IP` (fwmark templates).
pub(crate) fn proto_name(p: Option<Protocol>) -> &'static str {
    match p {
        Some(Protocol::Tcp) => "TCP",
        Some(Protocol::Udp) => "UDP",
        Some(Protocol::Sctp) => "SCTP",
        Some(Protocol::Icmp) => "ICMP",
        Some(Protocol::IcmpV6) => "ICMPv6",
        Some(Protocol::Other(_)) => "IP_?",
        None => "IP",
    }
}

/// The scheduling modules (`ip_vs_<name>.ko`) this model implements, plus
/// `none` (a service without scheduler: every new connection fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheduler {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sh,
    Dh,
    Sed,
    Nq,
    Mh,
    None,
}

impl Scheduler {
    /// The module name ipvsadm prints.
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sh => "sh",
            Scheduler::Dh => "dh",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
            Scheduler::Mh => "mh",
            Scheduler::None => "none",
        }
    }
}

impl FromStr for Scheduler {
    type Err = IpvsError;
    fn from_str(s: &str) -> Result<Self, IpvsError> {
        Ok(match s {
            "rr" => Scheduler::Rr,
            "wrr" => Scheduler::Wrr,
            "lc" => Scheduler::Lc,
            "wlc" => Scheduler::Wlc,
            "sh" => Scheduler::Sh,
            "dh" => Scheduler::Dh,
            "sed" => Scheduler::Sed,
            "nq" => Scheduler::Nq,
            "mh" => Scheduler::Mh,
            "none" => Scheduler::None,
            other => return Err(IpvsError::UnknownScheduler(other.to_string())),
        })
    }
}

/// Packet forwarding method of a real server (`IP_VS_CONN_F_FWD_MASK`).
/// kube-proxy uses `Masq`; the others are accepted and only change the
/// connection state table (they see no reply packets: `NOOUTPUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FwdMethod {
    /// NAT (`-m`).
    Masq,
    /// IP-in-IP tunnel (`-i`).
    Tunnel,
    /// Direct routing, "gatewaying" (`-g`).
    Route,
}

impl FwdMethod {
    /// The Forward column of `ipvsadm -L`.
    pub fn name(self) -> &'static str {
        match self {
            FwdMethod::Masq => "Masq",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::Route => "Route",
        }
    }
}

impl FromStr for FwdMethod {
    type Err = IpvsError;
    fn from_str(s: &str) -> Result<Self, IpvsError> {
        match s.to_ascii_lowercase().as_str() {
            "masq" | "masquerading" | "nat" | "m" => Ok(FwdMethod::Masq),
            "route" | "gatewaying" | "dr" | "droute" | "g" => Ok(FwdMethod::Route),
            "tunnel" | "ipip" | "tun" | "i" => Ok(FwdMethod::Tunnel),
            _ => Err(IpvsError::UnknownForwarding(s.to_string())),
        }
    }
}

/// Scheduler flags `IP_VS_SVC_F_SCHED1..3` (`ipvsadm -b`). For `sh` and
/// `mh`, flag 1 is `*-fallback` and flag 2 is `*-port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SchedFlags {
    /// `IP_VS_SVC_F_SCHED1` (0x08): `sh-fallback` / `mh-fallback`.
    pub flag1: bool,
    /// `IP_VS_SVC_F_SCHED2` (0x10): `sh-port` / `mh-port`.
    pub flag2: bool,
    /// `IP_VS_SVC_F_SCHED3` (0x20).
    pub flag3: bool,
}

impl SchedFlags {
    /// `*-fallback`: try other buckets when the hashed server is unavailable.
    pub fn fallback(self) -> bool {
        self.flag1
    }

    /// `*-port`: hash the source port too.
    pub fn port(self) -> bool {
        self.flag2
    }

    pub(crate) fn any(self) -> bool {
        self.flag1 || self.flag2 || self.flag3
    }
}

/// Persistence (`IP_VS_SVC_F_PERSISTENT`, `ipvsadm -p TIMEOUT -M MASK`):
/// connections from one client network go to one real server while a
/// connection template lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Persistence {
    /// Template timeout in seconds (`svc->timeout / HZ`).
    pub timeout_secs: u32,
    /// Client netmask as a prefix length (32/128: per client address).
    pub netmask_prefix: u8,
}

impl Persistence {
    /// Per-client-address persistence for `timeout_secs` (the `-M` default).
    pub fn new(timeout_secs: u32, family: Family) -> Self {
        Persistence {
            timeout_secs,
            netmask_prefix: family.bits(),
        }
    }

    /// The client network: `addr` with host bits cleared.
    pub(crate) fn mask(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let p = u32::from(self.netmask_prefix.min(32));
                let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
            }
            IpAddr::V6(a) => {
                let p = u32::from(self.netmask_prefix.min(128));
                let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
            }
        }
    }
}

/// A virtual service as `ipvsadm -A/-E` (or netlink) describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    /// `Some` for a persistent service.
    pub persistence: Option<Persistence>,
    /// `IP_VS_SVC_F_ONEPACKET` (`-o`): schedule every UDP datagram anew.
    pub one_packet: bool,
    pub sched_flags: SchedFlags,
}

impl ServiceSpec {
    /// A non-persistent service with no flags.
    pub fn new(key: ServiceKey, scheduler: Scheduler) -> Self {
        ServiceSpec {
            key,
            scheduler,
            persistence: None,
            one_packet: false,
            sched_flags: SchedFlags::default(),
        }
    }

    /// The same service, persistent for `timeout_secs` per client address.
    pub fn persistent(mut self, timeout_secs: u32) -> Self {
        self.persistence = Some(Persistence::new(timeout_secs, self.key.family()));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), IpvsError> {
        self.key.validate()?;
        if let Some(p) = self.persistence {
            if p.timeout_secs == 0 {
                return Err(IpvsError::InvalidPersistence {
                    reason: "timeout 0",
                });
            }
            if p.netmask_prefix == 0 || p.netmask_prefix > self.key.family().bits() {
                return Err(IpvsError::InvalidPersistence {
                    reason: "netmask prefix out of range",
                });
            }
        }
        Ok(())
    }
}

/// A real server as `ipvsadm -a/-e` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DestSpec {
    /// Address and port (port 0: the port the client connected to).
    pub addr: SocketAddr,
    pub fwd: FwdMethod,
    /// 0 quiesces the server: existing connections stay, no new ones.
    pub weight: u32,
    /// `-x`: stop scheduling at this many connections (0: no limit).
    pub u_threshold: u32,
    /// `-y`: resume below this many connections.
    pub l_threshold: u32,
}

impl DestSpec {
    /// A NAT real server with this weight and no thresholds.
    pub fn masq(addr: SocketAddr, weight: u32) -> Self {
        DestSpec {
            addr,
            fwd: FwdMethod::Masq,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }

    pub(crate) fn validate(&self, service: ServiceKey) -> Result<(), IpvsError> {
        if self.weight > i32::MAX as u32 {
            return Err(IpvsError::WeightOutOfRange(self.weight));
        }
        if self.l_threshold > self.u_threshold {
            return Err(IpvsError::ThresholdOrder {
                lower: self.l_threshold,
                upper: self.u_threshold,
            });
        }
        if Family::of(self.addr.ip()) != service.family() {
            return Err(IpvsError::FamilyMismatch {
                service,
                dest: self.addr,
            });
        }
        Ok(())
    }
}

/// The `net.ipv4.vs.*` sysctls this model honours, with the kernel's
/// defaults (kube-proxy sets `conntrack=1`, `expire_nodest_conn=1`,
/// `expire_quiescent_template=1` and, on old kernels, `conn_reuse_mode=0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sysctls {
    /// `conntrack` (0): keep netfilter conntrack entries for IPVS flows.
    /// Recorded for the packet path; IPVS itself only consults the
    /// packet's conntrack state ([`super::Packet::ct_confirmed`]).
    pub conntrack: bool,
    /// `conn_reuse_mode` (1): reschedule a SYN that reuses a TIME_WAIT/CLOSE
    /// connection (bit 1; bit 2 also FIN_WAIT of NOOUTPUT connections).
    pub conn_reuse_mode: u8,
    /// `expire_nodest_conn` (0): expire connections whose real server is
    /// gone instead of dropping their packets.
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template` (0): a persistence template whose server
    /// has weight 0 no longer binds new connections.
    pub expire_quiescent_template: bool,
    /// `sloppy_tcp` (0): create connections on any TCP packet, not only SYN.
    pub sloppy_tcp: bool,
    /// `sloppy_sctp` (0): create connections on any SCTP chunk, not only INIT.
    pub sloppy_sctp: bool,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            conntrack: false,
            conn_reuse_mode: 1,
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            sloppy_tcp: false,
            sloppy_sctp: false,
        }
    }
}

/// Everything fixed when the IPVS table is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpvsConfig {
    pub sysctls: Sysctls,
    /// `ip_vs.conn_tab_bits` (12): shown as `size=4096` by ipvsadm.
    pub conn_tab_bits: u8,
}

impl Default for IpvsConfig {
    fn default() -> Self {
        IpvsConfig {
            sysctls: Sysctls::default(),
            conn_tab_bits: 12,
        }
    }
}

/// The three timeouts `ipvsadm --set` writes and `--timeout` reads, in
/// seconds (`struct ip_vs_timeout_user`). On `--set`, 0 keeps the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeoutUser {
    /// TCP ESTABLISHED (900).
    pub tcp: u32,
    /// TCP FIN_WAIT (120).
    pub tcp_fin: u32,
    /// UDP (300).
    pub udp: u32,
}
