//! The scenario file format, as written (first stage of parse-then-resolve).
//!
//! Every struct refuses unknown fields, so a typo is an error with the line
//! and column serde_yaml reports, never a silently ignored setting. Values
//! stay close to the text here; [`super::plan`] checks that they make sense
//! together (pods on existing nodes, unique IPs, …).

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The default seed (`--seed` overrides it).
    #[serde(default)]
    pub seed: u64,
    /// Modes to run the scenario in; default: the config's mode.
    #[serde(default)]
    pub modes: Vec<String>,
    /// A KubeProxyConfiguration body (kept as YAML, parsed by the proxier's
    /// strict config loader).
    #[serde(default)]
    pub config: Option<serde_yaml::Value>,
    pub cluster: Cluster,
    /// Verbatim Kubernetes manifests (Services, EndpointSlices).
    #[serde(default)]
    pub objects: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    #[serde(default)]
    pub clients: Vec<ClientSpec>,
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancerSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub ip: String,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub node: String,
    /// Default: the next free address of the node's pod CIDR.
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Listening ports: a number, or `{name, port, protocol}`.
    #[serde(default)]
    pub ports: Vec<PodPortSpec>,
    #[serde(default = "default_true")]
    pub ready: bool,
}

/// `8080` or `{name: http, port: 8080, protocol: TCP}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PodPortSpec {
    Number(u16),
    Full {
        #[serde(default)]
        name: Option<String>,
        port: u16,
        #[serde(default)]
        protocol: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSpec {
    pub name: String,
    pub ip: String,
}

/// A cloud load balancer: its IP (and port) forward to a Service's NodePort
/// on the nodes. With `preserveClientIP: false` it proxies (the node sees
/// the LB as the source).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSpec {
    pub name: String,
    pub ip: String,
    /// `namespace/name` of the LoadBalancer Service it fronts.
    pub service: String,
    #[serde(default = "default_true", rename = "preserveClientIP")]
    pub preserve_client_ip: bool,
}

/// One step of the timeline. Exactly one action, optionally with `expect`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub name: Option<String>,
    /// Send traffic.
    pub traffic: Option<TrafficSpec>,
    /// Create or replace objects (verbatim manifests).
    pub apply: Option<Vec<serde_yaml::Value>>,
    /// Delete objects: `{kind, namespace, name}`.
    pub delete: Option<Vec<ObjectRefSpec>>,
    /// Change a pod: readiness, deletion (terminating), relabel.
    pub pod: Option<PodChangeSpec>,
    /// A node goes down or comes back.
    pub node: Option<NodeChangeSpec>,
    /// Restart kube-proxy on a node.
    pub restart: Option<RestartSpec>,
    /// Advance virtual time, e.g. `2s`, `1m30s`.
    pub advance: Option<String>,
    /// Close connections left open by earlier traffic steps.
    pub close: Option<CloseSpec>,
    pub expect: Option<ExpectSpec>,
    /// Run this step only in these modes: for behaviour that genuinely
    /// differs by mode (the scenario's description says why).
    #[serde(default)]
    pub modes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficSpec {
    /// A client, pod or node name.
    pub from: String,
    /// `ip:port`, `node-name:port`, `lb-name[:port]` or `service-ns/name:port`.
    pub to: String,
    #[serde(default)]
    pub protocol: Option<String>,
    /// Number of new connections (TCP) or flows (UDP); default 1.
    #[serde(default)]
    pub connections: Option<u32>,
    /// Keep them open (for later `openConnectionsAlive` checks).
    #[serde(default)]
    pub keep_open: bool,
    /// Reuse one source port for every flow (UDP "same client socket").
    #[serde(default)]
    pub same_source_port: bool,
    /// Label the open connections for a later `close`/expectation, and
    /// this step's flows for a later `keptBackends`.
    #[serde(default)]
    pub label: Option<String>,
    /// Source ports from this one up (connection `i` uses `sourcePort + i`)
    /// instead of random ephemeral ones, so a later step can send the very
    /// same flows again.
    #[serde(default)]
    pub source_port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRefSpec {
    pub kind: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodChangeSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub ready: Option<bool>,
    /// `true`: the pod is being deleted (terminating, still serving until
    /// `ready: false` is also set or it is removed).
    #[serde(default)]
    pub terminating: Option<bool>,
    /// `true`: the pod is gone.
    #[serde(default)]
    pub deleted: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeChangeSpec {
    pub name: String,
    pub down: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartSpec {
    /// The node whose kube-proxy restarts.
    pub kube_proxy: String,
    /// KubeProxyConfiguration fields merged over the scenario's for this
    /// node from this restart on (e.g. another `ipvs.scheduler`).
    #[serde(default)]
    pub config: Option<serde_yaml::Value>,
    /// The proxy mode the node's kube-proxy comes back in (a mode switch:
    /// at start-up it removes the other modes' rules, as upstream does).
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloseSpec {
    /// Which labelled connections to close (default: all open ones).
    #[serde(default)]
    pub label: Option<String>,
}

/// What a step expects. Each field is checked when present.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectSpec {
    /// Fraction of this step's connections per pod, e.g. `{web-1: 0.5}`.
    #[serde(default)]
    pub backends: Option<BTreeMap<String, f64>>,
    /// Allowed absolute difference per backend fraction (default 0.1).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Every connection from one source reached one pod.
    #[serde(default)]
    pub sticky: Option<bool>,
    /// The source address every reached pod saw: an IP, or a node name
    /// (its IP), or `client` (the sender's own IP).
    #[serde(default)]
    pub source_seen_by_pod: Option<String>,
    /// How many connections were dropped / rejected / succeeded.
    #[serde(default)]
    pub dropped: Option<u32>,
    #[serde(default)]
    pub rejected: Option<u32>,
    #[serde(default)]
    pub succeeded: Option<u32>,
    /// Connections kept open so far still carry traffic (or all failed).
    #[serde(default)]
    pub open_connections_alive: Option<bool>,
    /// Conntrack entries on a node: `{node-a: 3}`.
    #[serde(default)]
    pub conntrack_entries: Option<BTreeMap<String, usize>>,
    /// The step's connections reached these pods in this repeating order
    /// (connection `i` reached `cycle[i % len]`).
    #[serde(default)]
    pub cycle: Option<Vec<String>>,
    /// A node's IPVS real servers for one virtual service: exactly these,
    /// with these weights.
    #[serde(default)]
    pub real_servers: Option<RealServersSpec>,
    /// Flows that reached the same pod as the same flow (source address
    /// and port) in an earlier labelled step.
    #[serde(default)]
    pub kept_backends: Option<KeptBackendsSpec>,
    /// Which mode's kube-proxy rules each node's kernel holds now:
    /// `{node-a: nftables}` (`iptables`, `nftables` or `none`).
    #[serde(default)]
    pub kube_proxy_rules: Option<BTreeMap<String, String>>,
}

/// `realServers: {node, service: IP:PORT, protocol, weights: {pod: weight}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RealServersSpec {
    pub node: String,
    /// The virtual service, `IP:PORT` (`[V6]:PORT`).
    pub service: String,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Real servers by pod name (or `IP:PORT` when no pod has the address).
    pub weights: BTreeMap<String, u32>,
}

/// `keptBackends: {since: LABEL, atLeast: 0.7}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeptBackendsSpec {
    /// The `label` of the earlier traffic step.
    pub since: String,
    /// The smallest fraction of flows that must have kept their pod.
    pub at_least: f64,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn default_true() -> bool {
    true
}
