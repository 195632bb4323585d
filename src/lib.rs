//! The `kpsim` library: joins the proxier and the simulator.
//!
//! The binary (`main.rs`) parses flags and prints; everything it does is
//! here, so integration tests call the same code. [`oneshot`] renders one
//! sync for `kpsim rules`; [`kernel_apply`] writes one into the real kernel
//! (`kpsim apply`) and removes kube-proxy's leftovers (`kpsim cleanup`).

pub mod generate;
pub mod kernel_apply;
pub mod oneshot;
pub mod scale;
pub mod scenario;
pub mod simkernel;
pub mod trace;
