//! Which node addresses NodePorts answer on (upstream `NodePortAddresses`).
//!
//! An empty `nodePortAddresses` (for this family) means every local address;
//! otherwise only the node's addresses inside the listed CIDRs. `primary`
//! stands for the node's primary IP of the family.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::k8s::IpFamily;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortAddresses {
    family: IpFamily,
    cidrs: Vec<IpNet>,
}

impl NodePortAddresses {
    /// `entries` as validated by the config (`primary` or CIDRs);
    /// `primary_ip` is the node's primary IP of `family`, if known.
    pub fn new(family: IpFamily, entries: &[String], primary_ip: Option<IpAddr>) -> Self {
        let mut cidrs = Vec::new();
        for entry in entries {
            let cidr = if entry == "primary" {
                primary_ip.map(IpNet::from)
            } else {
                entry.parse::<IpNet>().ok().map(|n| n.trunc())
            };
            if let Some(cidr) = cidr.filter(|c| IpFamily::of(&c.addr()) == family) {
                if !cidrs.contains(&cidr) {
                    cidrs.push(cidr);
                }
            }
        }
        NodePortAddresses { family, cidrs }
    }

    /// NodePorts answer on every local address.
    pub fn match_all(&self) -> bool {
        self.cidrs.is_empty()
    }

    /// Whether 127.0.0.1 is one of the NodePort addresses (IPv4 only).
    pub fn contains_ipv4_loopback(&self) -> bool {
        if self.family != IpFamily::V4 {
            return false;
        }
        let loopback: IpAddr = [127, 0, 0, 1].into();
        self.match_all() || self.cidrs.iter().any(|c| c.contains(&loopback))
    }

    /// The node's addresses (interface order) that NodePorts answer on.
    pub fn node_ips(&self, interface_addresses: &[IpAddr]) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for ip in interface_addresses {
            if IpFamily::of(ip) == self.family
                && self.cidrs.iter().any(|c| c.contains(ip))
                && !out.contains(ip)
            {
                out.push(*ip);
            }
        }
        out
    }
}
