//! IPVS on the real kernel, over generic netlink (the `IPVS` family), as
//! upstream kube-proxy reaches it through moby/ipvs.
//!
//! - [`wire`]: command and attribute numbers and attribute encodings from
//!   `include/uapi/linux/ip_vs.h`;
//! - [`message`]: the family's messages and their translation to and from
//!   [`VirtualServer`](crate::dataplane::VirtualServer) and
//!   [`RealServer`](crate::dataplane::RealServer);
//! - [`socket`]: family resolution and request/dump exchanges;
//! - [`handle`]: [`KernelIpvs`], the [`Ipvs`](crate::dataplane::Ipvs) trait;
//! - [`cleanup`]: upstream's IPVS `CleanupLeftovers`.
//!
//! No crate models IPVS; the attributes are written here on
//! `netlink-packet-core`'s `Nla` and `netlink-packet-generic`'s
//! `GenlFamily`.

pub mod cleanup;
pub mod handle;
pub mod message;
pub mod socket;
pub mod wire;

pub use handle::KernelIpvs;
pub use socket::NO_IPVS;
