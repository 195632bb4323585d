//! The Kubernetes side of kube-proxy: the objects it watches, read from
//! manifests.
//!
//! Loading is two-staged (parse, then resolve): [`raw`] mirrors the API's
//! field names and accepts anything the API may print; [`validate`] checks the
//! fields kube-proxy uses and produces the typed [`model`]; [`load`] splits
//! files into objects and ties the two together. This module knows nothing of
//! iptables, IPVS or nftables.

pub mod load;
pub mod model;
pub mod raw;
pub mod validate;

pub use load::{load_str, LoadError, Manifests};
pub use model::*;
pub use validate::FieldError;
