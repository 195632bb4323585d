//! kpsim's integration tests: one binary, one module per feature.

mod end_state;
mod ipvs_flows;
mod mode_switch;
mod rules_snapshots;
mod scenarios;
mod support;
mod upstream_flows;
mod upstream_iptables;
mod upstream_ipvs;
mod upstream_nft_flows;
mod upstream_nftables;
