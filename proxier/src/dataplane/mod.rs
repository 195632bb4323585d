//! The seam between the proxier and a node's kernel.
//!
//! Each trait mirrors one kernel interface upstream kube-proxy uses
//! ([`Iptables`] ↔ `iptables-restore`/`iptables-save`, [`Nftables`] ↔
//! `nft -f`/`nft list`, [`Conntrack`] ↔
//! conntrack flow deletion, [`Nfacct`] ↔ nfacct counters, [`Sysctl`] ↔
//! `/proc/sys`, and for IPVS mode [`Ipvs`] ↔ the IPVS table over generic
//! netlink, [`Ipset`] ↔ `ipset`, [`Addresses`] ↔ the `kube-ipvs0` dummy
//! device and the node's local addresses). The proxier talks only to these traits; the simulator (root
//! package) and the real-kernel backend implement them. Implementations must
//! make a restore atomic: on error nothing of the payload is applied.
//!
//! [`recording`] holds in-memory fakes for unit tests.

mod addresses;
mod ipset;
mod iptables;
mod ipvs;
mod nftables;
pub mod recording;

pub use addresses::{is_valid_for_set, Addresses};
pub use ipset::{
    hash_family, Entry as IpSetEntry, IpSetSpec, Ipset, SetType, DEFAULT_HASH_SIZE,
    DEFAULT_MAX_ELEM, DEFAULT_PORT_RANGE,
};
pub use iptables::{chains_in_save, Iptables, RestoreFlags, RulePosition, Table};
pub use ipvs::{
    is_rs_graceful_termination_needed, join_host_port, Ipvs, RealServer, ServiceFlags,
    VirtualServer, VirtualServerKey,
};
pub use nftables::Nftables;

use std::net::IpAddr;

use crate::k8s::Protocol;

/// A kernel (or simulated kernel) refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct DataplaneError {
    /// What was attempted, e.g. `iptables-restore`.
    pub operation: String,
    /// What went wrong, as the kernel or tool said it.
    pub message: String,
    /// The 1-based line of the payload that failed, when known.
    pub line: Option<usize>,
}

impl DataplaneError {
    pub fn new(operation: impl Into<String>, message: impl Into<String>) -> Self {
        DataplaneError {
            operation: operation.into(),
            message: message.into(),
            line: None,
        }
    }
}

/// One conntrack entry, as far as kube-proxy's cleanup looks at it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConntrackFlow {
    pub protocol: Protocol,
    pub orig_src: IpAddr,
    pub orig_dst: IpAddr,
    pub orig_src_port: u16,
    pub orig_dst_port: u16,
    pub reply_src: IpAddr,
    pub reply_src_port: u16,
}

/// The conntrack table (upstream's UDP stale-entry cleanup lists it and
/// deletes flows whose reply source is no longer a serving endpoint).
pub trait Conntrack {
    /// Every entry of `family` and `protocol`.
    fn list_flows(
        &mut self,
        family: crate::k8s::IpFamily,
        protocol: Protocol,
    ) -> Result<Vec<ConntrackFlow>, DataplaneError>;
    /// Deletes these entries (by original and reply tuple); returns how many
    /// existed.
    fn delete_flows(&mut self, flows: &[ConntrackFlow]) -> Result<usize, DataplaneError>;
}

/// nfacct counters that kube-proxy's rules reference (`-m nfacct`).
pub trait Nfacct {
    /// Creates the counter if it does not exist.
    fn ensure(&mut self, name: &str) -> Result<(), DataplaneError>;
}

/// Kernel parameters under `/proc/sys` (`net/ipv4/conf/all/route_localnet`).
pub trait Sysctl {
    fn get(&self, name: &str) -> Result<i64, DataplaneError>;
    fn set(&mut self, name: &str, value: i64) -> Result<(), DataplaneError>;
}

/// One node's kernel, as the proxier reaches it: a handle per interface.
/// Borrowing one handle at a time keeps implementations free to put every
/// interface on one object (the simulated node, the host).
pub trait Kernel {
    /// `iptables` for IPv4, `ip6tables` for IPv6.
    fn iptables(&mut self, family: crate::k8s::IpFamily) -> &mut dyn Iptables;
    fn nftables(&mut self) -> &mut dyn Nftables;
    fn conntrack(&mut self) -> &mut dyn Conntrack;
    fn nfacct(&mut self) -> &mut dyn Nfacct;
    fn sysctl(&mut self) -> &mut dyn Sysctl;
    /// The IPVS table (shared by both families, like the kernel's).
    fn ipvs(&mut self) -> &mut dyn Ipvs;
    /// The ipsets (shared by both families; IPv6 sets carry their own names).
    fn ipset(&mut self) -> &mut dyn Ipset;
    /// Network devices and their addresses (`kube-ipvs0`, local addresses).
    fn addresses(&mut self) -> &mut dyn Addresses;
}
