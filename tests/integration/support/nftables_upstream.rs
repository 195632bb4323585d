//! Replaying upstream kube-proxy's nftables tests from the fixtures in
//! `tests/fixtures/upstream/nftables/` (see that folder's README): loading
//! them, and a proxier set up like upstream's `NewFakeProxier` over the
//! stateful fake `nft`.

use proxier::provider::Provider;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxier::clock::Timestamp;
use proxier::config;
use proxier::dataplane::recording::RecordingKernel;
use proxier::dataplane::{
    Addresses, Conntrack, DataplaneError, Ipset, Iptables, Ipvs, Kernel, Nfacct, Nftables, Sysctl,
};
use proxier::k8s::{self, IpFamily, NamespacedName};
use proxier::local_detect::LocalDetector;
use proxier::nftables::{Options, Proxier, SyncStats};
use proxier::node::NodeInfo;
use proxier::nodeport_addresses::NodePortAddresses;
use serde::Deserialize;

use super::nft_fake::NftFake;

/// `fake_proxier.yaml`: upstream's `NewFakeProxier`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeProxier {
    pub node_name: String,
    pub interface_addresses: Vec<IpAddr>,
    #[serde(rename = "tracerNodeIPs")]
    pub tracer_node_ips: Vec<String>,
    pub masquerade_mark: String,
    #[serde(rename = "IPv4")]
    pub ipv4: FamilySettings,
    #[serde(rename = "IPv6")]
    pub ipv6: FamilySettings,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilySettings {
    #[serde(rename = "nodeIP")]
    pub node_ip: IpAddr,
    pub config: serde_yaml::Value,
    #[serde(rename = "serviceCIDRs")]
    pub service_cidrs: Vec<String>,
}

/// What a test changes on the fake proxier before its first sync.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FakeChanges {
    pub masquerade_all: Option<bool>,
    /// `false`: `NewNoOpLocalDetector()`.
    pub local_detector: Option<bool>,
    pub node_port_addresses: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // upstream, source, description and notes document the case
pub struct Fixture {
    pub upstream: String,
    pub source: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "ipv4")]
    pub family: String,
    #[serde(default)]
    pub fake: FakeChanges,
    /// `nft.ParseDump(...)` before the first sync.
    pub initial_dump: Option<String>,
    /// The initial dump starts with upstream's `baseRules`.
    #[serde(default)]
    pub initial_dump_base_rules: bool,
    pub syncs: Vec<Sync>,
    #[serde(default)]
    pub notes: Vec<String>,
}

