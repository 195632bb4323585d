//! The node a proxier runs on: its name, labels and addresses.
//!
//! kube-proxy identifies its node by name (`hostnameOverride` or the host
//! name) and takes its IPs from the Node object's `status.addresses`
//! (`InternalIP` first, then `ExternalIP`; the first of each family is that
//! family's primary IP). The interface addresses stand for what
//! `net.InterfaceAddrs()` lists on the host, which `nodePortAddresses`
//! filters; they include loopback.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::k8s::{IpFamily, Node};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The node's IPs, primary first.
    pub ips: Vec<IpAddr>,
    /// Every address on the host's interfaces, in interface order.
    pub interface_addresses: Vec<IpAddr>,
    pub pod_cidrs: Vec<IpNet>,
}

impl NodeInfo {
    /// A node known only by name and IPs; its interfaces are loopback plus
    /// those IPs.
    pub fn new(name: impl Into<String>, ips: Vec<IpAddr>) -> Self {
        let mut interface_addresses: Vec<IpAddr> = vec![[127, 0, 0, 1].into()];
        interface_addresses.extend(ips.iter().copied());
        interface_addresses.push(std::net::Ipv6Addr::LOCALHOST.into());
        NodeInfo {
            name: name.into(),
            labels: BTreeMap::new(),
            ips,
            interface_addresses,
            pod_cidrs: Vec::new(),
        }
    }

    /// From a Node object (IPs from `status.addresses`).
    pub fn from_node(node: &Node) -> Self {
        let mut info = NodeInfo::new(node.name.clone(), node.ips());
        info.labels = node.labels.clone();
        info.pod_cidrs = node.pod_cidrs.clone();
        info
    }

    /// The first IP of `family`.
    pub fn primary_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.ips
            .iter()
            .find(|ip| IpFamily::of(ip) == family)
            .copied()
    }
}
