//! The `kpsim` library: joins the proxier and the simulator.
//!
//! The binary (`main.rs`) parses flags and prints; everything it does is
//! here, so integration tests call the same code. [`oneshot`] renders one
//! sync for `kpsim rules`; [`kernel_apply`] writes one into the real kernel
//! (`kpsim apply`) and removes kube-proxy's leftovers (`kpsim cleanup`);
//! [`kernel_cluster`] builds a scenario's cluster from network namespaces and
//! compares the real kernel with the simulator (the differential harness);
//! [`scenario_gen`] writes seeded random small scenarios for it.

pub mod generate;
pub mod kernel_apply;
pub mod kernel_cluster;
pub mod oneshot;
pub mod scale;
pub mod scenario;
pub mod scenario_gen;
pub mod simkernel;
pub mod trace;