fn ipv4() -> String {
    "IPv4".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sync {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub apply: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub delete: Vec<ObjectRef>,
    /// Upstream's `ageStaleChains()` before this sync.
    #[serde(default)]
    pub age_stale_chains: bool,
    pub expect: Option<String>,
    #[serde(default)]
    pub expect_base_rules: bool,
    pub expect_operations: Option<usize>,
    /// Operations beyond those of a sync of an empty cluster.
    pub expect_operations_over_setup: Option<usize>,
    pub expect_stale_chains: Option<Vec<String>>,
    #[serde(default)]
    pub flows: Vec<Flow>,
    pub metrics: Option<Metrics>,
    pub expect_map_element: Option<MapElement>,
}

pub use super::flows::ObjectRef;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Flow {
    pub name: String,
    pub source: String,
    #[serde(default)]
    pub protocol: String,
    pub dest: String,
    pub port: u16,
    pub output: String,
    #[serde(default)]
    pub masq: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    pub no_local_endpoints_internal: usize,
    pub no_local_endpoints_external: usize,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapElement {
    pub map: String,
    pub key: String,
    pub present: bool,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/nftables")
}

pub fn read(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fake_proxier() -> FakeProxier {
    serde_yaml::from_str(&read("fake_proxier.yaml")).expect("fake_proxier.yaml")
}

/// Upstream's `baseRules` (IPv4 fake proxier, nothing configured).
pub fn base_rules() -> String {
    read("base_rules.nft")
}

pub fn load(name: &str) -> Fixture {
    serde_yaml::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every `test_*.yaml` fixture, sorted.
pub fn all_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("test_") && n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// A node whose only nftables is the stateful fake; the other interfaces
/// are recording fakes.
pub struct FakeKernel {
    pub nft: NftFake,
    pub rest: RecordingKernel,
}

impl Kernel for FakeKernel {
    fn iptables(&mut self, family: IpFamily) -> &mut dyn Iptables {
        self.rest.iptables(family)
    }
    fn nftables(&mut self) -> &mut dyn Nftables {
        &mut self.nft
    }
    fn conntrack(&mut self) -> &mut dyn Conntrack {
        self.rest.conntrack()
    }
    fn nfacct(&mut self) -> &mut dyn Nfacct {
        self.rest.nfacct()
    }
    fn sysctl(&mut self) -> &mut dyn Sysctl {
        self.rest.sysctl()
    }
    fn ipvs(&mut self) -> &mut dyn Ipvs {
        self.rest.ipvs()
    }
    fn ipset(&mut self) -> &mut dyn Ipset {
        self.rest.ipset()
    }
    fn addresses(&mut self) -> &mut dyn Addresses {
        self.rest.addresses()
    }
}

pub struct Replay {
    pub proxier: Proxier,
    pub kernel: FakeKernel,
    pub now: Timestamp,
    pub tracer_node_ips: Vec<String>,
}

impl Replay {
    pub fn new(f: &Fixture) -> Replay {
        let fake = fake_proxier();
        let (family, settings, nft_family) = match f.family.as_str() {
            "IPv6" => (IpFamily::V6, &fake.ipv6, "ip6"),
            _ => (IpFamily::V4, &fake.ipv4, "ip"),
        };
        let text = serde_yaml::to_string(&settings.config).unwrap();
        let config = config::load_str("fake_proxier.yaml", &text).expect("fake config");
        let mut node = NodeInfo::new(&fake.node_name, vec![settings.node_ip]);
        node.interface_addresses = fake.interface_addresses.clone();
        let mut options = Options::from_config(&config, family, &node);
        // The fake hard-codes its mark (README: the fake proxier).
        options.masquerade_mark = fake.masquerade_mark.clone();
        if let Some(all) = f.fake.masquerade_all {
            options.masquerade_all = all;
        }
        if f.fake.local_detector == Some(false) {
            options.local_detector = None::<LocalDetector>;
        }
        if let Some(npa) = &f.fake.node_port_addresses {
            options.node_port_addresses =
                NodePortAddresses::new(family, npa, Some(settings.node_ip));
        }
        let mut proxier = Proxier::new(family, node, options);
        proxier.on_service_cidrs(
            settings
                .service_cidrs
                .iter()
                .map(|c| c.parse().expect("service CIDR"))
                .collect(),
        );
        proxier.on_services_synced();
        proxier.on_endpoint_slices_synced();
        let mut nft = NftFake::new(nft_family, "kube-proxy");
        if let Some(dump) = &f.initial_dump {
            let text = if f.initial_dump_base_rules {
                format!("{}{dump}", base_rules())
            } else {
                dump.clone()
            };
            nft.parse_dump(&text).expect("initial dump");
        }
        Replay {
            proxier,
            kernel: FakeKernel {
                nft,
                rest: RecordingKernel::default(),
            },
            now: Timestamp::ZERO,
            tracer_node_ips: fake.tracer_node_ips,
        }
    }

    /// Delivers one sync step's objects as informer events.
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

    /// Upstream's `ageStaleChains()`: stale chains look two seconds older.
    pub fn age_stale_chains(&mut self) {
        self.now = self.now.plus(Duration::from_secs(2));
    }

    /// One sync, a moment after the previous one.
    pub fn sync(&mut self) -> Result<SyncStats, DataplaneError> {
        self.now = self.now.plus(Duration::from_millis(1));
        self.proxier.sync(self.now, &mut self.kernel)
    }
}
