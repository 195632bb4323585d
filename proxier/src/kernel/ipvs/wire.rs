//! The IPVS generic-netlink family on the wire: command numbers, attribute
//! numbers and the attribute values, exactly as the kernel's
//! `include/uapi/linux/ip_vs.h` defines them and `ip_vs_ctl.c` reads them.
//!
//! Three attribute levels: the command attributes ([`CmdAttr`]: a nested
//! service, a nested destination, the three timeouts), the service
//! attributes ([`SvcAttr`]) and the destination attributes ([`DestAttr`]).
//! Byte order follows the kernel: ports are big-endian (`nla_get_be16`),
//! everything else host order; an address is 4 bytes (IPv4) or 16 (IPv6)
//! on the way in and always 16 (`union nf_inet_addr`, IPv4 in the first
//! four) on the way out; the service flags are `struct ip_vs_flags
//! { u32 flags; u32 mask; }`; the persistence netmask is sent as moby/ipvs
//! and ipvsadm send it (a host-order u32: all ones for IPv4, the prefix
//! length for IPv6). Nested attributes go out without `NLA_F_NESTED`, as
//! ipvsadm and moby/ipvs send them (the IPVS family parses leniently).
//!
//! Attributes this module does not model (statistics, tunnel settings, the
//! persistence engine) are kept as raw [`DefaultNla`]s, so nothing the
//! kernel sends is an error.
//!
//! **Never:** talks to a socket (see [`super::socket`]).
//! **Errors:** [`DecodeError`] for a malformed attribute (wrong length).

use netlink_packet_core::{
    parse_string, parse_u16, parse_u16_be, parse_u32, DecodeError, DefaultNla, Emitable, Nla,
    NlaBuffer, NlasIterator, Parseable,
};

/// `IPVS_GENL_NAME`.
pub const FAMILY_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const FAMILY_VERSION: u8 = 1;

/// `IPVS_CMD_*`.
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
    pub const GET_INFO: u8 = 15;
    pub const FLUSH: u8 = 17;
}

/// `IPVS_CMD_ATTR_*`.
pub mod cmd_attr {
    pub const SERVICE: u16 = 1;
    pub const DEST: u16 = 2;
    pub const TIMEOUT_TCP: u16 = 4;
    pub const TIMEOUT_TCP_FIN: u16 = 5;
    pub const TIMEOUT_UDP: u16 = 6;
}

/// `IPVS_SVC_ATTR_*`.
pub mod svc_attr {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
}

/// `IPVS_DEST_ATTR_*`.
pub mod dest_attr {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const PERSIST_CONNS: u16 = 9;
    pub const ADDR_FAMILY: u16 = 11;
}

/// `IP_VS_CONN_F_MASQ`: NAT forwarding, what kube-proxy uses.
pub const CONN_F_MASQ: u32 = 0x0000;
/// `IP_VS_CONN_F_FWD_MASK`.
pub const CONN_F_FWD_MASK: u32 = 0x0007;
/// `AF_INET`, `AF_INET6`.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

fn check_len(what: &str, value: &[u8], len: usize) -> Result<(), DecodeError> {
    if value.len() < len {
        return Err(DecodeError::from(format!(
            "IPVS attribute {what}: {} bytes, want {len}",
            value.len()
        )));
    }
    Ok(())
}

/// Writes `bytes` at the start of `buffer` (sized by `value_len`).
fn put(buffer: &mut [u8], bytes: &[u8]) {
    buffer[..bytes.len()].copy_from_slice(bytes);
}

fn string_len(s: &str) -> usize {
    s.len() + 1
}

fn emit_string(buffer: &mut [u8], s: &str) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

