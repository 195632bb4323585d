//! Helpers shared by the integration tests.

pub mod iptables_dump;
pub mod upstream;
