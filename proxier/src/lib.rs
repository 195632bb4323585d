//! `proxier`: kube-proxy's brain, independent of where its rules go.
//!
//! It reads Kubernetes objects ([`k8s`]) and a `KubeProxyConfiguration`
//! ([`config`]), tracks changes the way upstream's change trackers do
//! ([`changes`]), decides which endpoints each service port uses
//! ([`topology`]), and renders rules for one mode at a time ([`iptables`],
//! [`nftables`], [`ipvs`] — IPVS virtual servers, ipsets and helper
//! iptables rules), talking only to the dataplane traits ([`dataplane`]). A bounded-frequency
//! [`sync_runner`] decides when syncs happen. [`kernel`] implements the
//! dataplane traits against the real kernel (the host or a named network
//! namespace).
//!
//! **Invariants:** it never prints, never reads the wall clock (callers pass
//! [`clock::Timestamp`]s in), iterates only ordered collections, and never
//! knows whether a simulator or a kernel is behind the traits.

pub mod changes;
pub mod clock;
pub mod config;
pub mod conntrack_cleanup;
pub mod dataplane;
pub mod endpoints;
pub mod iptables;
pub mod ipvs;
pub mod k8s;
pub mod kernel;
pub mod local_detect;
pub mod nftables;
pub mod node;
pub mod nodeport_addresses;
pub mod provider;
pub mod service_port;
pub mod sync_runner;
pub mod topology;
pub mod watch;
