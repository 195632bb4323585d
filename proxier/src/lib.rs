//! `proxier`: kube-proxy's brain, independent of where its rules go.
//!
//! It reads Kubernetes objects ([`k8s`]) and a `KubeProxyConfiguration`
//! ([`config`]), tracks changes the way upstream's change trackers do, and
//! renders rules for one mode at a time, talking only to the dataplane traits
//! ([`dataplane`]). It never prints, never reads the wall clock (callers pass
//! time in), and never knows whether a simulator or a kernel is behind the
//! traits.

pub mod config;
pub mod k8s;
