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
//! - [`netfilter`]: the iptables ruleset model (restore, save, query).
//! - [`time`]: virtual time. [`rng`]: seeded random streams.

pub mod netfilter;
pub mod rng;
pub mod time;
