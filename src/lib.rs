//! The `kpsim` library: joins the proxier and the simulator.
//!
//! The binary (`main.rs`) parses flags and prints; everything it does is
//! here, so integration tests call the same code. [`oneshot`] renders one
//! sync for `kpsim rules`.

pub mod generate;
pub mod oneshot;
pub mod scenario;
pub mod simkernel;
