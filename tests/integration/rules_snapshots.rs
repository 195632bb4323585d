//! `kpsim rules` output for the manifest sets in `tests/manifests/`, as insta
//! snapshots: the restore payload and the node's tables afterwards
//! (`--format save`). Every payload must also pass upstream's consistency
//! check (no jump to an undeclared or empty chain, no unused service chain).
//! A manifest `X.yaml` (or `.json`) may have a `X.config.yaml` beside it.
//! The same manifest sets in IPVS mode: what `kpsim rules --mode ipvs`
//! prints (`ipvsadm -Ln`, `kube-ipvs0`, `ipset list`, then the payload),
//! read back from the simulated node the proxier wrote into.

use std::path::Path;

use kpsim::oneshot::{render, RenderRequest};
use proxier::config::{self, Config, Mode};
use proxier::k8s;

use crate::support::iptables_dump;

fn render_file(path: &Path, mode: Option<Mode>) -> kpsim::oneshot::Rendered {
    let text = std::fs::read_to_string(path).unwrap();
    let manifests = k8s::load_str(&path.display().to_string(), &text).expect("manifest loads");
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let config_path = path.with_file_name(format!("{stem}.config.yaml"));
    let config = if config_path.exists() {
        let text = std::fs::read_to_string(&config_path).unwrap();
        config::load_str(&config_path.display().to_string(), &text).expect("config loads")
    } else {
        Config::default()
    };
    let mut config = config;
    if let Some(m) = mode {
        config.mode = m;
    }
    render(&RenderRequest {
        config,
        manifests,
        ..RenderRequest::default()
    })
    .expect("renders")
}

#[test]
fn rules_for_every_manifest_set() {
    let mut count = 0;
    insta::glob!("..", "manifests/*.{yaml,json}", |path| {
        if path.to_string_lossy().ends_with(".config.yaml") {
            return;
        }
        count += 1;
        let out = render_file(path, None);
        let restore = out.restore.clone().expect("iptables mode writes a payload");
        iptables_dump::check_rule_jumps(&restore)
            .unwrap_or_else(|e| panic!("{}: {e}\n{restore}", path.display()));
        insta::assert_snapshot!("restore", restore);
        insta::assert_snapshot!("save", out.save);
    });
    assert!(count >= 8, "only {count} manifest sets");
}

#[test]
fn ipvs_rules_for_every_manifest_set() {
    let mut count = 0;
    insta::glob!("..", "manifests/*.{yaml,json}", |path| {
        if path.to_string_lossy().ends_with(".config.yaml") {
            return;
        }
        count += 1;
        let out = render_file(path, Some(Mode::Ipvs));
        insta::assert_snapshot!("ipvs", out.default_output());
    });
    assert!(count >= 8, "only {count} manifest sets");
}

/// The same manifest sets in nftables mode: the `nft -f` transaction of one
/// full sync (`kpsim rules --mode nftables`) and the node's ruleset
/// afterwards (`--format list`), with consistency checks on the loaded
/// table: every service and endpoint chain is used, and every endpoint
/// chain ends by DNATing to the endpoint its name carries.
#[test]
fn nftables_rules_for_every_manifest_set() {
    let mut count = 0;
    insta::glob!("..", "manifests/*.{yaml,json}", |path| {
        if path.to_string_lossy().ends_with(".config.yaml") {
            return;
        }
        count += 1;
        let out = render_file(path, Some(Mode::Nftables));
        let tx = out
            .nft_transaction
            .clone()
            .expect("nftables mode writes a transaction");
        let list = out
            .nft_list
            .clone()
            .expect("nftables mode lists its ruleset");
        check_nftables_listing(&list).unwrap_or_else(|e| panic!("{}: {e}\n{list}", path.display()));
        insta::assert_snapshot!("nftables", tx);
        insta::assert_snapshot!("nft-list", list);
    });
    assert!(count >= 8, "only {count} manifest sets");
}

/// Loads `listing` into a fresh nftables model (the listing is valid `nft
/// -f` input) and checks kube-proxy's chains.
fn check_nftables_listing(listing: &str) -> Result<(), String> {
    use sim::nftables::{Ruleset, Stmt};
    let mut rs = Ruleset::new();
    rs.apply(listing, sim::time::Instant::ZERO)
        .map_err(|e| format!("the listing does not load back: {e}"))?;
    let table = rs
        .tables()
        .find(|t| t.name() == "kube-proxy")
        .ok_or("no kube-proxy table")?;
    for c in table.chains() {
        let name = c.name();
        let per_service = ["service-", "external-", "local-", "firewall-", "endpoint-"]
            .iter()
            .any(|p| name.starts_with(p))
            && name.contains('/');
        if per_service && table.chain_uses(name) == 0 {
            return Err(format!("chain {name} is not used"));
        }
        if let Some(ep) = name
            .strip_prefix("endpoint-")
            .and_then(|n| n.split("__").nth(1))
        {
            let last = c.rules().last().ok_or(format!("{name} is empty"))?;
            let Some(Stmt::Nat(n)) = last.stmts().last() else {
                return Err(format!("{name} does not end in dnat: {last}"));
            };
            // Chain names write `ADDR/PORT`, IPv6 colons as dots.
            let addr = n.addr.to_string().replace(':', ".");
            let got = match n.port {
                Some(p) => format!("{addr}/{p}"),
                None => addr,
            };
            if got != ep {
                return Err(format!("{name} DNATs to {got}"));
            }
        }
    }
    Ok(())
}