/// One attribute of a service (`IPVS_SVC_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SvcAttr {
    /// `AF_INET` or `AF_INET6`.
    Af(u16),
    /// IP protocol number (6, 17, 132).
    Protocol(u16),
    /// 4 or 16 bytes going in; 16 coming back.
    Addr(Vec<u8>),
    Port(u16),
    Fwmark(u32),
    SchedName(String),
    /// `struct ip_vs_flags`: the bits, and which bits to change.
    Flags {
        flags: u32,
        mask: u32,
    },
    /// Persistence timeout, seconds.
    Timeout(u32),
    /// Persistence netmask (see the module header for its encoding).
    Netmask(u32),
    Other(DefaultNla),
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            SvcAttr::Af(_) | SvcAttr::Protocol(_) | SvcAttr::Port(_) => 2,
            SvcAttr::Fwmark(_) | SvcAttr::Timeout(_) | SvcAttr::Netmask(_) => 4,
            SvcAttr::Addr(a) => a.len(),
            SvcAttr::SchedName(s) => string_len(s),
            SvcAttr::Flags { .. } => 8,
            SvcAttr::Other(o) => o.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            SvcAttr::Af(_) => svc_attr::AF,
            SvcAttr::Protocol(_) => svc_attr::PROTOCOL,
            SvcAttr::Addr(_) => svc_attr::ADDR,
            SvcAttr::Port(_) => svc_attr::PORT,
            SvcAttr::Fwmark(_) => svc_attr::FWMARK,
            SvcAttr::SchedName(_) => svc_attr::SCHED_NAME,
            SvcAttr::Flags { .. } => svc_attr::FLAGS,
            SvcAttr::Timeout(_) => svc_attr::TIMEOUT,
            SvcAttr::Netmask(_) => svc_attr::NETMASK,
            SvcAttr::Other(o) => o.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            SvcAttr::Af(v) | SvcAttr::Protocol(v) => put(buffer, &v.to_ne_bytes()),
            SvcAttr::Port(p) => put(buffer, &p.to_be_bytes()),
            SvcAttr::Fwmark(v) | SvcAttr::Timeout(v) | SvcAttr::Netmask(v) => {
                put(buffer, &v.to_ne_bytes())
            }
            SvcAttr::Addr(a) => buffer[..a.len()].copy_from_slice(a),
            SvcAttr::SchedName(s) => emit_string(buffer, s),
            SvcAttr::Flags { flags, mask } => {
                put(&mut buffer[..4], &flags.to_ne_bytes());
                put(&mut buffer[4..8], &mask.to_ne_bytes());
            }
            SvcAttr::Other(o) => o.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for SvcAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            svc_attr::AF => SvcAttr::Af(parse_u16(v)?),
            svc_attr::PROTOCOL => SvcAttr::Protocol(parse_u16(v)?),
            svc_attr::ADDR => SvcAttr::Addr(v.to_vec()),
            svc_attr::PORT => SvcAttr::Port(parse_u16_be(v)?),
            svc_attr::FWMARK => SvcAttr::Fwmark(parse_u32(v)?),
            svc_attr::SCHED_NAME => SvcAttr::SchedName(parse_string(v)?),
            svc_attr::FLAGS => {
                check_len("service flags", v, 8)?;
                SvcAttr::Flags {
                    flags: parse_u32(&v[..4])?,
                    mask: parse_u32(&v[4..8])?,
                }
            }
            svc_attr::TIMEOUT => SvcAttr::Timeout(parse_u32(v)?),
            svc_attr::NETMASK => SvcAttr::Netmask(parse_u32(v)?),
            _ => SvcAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One attribute of a destination (`IPVS_DEST_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestAttr {
    Addr(Vec<u8>),
    Port(u16),
    /// `IP_VS_CONN_F_*` forwarding method (masq, tunnel, route).
    FwdMethod(u32),
    Weight(u32),
    UpperThreshold(u32),
    LowerThreshold(u32),
    ActiveConns(u32),
    InactiveConns(u32),
    PersistConns(u32),
    AddrFamily(u16),
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(a) => a.len(),
            DestAttr::Port(_) | DestAttr::AddrFamily(_) => 2,
            DestAttr::Other(o) => o.value_len(),
            _ => 4,
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => dest_attr::ADDR,
            DestAttr::Port(_) => dest_attr::PORT,
            DestAttr::FwdMethod(_) => dest_attr::FWD_METHOD,
            DestAttr::Weight(_) => dest_attr::WEIGHT,
            DestAttr::UpperThreshold(_) => dest_attr::U_THRESH,
            DestAttr::LowerThreshold(_) => dest_attr::L_THRESH,
            DestAttr::ActiveConns(_) => dest_attr::ACTIVE_CONNS,
            DestAttr::InactiveConns(_) => dest_attr::INACT_CONNS,
            DestAttr::PersistConns(_) => dest_attr::PERSIST_CONNS,
            DestAttr::AddrFamily(_) => dest_attr::ADDR_FAMILY,
            DestAttr::Other(o) => o.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DestAttr::Addr(a) => buffer[..a.len()].copy_from_slice(a),
            DestAttr::Port(p) => put(buffer, &p.to_be_bytes()),
            DestAttr::AddrFamily(f) => put(buffer, &f.to_ne_bytes()),
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UpperThreshold(v)
            | DestAttr::LowerThreshold(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactiveConns(v)
            | DestAttr::PersistConns(v) => put(buffer, &v.to_ne_bytes()),
            DestAttr::Other(o) => o.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            dest_attr::ADDR => DestAttr::Addr(v.to_vec()),
            dest_attr::PORT => DestAttr::Port(parse_u16_be(v)?),
            dest_attr::FWD_METHOD => DestAttr::FwdMethod(parse_u32(v)?),
            dest_attr::WEIGHT => DestAttr::Weight(parse_u32(v)?),
            dest_attr::U_THRESH => DestAttr::UpperThreshold(parse_u32(v)?),
            dest_attr::L_THRESH => DestAttr::LowerThreshold(parse_u32(v)?),
            dest_attr::ACTIVE_CONNS => DestAttr::ActiveConns(parse_u32(v)?),
            dest_attr::INACT_CONNS => DestAttr::InactiveConns(parse_u32(v)?),
            dest_attr::PERSIST_CONNS => DestAttr::PersistConns(parse_u32(v)?),
            dest_attr::ADDR_FAMILY => DestAttr::AddrFamily(parse_u16(v)?),
            _ => DestAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One top-level attribute of an IPVS message (`IPVS_CMD_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdAttr {
    Service(Vec<SvcAttr>),
    Dest(Vec<DestAttr>),
    /// Seconds; 0 keeps the kernel's value.
    TimeoutTcp(u32),
    TimeoutTcpFin(u32),
    TimeoutUdp(u32),
    Other(DefaultNla),
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            CmdAttr::Service(a) => a.as_slice().buffer_len(),
            CmdAttr::Dest(a) => a.as_slice().buffer_len(),
            CmdAttr::TimeoutTcp(_) | CmdAttr::TimeoutTcpFin(_) | CmdAttr::TimeoutUdp(_) => 4,
            CmdAttr::Other(o) => o.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            CmdAttr::Service(_) => cmd_attr::SERVICE,
            CmdAttr::Dest(_) => cmd_attr::DEST,
            CmdAttr::TimeoutTcp(_) => cmd_attr::TIMEOUT_TCP,
            CmdAttr::TimeoutTcpFin(_) => cmd_attr::TIMEOUT_TCP_FIN,
            CmdAttr::TimeoutUdp(_) => cmd_attr::TIMEOUT_UDP,
            CmdAttr::Other(o) => o.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            CmdAttr::Service(a) => a.as_slice().emit(buffer),
            CmdAttr::Dest(a) => a.as_slice().emit(buffer),
            CmdAttr::TimeoutTcp(v) | CmdAttr::TimeoutTcpFin(v) | CmdAttr::TimeoutUdp(v) => {
                put(buffer, &v.to_ne_bytes())
            }
            CmdAttr::Other(o) => o.emit_value(buffer),
        }
    }
}

/// Parses a run of attributes with `parse`.
pub fn parse_all<A>(
    buf: &[u8],
    parse: impl Fn(&NlaBuffer<&[u8]>) -> Result<A, DecodeError>,
) -> Result<Vec<A>, DecodeError> {
    NlasIterator::new(buf)
        .map(|nla| nla.and_then(|nla| parse(&nla)))
        .collect()
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for CmdAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            cmd_attr::SERVICE => CmdAttr::Service(parse_all(v, |n| SvcAttr::parse(n))?),
            cmd_attr::DEST => CmdAttr::Dest(parse_all(v, |n| DestAttr::parse(n))?),
            cmd_attr::TIMEOUT_TCP => CmdAttr::TimeoutTcp(parse_u32(v)?),
            cmd_attr::TIMEOUT_TCP_FIN => CmdAttr::TimeoutTcpFin(parse_u32(v)?),
            cmd_attr::TIMEOUT_UDP => CmdAttr::TimeoutUdp(parse_u32(v)?),
            _ => CmdAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}
