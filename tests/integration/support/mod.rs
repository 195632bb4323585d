//! Helpers shared by the integration tests.

pub mod flows;
pub mod iptables_dump;
pub mod ipvs_upstream;
pub mod nft_dump;
pub mod nft_fake;
pub mod nft_trace;
pub mod nftables_upstream;
pub mod upstream;
