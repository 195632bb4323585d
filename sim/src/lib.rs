//! `sim`: a deterministic simulator of a Linux node's network stack.
//!
//! It models what the kernel holds and does — netfilter rulesets, and in
//! time conntrack, IPVS, nftables and the network between nodes — from the
//! same inputs the real kernel takes (for example `iptables-restore` text),
//! so a proxier can drive either without knowing which.
//!
//! **Invariant:** `sim` knows nothing about Kubernetes.
//! **Invariant:** no wall clock, no unseeded randomness, no hash-order
//! iteration reaching output; the same input gives the same output.
//!
//! Modules:
//! - [`packet`]: packets as real IPv4/IPv6 bytes (TCP/UDP/SCTP/ICMP), the
//!   flow tuple, NAT rewrites with checksums fixed.
//! - [`netfilter`]: the iptables ruleset model (restore, save, query) and
//!   its evaluator ([`netfilter::eval`]: chain walk, every match, traces,
//!   the explore-every-branch mode).
//! - [`conntrack`]: connection tracking — TCP/UDP states and timeouts, NAT
//!   bindings, `nf_conntrack_max`, `conntrack -L`.
//! - [`node`]: one Linux host — interfaces, routes, iptables, conntrack,
//!   ipsets, sysctls — and a packet's path through its hooks.
//! - [`network`]: hosts (nodes, pods, clients, cloud load balancers) in a
//!   `petgraph` graph, and the driver that plays connections through it.
//! - [`nftables`]: the nftables model (`nft -f` transactions, `nft list`, query).
//! - [`ipvs`]: IP Virtual Server — services, schedulers, the connection
//!   table on virtual time, `ipvsadm` output.
//! - [`time`]: virtual time. [`rng`]: seeded random streams.

pub mod conntrack;
pub mod ipvs;
pub mod netfilter;
pub mod network;
pub mod nftables;
pub mod node;
pub mod packet;
pub mod rng;
pub mod time;
