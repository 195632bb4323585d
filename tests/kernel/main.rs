//! The kernel suite (`cargo test --test kernel`): the real-kernel backend in
//! throwaway network namespaces.
//!
//! Every test needs root and the tools it runs; without them it prints one
//! line saying exactly what is missing and returns. Each works only inside
//! namespaces it created (unique names, deleted on drop — also when the test
//! fails) and asserts at the end that the host namespace's `iptables-save`
//! (both variants, both families) and `nft list ruleset` are unchanged.

mod apply;
mod cleanup;
mod conntrack;
mod detect;
mod differential;
mod ipvs_vm;
mod ipvs_vm_diff;
mod support;
