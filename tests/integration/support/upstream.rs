//! Replaying upstream kube-proxy's iptables tests from the fixtures in
//! `tests/fixtures/upstream/iptables/` (see that folder's README for the
//! format and for the fake proxier's settings these mirror).

use proxier::provider::Provider;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxier::clock::Timestamp;
use proxier::config;
use proxier::dataplane::recording::{RecordingIptables, RecordingKernel};
use proxier::dataplane::{RulePosition, Table};
use proxier::iptables::{Options, Proxier, SyncStats};
use proxier::k8s::{self, IpFamily, NamespacedName};
use proxier::node::NodeInfo;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fixture {
    pub node: FixtureNode,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    pub config: serde_yaml::Value,
    pub kernel: Kernel,
    #[serde(default)]
    pub fake_overrides: FakeOverrides,
    #[serde(default)]
    pub syncs: Vec<Sync>,
    /// Per-case data of fixtures that are tables of cases.
    #[serde(default)]
    pub cases: serde_yaml::Value,
}

#[derive(Debug, Deserialize)]
pub struct FixtureNode {
    pub name: String,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Deserialize)]
pub struct Interface {
    pub addrs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kernel {
    pub random_fully: bool,
    #[serde(rename = "conntrackTCPLiberal")]
    pub conntrack_tcp_liberal: bool,
    #[serde(default)]
    pub nfacct_counters: BTreeMap<String, bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeOverrides {
    pub masquerade_mark: Option<String>,
    pub sync_period: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sync {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub apply: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub delete: Vec<ObjectRef>,
    #[serde(default)]
    pub force_full_sync: bool,
    pub full_sync: Option<bool>,
    pub expect: Option<String>,
    #[serde(default)]
    pub check_consistency: bool,
    #[serde(default)]
    pub expect_chains: Vec<ExpectChain>,
    pub metrics: Option<serde_yaml::Value>,
    #[serde(default)]
    pub inject_rules: Vec<InjectRule>,
    #[serde(default)]
    pub expect_restore_failure: bool,
    pub expect_after: Option<serde_yaml::Value>,
    #[serde(rename = "setLastIPTablesCleanup")]
    pub set_last_iptables_cleanup: Option<String>,
    pub assert: Option<serde_yaml::Value>,
}

pub use super::flows::ObjectRef;

#[derive(Debug, Deserialize)]
pub struct ExpectChain {
    pub table: String,
    pub chain: String,
    pub rules: String,
}

#[derive(Debug, Deserialize)]
pub struct InjectRule {
    pub table: String,
    pub chain: String,
    pub rule: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountCase {
    pub name: String,
    pub expected_filter_rules: usize,
    pub expected_nat_rules: usize,
    pub apply: Vec<serde_yaml::Value>,
}

impl Fixture {
    pub fn count_cases(&self) -> Vec<CountCase> {
        serde_yaml::from_value(self.cases.clone()).expect("rule-count cases")
    }
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/iptables")
}

/// A fixture file as plain YAML.
pub fn load_value(name: &str) -> serde_yaml::Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture that replays a proxier (it has a node, a config and syncs or
/// rule-count cases).
pub fn load(name: &str) -> Fixture {
    serde_yaml::from_value(load_value(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every fixture file name, sorted.
pub fn all_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

fn table(name: &str) -> Table {
    match name {
        "nat" => Table::Nat,
        "filter" => Table::Filter,
        "mangle" => Table::Mangle,
        "raw" => Table::Raw,
        other => panic!("unknown table {other}"),
    }
}

/// A proxier set up like upstream's `NewFakeProxier`, with its kernel.
pub struct Replay {
    pub proxier: Proxier,
    pub kernel: RecordingKernel,
    pub now: Timestamp,
    pub family: IpFamily,
}

impl Replay {
    pub fn new(f: &Fixture) -> Replay {
        let mut config_value = f.config.clone();
        let family = match config_value.get("ipFamily").and_then(|v| v.as_str()) {
            Some("IPv6") => IpFamily::V6,
            _ => IpFamily::V4,
        };
        // `ipFamily` and `featureGates: {…}` describe the fake, not the file.
        if let Some(map) = config_value.as_mapping_mut() {
            map.remove("ipFamily");
        }
        let text = serde_yaml::to_string(&config_value).unwrap();
        let config = config::load_str("fixture config", &text).expect("fixture config");

        let mut node = NodeInfo::new(&f.node.name, f.node.ips.clone());
        if !f.interfaces.is_empty() {
            node.interface_addresses = f
                .interfaces
                .iter()
                .flat_map(|i| i.addrs.iter())
                .map(|a| a.split('/').next().unwrap().parse().unwrap())
                .collect();
        }
        let mut kernel = RecordingKernel::default();
        if !f.kernel.random_fully {
            kernel.iptables_v4 = RecordingIptables::new(IpFamily::V4).without_random_fully();
            kernel.iptables_v6 = RecordingIptables::new(IpFamily::V6).without_random_fully();
        }
        kernel.nfacct.unavailable = f
            .kernel
            .nfacct_counters
            .iter()
            .filter(|(_, present)| !**present)
            .map(|(name, _)| name.clone())
            .chain(
                [
                    "ct_state_invalid_dropped_pkts",
                    "localhost_nps_accepted_pkts",
                ]
                .into_iter()
                .filter(|n| !f.kernel.nfacct_counters.contains_key(*n))
                .map(String::from),
            )
            .collect();
        kernel.sysctl.values.insert(
            "net/netfilter/nf_conntrack_tcp_be_liberal".into(),
            i64::from(f.kernel.conntrack_tcp_liberal),
        );

        let mut options = Options::from_config(&config, family, &node);
        // The fake proxier hard-codes these (README: "Surprises").
        if let Some(mark) = &f.fake_overrides.masquerade_mark {
            options.masquerade_mark = mark.clone();
        }
        if let Some(p) = &f.fake_overrides.sync_period {
            options.sync_period = config::duration::parse(p).unwrap();
        }
        // The fake keeps localhostNodePorts as configured (NewProxier would
        // clear it for IPv6 or when nodePortAddresses excludes loopback).
        options.localhost_node_ports = config.localhost_node_ports;
        let mut proxier = Proxier::new(family, node, options, &mut kernel).expect("proxier");
        proxier.on_services_synced();
        proxier.on_endpoint_slices_synced();
        Replay {
            proxier,
            kernel,
            now: Timestamp::ZERO,
            family,
        }
    }

    /// Delivers the objects of one sync step (as informer events).
    pub fn deliver(&mut self, apply: &[serde_yaml::Value], delete: &[ObjectRef]) {
        for value in apply {
            let text = serde_yaml::to_string(value).unwrap();
            let m = k8s::load_str("fixture object", &text).expect("fixture object");
            for s in &m.services {
                self.proxier.on_service(&s.name, Some(s));
            }
            for s in &m.endpoint_slices {
                self.proxier.on_endpoint_slice(&s.name, Some(s));
            }
        }
        for r in delete {
            let name = NamespacedName::new(&r.namespace, &r.name);
            match r.kind.as_str() {
                "Service" => self.proxier.on_service(&name, None),
                "EndpointSlice" => self.proxier.on_endpoint_slice(&name, None),
                other => panic!("cannot delete kind {other}"),
            };
        }
    }

    pub fn inject(&mut self, rules: &[InjectRule]) {
        let family = self.family;
        for r in rules {
            let args: Vec<String> = r
                .rule
                .strip_prefix(&format!("-A {} ", r.chain))
                .unwrap_or(&r.rule)
                .split(' ')
                .map(String::from)
                .collect();
            proxier::dataplane::Kernel::iptables(&mut self.kernel, family)
                .ensure_rule(RulePosition::Append, table(&r.table), &r.chain, &args)
                .expect("inject rule");
        }
    }

    /// One sync at the current virtual time.
    pub fn sync(&mut self) -> Result<SyncStats, proxier::dataplane::DataplaneError> {
        // Upstream's syncs run a moment apart; keep virtual time moving.
        self.now = self.now.plus(Duration::from_millis(1));
        self.proxier.sync(self.now, &mut self.kernel)
    }

    pub fn last_payload(&self) -> String {
        let ipt = match self.family {
            IpFamily::V4 => &self.kernel.iptables_v4,
            IpFamily::V6 => &self.kernel.iptables_v6,
        };
        ipt.last_restore().unwrap_or("").to_string()
    }

    pub fn chain_exists(&mut self, table_name: &str, chain: &str) -> bool {
        let family = self.family;
        let save = proxier::dataplane::Kernel::iptables(&mut self.kernel, family)
            .save(table(table_name))
            .unwrap();
        proxier::dataplane::chains_in_save(&save)
            .iter()
            .any(|c| c == chain)
    }
}
