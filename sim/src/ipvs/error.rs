//! Errors of the IPVS model: every way the kernel (`ip_vs_ctl.c`) refuses a
//! control-plane request, with the errno it would return.
//!
//! Models: `-EEXIST`, `-ESRCH`/`-ENOENT`, `-ERANGE` and `-EINVAL` answers of
//! `ip_vs_add_service`, `ip_vs_edit_service`, `ip_vs_del_service`,
//! `ip_vs_add_dest`, `ip_vs_edit_dest`, `ip_vs_del_dest` and
//! `ip_vs_set_timeout`, plus the names a scheduler or forwarding method can
//! be given in.
//!
//! Must never: carry anything that differs between two runs over the same
//! input. Messages are stable plain text ending with a hint.
//!
//! Error contract: a refused request leaves the table unchanged.

use std::net::SocketAddr;

use thiserror::Error;

use super::types::ServiceKey;

/// Why the IPVS table refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IpvsError {
    /// `ip_vs_add_service`: a virtual service with this key exists (`-EEXIST`).
    #[error("virtual service {0} already exists; hint: edit it instead of adding it")]
    ServiceExists(ServiceKey),
    /// The virtual service does not exist (`-ESRCH`).
    #[error("no virtual service {0}; hint: add the service first")]
    NoSuchService(ServiceKey),
    /// `ip_vs_add_dest`: the service already has this real server (`-EEXIST`).
    #[error("real server {dest} already exists in {service}; hint: edit it instead")]
    DestExists {
        service: ServiceKey,
        dest: SocketAddr,
    },
    /// The service has no such real server (`-ENOENT`).
    #[error("no real server {dest} in {service}; hint: add it first")]
    NoSuchDest {
        service: ServiceKey,
        dest: SocketAddr,
    },
    /// IPVS balances TCP, UDP and SCTP only (`-EPROTONOSUPPORT`).
    #[error("protocol {0} is not balanced by IPVS; hint: use tcp, udp or sctp")]
    UnsupportedProtocol(u8),
    /// A real server of another address family than its service (`-EINVAL`;
    /// the kernel allows it only for tunnels, which this model does not).
    #[error("real server {dest} is not of the address family of {service}; hint: use an address of the same family")]
    FamilyMismatch {
        service: ServiceKey,
        dest: SocketAddr,
    },
    /// A weight above `INT_MAX` (the kernel's `int weight`) (`-ERANGE`).
    #[error(
        "weight {0} is out of range; hint: weights are 0..=2147483647 (ipvsadm allows 0..=65535)"
    )]
    WeightOutOfRange(u32),
    /// `l_threshold > u_threshold` (`-ERANGE`).
    #[error("lower threshold {lower} is above upper threshold {upper}; hint: keep lower <= upper")]
    ThresholdOrder { lower: u32, upper: u32 },
    /// A persistence timeout of 0 or a netmask prefix out of range (`-EINVAL`).
    #[error("invalid persistence ({reason}); hint: timeout >= 1 s, prefix 1..=32 (IPv4) or 1..=128 (IPv6)")]
    InvalidPersistence { reason: &'static str },
    /// A fwmark service with mark 0 (ipvsadm: "fwmark is an integer greater than zero").
    #[error("fwmark 0 is not a service mark; hint: use a mark greater than zero")]
    ZeroFwmark,
    /// `ip_vs_set_timeout`: a timeout above `INT_MAX / HZ` seconds (`-EINVAL`).
    #[error("timeout {0} s is out of range; hint: at most 8589934 s (INT_MAX / HZ with HZ=250)")]
    TimeoutOutOfRange(u32),
    /// A scheduler name the kernel has no module for (`-ENOENT`).
    #[error("unknown scheduler `{0}`; hint: use rr, wrr, lc, wlc, sh, dh, sed, nq, mh or none")]
    UnknownScheduler(String),
    /// A forwarding-method name that is not Masq/Route/Tunnel.
    #[error(
        "unknown forwarding method `{0}`; hint: use masq, route (gatewaying) or tunnel (ipip)"
    )]
    UnknownForwarding(String),
}
