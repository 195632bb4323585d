//! The IPVS interface, as upstream's `pkg/proxy/ipvs/util` (`utilipvs.Interface`)
//! offers it to the IPVS proxier.
//!
//! It models the kernel's IPVS table as kube-proxy sees it through generic
//! netlink: virtual servers keyed by (address, port, protocol) with a
//! scheduler, flags and a persistence timeout, each with real servers that
//! carry a weight and the kernel's active/inactive connection counts.
//! Flags are the ones utilipvs exposes: the kernel's always-set "hashed" flag
//! is stripped on the way out, as upstream's netlink translation does.
//!
//! **Never:** this module holds types and the trait only; it talks to no
//! kernel and keeps no state (the recording fake, the simulator and the
//! real backend do).
//!
//! **Errors:** every operation returns a [`DataplaneError`] when the kernel
//! refuses it: adding what exists, updating or deleting what does not, or
//! touching the real servers of a missing virtual server.

use std::fmt;
use std::net::IpAddr;
use std::ops::BitOr;
use std::time::Duration;

use super::DataplaneError;
use crate::k8s::Protocol;

/// Virtual-server flags (`utilipvs.ServiceFlags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    pub const NONE: ServiceFlags = ServiceFlags(0);
    /// `IP_VS_SVC_F_PERSISTENT`: session affinity (ClientIP).
    pub const PERSISTENT: ServiceFlags = ServiceFlags(0x1);
    /// `IP_VS_SVC_F_HASHED`: set by the kernel on every service; utilipvs
    /// strips it when reading services back.
    pub const HASHED: ServiceFlags = ServiceFlags(0x2);
    /// `IP_VS_SVC_F_SCHED2`: for `mh`, hash on source port too (`mh-port`).
    pub const SOURCE_HASH: ServiceFlags = ServiceFlags(0x10);

    pub fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

impl BitOr for ServiceFlags {
    type Output = ServiceFlags;
    fn bitor(self, rhs: ServiceFlags) -> ServiceFlags {
        ServiceFlags(self.0 | rhs.0)
    }
}

/// `ip:port` as Go's `net.JoinHostPort` writes it (brackets for IPv6).
pub fn join_host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// What identifies a virtual server in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualServerKey {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for VirtualServerKey {
    /// Upstream's `VirtualServer.String()`: `10.0.0.1:80/TCP`, `[fd00::1]:80/UDP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            join_host_port(self.address, self.port),
            self.protocol.api_name()
        )
    }
}

/// An IPVS virtual server (`utilipvs.VirtualServer`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualServer {
    pub address: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    pub scheduler: String,
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (meaningful with `PERSISTENT`).
    pub timeout: u32,
}

impl VirtualServer {
    pub fn key(&self) -> VirtualServerKey {
        VirtualServerKey {
            address: self.address,
            port: self.port,
            protocol: self.protocol,
        }
    }

    /// The persistence netmask upstream's netlink translation sends: a host
    /// mask for the address family (`0xffffffff`, or 128 for IPv6).
    pub fn netmask(&self) -> u32 {
        match self.address {
            IpAddr::V4(_) => 0xffff_ffff,
            IpAddr::V6(_) => 128,
        }
    }
}

impl fmt::Display for VirtualServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key().fmt(f)
    }
}

/// An IPVS real server, a destination of a virtual server
/// (`utilipvs.RealServer`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RealServer {
    pub address: IpAddr,
    pub port: u16,
    pub weight: i32,
    /// Established connections the kernel counts for this destination.
    pub active_conn: u32,
    /// Other (e.g. TIME_WAIT, FIN_WAIT) connections.
    pub inactive_conn: u32,
}

impl RealServer {
    /// A destination with the given weight and no connections.
    pub fn new(address: IpAddr, port: u16, weight: i32) -> Self {
        RealServer {
            address,
            port,
            weight,
            active_conn: 0,
            inactive_conn: 0,
        }
    }

    /// Upstream's `RealServer.Equal`: same address and port.
    pub fn same_destination(&self, other: &RealServer) -> bool {
        self.address == other.address && self.port == other.port
    }
}

impl fmt::Display for RealServer {
    /// `ip:port` (`net.JoinHostPort`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join_host_port(self.address, self.port))
    }
}

/// Whether a real server of this protocol drains before deletion
/// (upstream's `IsRsGracefulTerminationNeeded`): TCP does; UDP and SCTP are
/// deleted at once (the kernel's `expire_nodest_conn` drops their flows).
pub fn is_rs_graceful_termination_needed(protocol: Protocol) -> bool {
    !matches!(protocol, Protocol::Udp | Protocol::Sctp)
}

/// The kernel's IPVS table (upstream `utilipvs.Interface`).
pub trait Ipvs {
    /// Deletes every virtual server.
    fn flush(&mut self) -> Result<(), DataplaneError>;
    /// Creates a virtual server with no real servers.
    fn add_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError>;
    /// Changes the scheduler, flags or timeout of an existing virtual server.
    fn update_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError>;
    /// Deletes a virtual server (identified by its key) and its real servers.
    fn delete_virtual_server(&mut self, vs: &VirtualServer) -> Result<(), DataplaneError>;
    /// The virtual server with `vs`'s key, as the kernel holds it, or `None`.
    fn get_virtual_server(
        &mut self,
        vs: &VirtualServer,
    ) -> Result<Option<VirtualServer>, DataplaneError>;
    /// Every virtual server.
    fn get_virtual_servers(&mut self) -> Result<Vec<VirtualServer>, DataplaneError>;
    /// Adds a destination to a virtual server.
    fn add_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError>;
    /// The destinations of a virtual server, with their connection counts.
    fn get_real_servers(&mut self, vs: &VirtualServer) -> Result<Vec<RealServer>, DataplaneError>;
    /// Deletes a destination (identified by address and port).
    fn delete_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError>;
    /// Changes a destination's weight; its connection counts stay.
    fn update_real_server(
        &mut self,
        vs: &VirtualServer,
        rs: &RealServer,
    ) -> Result<(), DataplaneError>;
    /// `ipvsadm --set TCP TCPFIN UDP`; a zero keeps the kernel's value.
    fn configure_timeouts(
        &mut self,
        tcp: Duration,
        tcp_fin: Duration,
        udp: Duration,
    ) -> Result<(), DataplaneError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_upstreams() {
        let vs = VirtualServer {
            address: "fd00::1".parse().unwrap(),
            protocol: Protocol::Udp,
            port: 53,
            scheduler: "rr".into(),
            flags: ServiceFlags::PERSISTENT | ServiceFlags::SOURCE_HASH,
            timeout: 10800,
        };
        assert_eq!(vs.to_string(), "[fd00::1]:53/UDP");
        assert_eq!(vs.netmask(), 128);
        assert!(vs.flags.contains(ServiceFlags::PERSISTENT));
        assert!(!vs.flags.contains(ServiceFlags::HASHED));
        let rs = RealServer::new("10.0.0.1".parse().unwrap(), 8080, 1);
        assert_eq!(rs.to_string(), "10.0.0.1:8080");
        assert!(is_rs_graceful_termination_needed(Protocol::Tcp));
        assert!(!is_rs_graceful_termination_needed(Protocol::Udp));
        assert!(!is_rs_graceful_termination_needed(Protocol::Sctp));
    }
}
