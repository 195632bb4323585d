//! Loading and replaying the IPVS fixtures in `tests/fixtures/upstream/ipvs/`
//! (see that folder's README for the format and for the fake proxier these
//! settings mirror): a recording kernel set up like upstream's fakes, a
//! proxier set up like `NewFakeProxier`, and the steps a fixture takes.
//! Expectations are checked by `upstream_ipvs.rs`.

use proxier::provider::Provider;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxier::clock::Timestamp;
use proxier::config;
use proxier::dataplane::recording::{RecordingIptables, RecordingKernel};
use proxier::dataplane::{DataplaneError, Ipvs, RealServer, Table, VirtualServer};
use proxier::ipvs::{Options, Proxier, SyncStats};
use proxier::k8s::{self, IpFamily, NamespacedName, Protocol};
use proxier::node::NodeInfo;
use serde::Deserialize;
use serde_yaml::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fixture {
    pub upstream: String,
    /// For readers (provenance and intent); not checked.
    #[allow(dead_code)]
    pub source: String,
    #[allow(dead_code)]
    pub description: String,
    pub node: FixtureNode,
    /// The fake netlink handle's devices and their addresses.
    #[serde(default)]
    pub netlink: BTreeMap<String, Vec<IpAddr>>,
    /// The fake network interfacer (used with CIDR nodePortAddresses).
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    pub config: Value,
    pub kernel: KernelSettings,
    #[serde(default)]
    pub fake_overrides: FakeOverrides,
    pub syncs: Vec<Step>,
    #[allow(dead_code)]
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureNode {
    pub name: String,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// For readers; only the addresses matter.
    #[allow(dead_code)]
    pub name: String,
    pub addrs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KernelSettings {
    pub random_fully: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FakeOverrides {
    pub masquerade_mark: Option<String>,
    /// `none`: upstream's `NewNoOpLocalDetector`.
    pub local_detector: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub apply: Vec<Value>,
    #[serde(default)]
    pub delete: Vec<ObjectRef>,
    /// A new proxier on the same kernel, fed every object so far.
    #[serde(default)]
    pub restart: bool,
    #[serde(default)]
    pub kernel_actions: Vec<Value>,
    /// Time passes (then the proxier's housekeeping runs).
    pub advance: Option<String>,
    #[serde(default = "yes")]
    pub sync: bool,
    pub expect: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/ipvs")
}

/// A fixture file as plain YAML.
pub fn load_value(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

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

/// `TCP`, `tcp`, … (upstream's protocols are strings compared loosely).
pub fn protocol(text: &str) -> Protocol {
    match text.to_ascii_uppercase().as_str() {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        other => panic!("unknown protocol {other}"),
    }
}

/// Splits `ip:port` / `[ip]:port`.
pub fn host_port(text: &str) -> (IpAddr, u16) {
    let (host, port) = text.rsplit_once(':').expect("ip:port");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host.parse().expect("ip"), port.parse().expect("port"))
}

/// `ip:port/PROTO` → a key-only virtual server.
pub fn vs_from_key(text: &str) -> VirtualServer {
    let (addr, proto) = text.rsplit_once('/').expect("ip:port/PROTO");
    let (address, port) = host_port(addr);
    VirtualServer {
        address,
        protocol: protocol(proto),
        port,
        scheduler: String::new(),
        flags: Default::default(),
        timeout: 0,
    }
}

/// A proxier set up like upstream's `NewFakeProxier`, with its kernel.
pub struct Replay {
    pub proxier: Proxier,
    pub kernel: RecordingKernel,
    pub now: Timestamp,
    pub family: IpFamily,
    pub last_stats: Option<SyncStats>,
    node: NodeInfo,
    options: Options,
    objects: BTreeMap<(String, String, String), Value>,
}

impl Replay {
    pub fn new(f: &Fixture) -> Replay {
        let mut config_value = f.config.clone();
        let family = match config_value.get("ipFamily").and_then(|v| v.as_str()) {
            Some("IPv6") => IpFamily::V6,
            _ => IpFamily::V4,
        };
        if let Some(map) = config_value.as_mapping_mut() {
            map.remove("ipFamily");
        }
        let text = serde_yaml::to_string(&config_value).unwrap();
        let config = config::load_str("fixture config", &text).expect("fixture config");

        let mut node = NodeInfo::new(&f.node.name, f.node.ips.clone());
        // The fake network interfacer starts empty.
        node.interface_addresses = f
            .interfaces
            .iter()
            .flat_map(|i| i.addrs.iter())
            .map(|a| a.split('/').next().unwrap().parse().unwrap())
            .collect();

        let mut kernel = RecordingKernel::default();
        if !f.kernel.random_fully {
            kernel.iptables_v4 = RecordingIptables::new(IpFamily::V4).without_random_fully();
            kernel.iptables_v6 = RecordingIptables::new(IpFamily::V6).without_random_fully();
        }
        for (dev, ips) in &f.netlink {
            kernel.addresses.set_local_addresses(dev, ips);
        }

        let mut options = Options::from_config(&config, family, &node);
        if let Some(mark) = &f.fake_overrides.masquerade_mark {
            options.masquerade_mark = mark.clone();
        }
        if f.fake_overrides.local_detector.as_deref() == Some("none") {
            options.local_detector = None;
        }
        let proxier = Self::make_proxier(family, &node, &options, &mut kernel, Timestamp::ZERO);
        Replay {
            proxier,
            kernel,
            now: Timestamp::ZERO,
            family,
            last_stats: None,
            node,
            options,
            objects: BTreeMap::new(),
        }
    }

    fn make_proxier(
        family: IpFamily,
        node: &NodeInfo,
        options: &Options,
        kernel: &mut RecordingKernel,
        now: Timestamp,
    ) -> Proxier {
        let mut p =
            Proxier::new(family, node.clone(), options.clone(), kernel, now).expect("proxier");
        p.on_services_synced();
        p.on_endpoint_slices_synced();
        p
    }

    /// Delivers objects as informer events, remembering them for restarts.
    pub fn deliver(&mut self, apply: &[Value], delete: &[ObjectRef]) {
        for value in apply {
            let key = (
                value["kind"].as_str().unwrap_or("").to_string(),
                value["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string(),
                value["metadata"]["name"].as_str().unwrap_or("").to_string(),
            );
            self.objects.insert(key, value.clone());
            self.send(value);
        }
        for r in delete {
            self.objects
                .remove(&(r.kind.clone(), r.namespace.clone(), r.name.clone()));
            let name = NamespacedName::new(&r.namespace, &r.name);
            match r.kind.as_str() {
                "Service" => self.proxier.on_service(&name, None),
                "EndpointSlice" => self.proxier.on_endpoint_slice(&name, None),
                other => panic!("cannot delete kind {other}"),
            };
        }
    }

    fn send(&mut self, value: &Value) {
        let text = serde_yaml::to_string(value).unwrap();
        let m = k8s::load_str("fixture object", &text).expect("fixture object");
        for s in &m.services {
            self.proxier.on_service(&s.name, Some(s));
        }
        for s in &m.endpoint_slices {
            self.proxier.on_endpoint_slice(&s.name, Some(s));
        }
    }

    /// kube-proxy restarts: a new proxier, the same kernel, every object.
    pub fn restart(&mut self) {
        self.proxier = Self::make_proxier(
            self.family,
            &self.node,
            &self.options,
            &mut self.kernel,
            self.now,
        );
        let objects: Vec<Value> = self.objects.values().cloned().collect();
        for o in &objects {
            self.send(o);
        }
    }

    /// What traffic or another actor does to the kernel between syncs.
    pub fn kernel_action(&mut self, action: &Value) {
        let rs_of = |v: &Value| {
            let (ip, port) = host_port(v["realServer"].as_str().unwrap());
            (vs_from_key(v["virtualServer"].as_str().unwrap()), ip, port)
        };
        if let Some(v) = action.get("setRealServerWeight") {
            let (vs, ip, port) = rs_of(v);
            let weight = v["weight"].as_i64().unwrap() as i32;
            self.kernel
                .ipvs
                .update_real_server(&vs, &RealServer::new(ip, port, weight))
                .expect("set weight");
        } else if let Some(v) = action.get("setConnections") {
            let (vs, ip, port) = rs_of(v);
            let (a, i) = (
                v["active"].as_u64().unwrap(),
                v["inactive"].as_u64().unwrap(),
            );
            assert!(
                self.kernel
                    .ipvs
                    .set_connections(&vs.key(), ip, port, a as u32, i as u32),
                "no real server {ip}:{port} in {vs}"
            );
        } else {
            panic!("unknown kernel action {action:?}");
        }
    }

    /// Time passes; the proxier's housekeeping runs.
    pub fn advance(&mut self, by: Duration) -> Vec<DataplaneError> {
        self.now = self.now.plus(by);
        self.proxier.housekeeping(self.now, &mut self.kernel)
    }

    /// One sync a moment after the last.
    pub fn sync(&mut self) -> Result<SyncStats, DataplaneError> {
        self.now = self.now.plus(Duration::from_millis(1));
        self.kernel.ipvs.log.clear();
        self.kernel.ipset.log.clear();
        self.kernel.addresses.log.clear();
        let stats = self.proxier.sync(self.now, &mut self.kernel)?;
        self.last_stats = Some(stats.clone());
        Ok(stats)
    }

    /// The rules of `chain` as upstream's `getRules` collects them: the nat
    /// table's, then the filter table's, from the fake's saved state.
    pub fn chain_rules(&mut self, chain: &str) -> Vec<String> {
        let ipt = match self.family {
            IpFamily::V4 => &mut self.kernel.iptables_v4,
            IpFamily::V6 => &mut self.kernel.iptables_v6,
        };
        let mut rules = Vec::new();
        for table in [Table::Nat, Table::Filter] {
            let save = proxier::dataplane::Iptables::save(ipt, table).unwrap();
            let prefix = format!("-A {chain} ");
            rules.extend(
                save.lines()
                    .filter(|l| l.starts_with(&prefix))
                    .map(String::from),
            );
        }
        rules
    }
}

/// Splits a rule into words, keeping `"quoted text"` as one word.
pub fn words(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in rule.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The word after `flag` in a rule (`-j`, `--match-set`, `-s`).
pub fn after(rule: &str, flag: &str) -> Option<String> {
    let w = words(rule);
    w.iter()
        .position(|x| x == flag)
        .and_then(|i| w.get(i + 1).cloned())
}
