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
        // `[primary]` becomes the primary IP as a host CIDR (kube-proxy's
        // server does this before the proxier sees the list); a loopback
        // or unknown primary IP leaves the list empty: match all.
        let expanded: Vec<IpNet> = if entries.len() == 1 && entries[0] == "primary" {
            primary_ip
                .filter(|ip| !ip.is_loopback())
                .map(IpNet::from)
                .into_iter()
                .collect()
        } else {
            entries
                .iter()
                .filter_map(|e| e.parse::<IpNet>().ok())
                .map(|n| n.trunc())
                .collect()
        };
        let mut cidrs = Vec::new();
        for cidr in expanded
            .into_iter()
            .filter(|c| IpFamily::of(&c.addr()) == family)
        {
            if cidr.prefix_len() == 0 {
                // A zero CIDR means every address; later entries are moot.
                return NodePortAddresses {
                    family,
                    cidrs: Vec::new(),
                };
            }
            cidrs.push(cidr);
        }
        NodePortAddresses { family, cidrs }
    }

    /// NodePorts answer on every local address.
    pub fn match_all(&self) -> bool {
        self.cidrs.is_empty()
    }

    /// Whether loopback is among the NodePort addresses (IPv4 only).
    pub fn contains_ipv4_loopback(&self) -> bool {
        if self.family != IpFamily::V4 {
            return false;
        }
        let loopback_net: IpAddr = [127, 0, 0, 0].into();
        self.match_all()
            || self
                .cidrs
                .iter()
                .any(|c| c.addr().is_loopback() || c.contains(&loopback_net))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn npa(entries: &[&str], primary: Option<&str>) -> NodePortAddresses {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        NodePortAddresses::new(IpFamily::V4, &entries, primary.map(|p| p.parse().unwrap()))
    }

    #[test]
    fn empty_and_zero_cidr_match_all() {
        assert!(npa(&[], None).match_all());
        assert!(npa(&["0.0.0.0/0", "10.0.0.0/8"], None).match_all());
        assert!(npa(&["fd00::/64"], None).match_all(), "other family only");
        assert!(npa(&[], None).contains_ipv4_loopback());
    }

    #[test]
    fn primary_expands_to_the_node_ip() {
        let n = npa(&["primary"], Some("192.168.0.2"));
        assert!(!n.match_all());
        let ips: Vec<IpAddr> = vec![
            "127.0.0.1".parse().unwrap(),
            "192.168.0.2".parse().unwrap(),
            "10.0.0.9".parse().unwrap(),
        ];
        assert_eq!(
            n.node_ips(&ips),
            vec!["192.168.0.2".parse::<IpAddr>().unwrap()]
        );
        assert!(!n.contains_ipv4_loopback());
        assert!(npa(&["127.0.0.0/8"], None).contains_ipv4_loopback());
    }
}
