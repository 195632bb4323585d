//! IPVS generic-netlink messages and their translation to and from the
//! dataplane's [`VirtualServer`] and [`RealServer`].
//!
//! [`IpvsMessage`] is one message of the family: the command (the generic
//! netlink header's `cmd`, version [`FAMILY_VERSION`]) and its top-level
//! attributes. It implements `netlink-packet-generic`'s `GenlFamily` so it
//! travels inside a `GenlMessage` whose family id is resolved at run time.
//!
//! The translation is upstream's `pkg/proxy/ipvs/util` over moby/ipvs:
//! a service goes out with its family, protocol, address, port, scheduler,
//! flags (mask all ones), persistence timeout and a host netmask; a
//! destination with its address, port, masquerading, weight and zero
//! thresholds. Coming back, the kernel's always-set `HASHED` flag is
//! stripped and the connection counters are kept (graceful termination
//! reads them).
//!
//! **Never:** touches a socket.
//! **Errors:** a reply the kernel could not have sent (a service without an
//! address, an unknown protocol) is a `String` naming what is missing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{DecodeError, Emitable, NlaBuffer, Parseable, ParseableParametrized};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use super::wire::*;
use crate::dataplane::{RealServer, ServiceFlags, VirtualServer};
use crate::k8s::Protocol;

/// One message of the IPVS family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// `IPVS_CMD_*` ([`cmd`]).
    pub cmd: u8,
    pub attrs: Vec<CmdAttr>,
}

impl IpvsMessage {
    pub fn new(cmd: u8, attrs: Vec<CmdAttr>) -> Self {
        IpvsMessage { cmd, attrs }
    }

    /// The nested service of a reply, if any.
    pub fn service(&self) -> Option<&[SvcAttr]> {
        self.attrs.iter().find_map(|a| match a {
            CmdAttr::Service(s) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// The nested destination of a reply, if any.
    pub fn dest(&self) -> Option<&[DestAttr]> {
        self.attrs.iter().find_map(|a| match a {
            CmdAttr::Dest(d) => Some(d.as_slice()),
            _ => None,
        })
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        FAMILY_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs: parse_all(buf, |n: &NlaBuffer<&[u8]>| CmdAttr::parse(n))?,
        })
    }
}

/// The IP protocol number of a Kubernetes protocol.
pub fn protocol_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn protocol_of(n: u16) -> Option<Protocol> {
    match n {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        132 => Some(Protocol::Sctp),
        _ => None,
    }
}

fn af_of(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// An address as the kernel takes it: 4 bytes for IPv4, 16 for IPv6.
pub fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// An address as the kernel sends it (`union nf_inet_addr`: 16 bytes, IPv4
/// in the first four), read for the family `af`.
pub fn addr_from(bytes: &[u8], af: u16) -> Result<IpAddr, String> {
    match af {
        AF_INET if bytes.len() >= 4 => Ok(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        AF_INET6 if bytes.len() >= 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&bytes[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => Err(format!(
            "an address of {} bytes for address family {af}",
            bytes.len()
        )),
    }
}

/// The attributes that identify a service (enough for delete, get, and
/// the service part of destination commands).
pub fn service_key_attrs(vs: &VirtualServer) -> Vec<SvcAttr> {
    vec![
        SvcAttr::Af(af_of(vs.address)),
        SvcAttr::Protocol(protocol_number(vs.protocol)),
        SvcAttr::Addr(addr_bytes(vs.address)),
        SvcAttr::Port(vs.port),
    ]
}

/// The full service, as new-service and set-service take it (moby/ipvs's
/// `fillService`).
pub fn service_attrs(vs: &VirtualServer) -> Vec<SvcAttr> {
    let mut attrs = service_key_attrs(vs);
    attrs.extend([
        SvcAttr::SchedName(vs.scheduler.clone()),
        SvcAttr::Flags {
            flags: vs.flags.0,
            mask: u32::MAX,
        },
        SvcAttr::Timeout(vs.timeout),
        SvcAttr::Netmask(vs.netmask()),
    ]);
    attrs
}

/// A destination as new-dest and set-dest take it (moby/ipvs's
/// `fillDestination`): masquerading, no thresholds.
pub fn dest_attrs(rs: &RealServer) -> Vec<DestAttr> {
    vec![
        DestAttr::Addr(addr_bytes(rs.address)),
        DestAttr::Port(rs.port),
        DestAttr::FwdMethod(CONN_F_MASQ),
        DestAttr::Weight(rs.weight.max(0) as u32),
        DestAttr::UpperThreshold(0),
        DestAttr::LowerThreshold(0),
    ]
}

/// The attributes identifying a destination (delete).
pub fn dest_key_attrs(rs: &RealServer) -> Vec<DestAttr> {
    vec![
        DestAttr::Addr(addr_bytes(rs.address)),
        DestAttr::Port(rs.port),
    ]
}

/// What a service reply describes, or `None` for a service kube-proxy
/// cannot have made (a firewall-mark service, an unknown protocol).
pub fn virtual_server_of(attrs: &[SvcAttr]) -> Result<Option<VirtualServer>, String> {
    let (mut af, mut proto, mut addr, mut port) = (None, None, None, None);
    let (mut sched, mut flags, mut timeout, mut fwmark) = (String::new(), 0, 0, 0);
    for a in attrs {
        match a {
            SvcAttr::Af(v) => af = Some(*v),
            SvcAttr::Protocol(v) => proto = Some(*v),
            SvcAttr::Addr(v) => addr = Some(v.as_slice()),
            SvcAttr::Port(v) => port = Some(*v),
            SvcAttr::Fwmark(v) => fwmark = *v,
            SvcAttr::SchedName(s) => sched = s.clone(),
            SvcAttr::Flags { flags: f, .. } => flags = *f,
            SvcAttr::Timeout(t) => timeout = *t,
            _ => {}
        }
    }
    if fwmark != 0 {
        return Ok(None);
    }
    let af = af.ok_or("a service without an address family")?;
    let Some(protocol) = proto.and_then(protocol_of) else {
        return Ok(None);
    };
    let address = addr_from(addr.ok_or("a service without an address")?, af)?;
    Ok(Some(VirtualServer {
        address,
        protocol,
        port: port.ok_or("a service without a port")?,
        scheduler: sched,
        flags: ServiceFlags(flags & !ServiceFlags::HASHED.0),
        timeout,
    }))
}

/// What a destination reply describes; `service_af` is its service's
/// family (kernels before 3.18 send no destination family).
pub fn real_server_of(attrs: &[DestAttr], service_af: u16) -> Result<RealServer, String> {
    let (mut addr, mut port, mut af) = (None, None, service_af);
    let mut rs = RealServer::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, 0);
    for a in attrs {
        match a {
            DestAttr::Addr(v) => addr = Some(v.as_slice()),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::AddrFamily(f) => af = *f,
            DestAttr::Weight(w) => rs.weight = i32::try_from(*w).unwrap_or(i32::MAX),
            DestAttr::ActiveConns(n) => rs.active_conn = *n,
            DestAttr::InactiveConns(n) => rs.inactive_conn = *n,
            _ => {}
        }
    }
    rs.address = addr_from(addr.ok_or("a destination without an address")?, af)?;
    rs.port = port.ok_or("a destination without a port")?;
    Ok(rs)
}

/// The address family of a service's attributes (`AF_INET` if absent).
pub fn service_af(attrs: &[SvcAttr]) -> u16 {
    attrs
        .iter()
        .find_map(|a| match a {
            SvcAttr::Af(f) => Some(*f),
            _ => None,
        })
        .unwrap_or(AF_INET)
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
