//! Telling pod traffic from other traffic (upstream `LocalTrafficDetector`).
//!
//! Produces the match fragments upstream puts in its rules: for iptables
//! `-s CIDR` / `! -s CIDR` for the CIDR modes, `-i IFACE` / `! -i IFACE` for
//! the interface modes (a prefix gets iptables' `+` wildcard); for nftables
//! `ip saddr CIDR` / `ip saddr != CIDR` (`ip6` for IPv6) and `iifname IFACE` /
//! `iifname != IFACE` (a prefix gets nft's `*` wildcard). A detector that is
//! not implemented yields nothing and the rules that need it are left out,
//! as upstream does.

use crate::config::DetectLocal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDetector {
    if_local: String,
    if_not_local: String,
    if_local_nft: String,
    if_not_local_nft: String,
}

impl LocalDetector {
    pub fn new(mode: &DetectLocal) -> Option<Self> {
        let (if_local, if_not_local, if_local_nft, if_not_local_nft) = match mode {
            DetectLocal::ClusterCidr(cidrs) | DetectLocal::NodeCidr(cidrs) => {
                // One CIDR per family; the proxier passes its family's.
                let cidr = cidrs.first()?;
                let ip = if cidr.addr().is_ipv4() { "ip" } else { "ip6" };
                (
                    format!("-s {cidr}"),
                    format!("! -s {cidr}"),
                    format!("{ip} saddr {cidr}"),
                    format!("{ip} saddr != {cidr}"),
                )
            }
            DetectLocal::BridgeInterface(name) => (
                format!("-i {name}"),
                format!("! -i {name}"),
                format!("iifname {name}"),
                format!("iifname != {name}"),
            ),
            DetectLocal::InterfaceNamePrefix(prefix) => (
                format!("-i {prefix}+"),
                format!("! -i {prefix}+"),
                format!("iifname {prefix}*"),
                format!("iifname != {prefix}*"),
            ),
            DetectLocal::Unknown => return None,
        };
        Some(LocalDetector {
            if_local,
            if_not_local,
            if_local_nft,
            if_not_local_nft,
        })
    }

    /// Matches traffic from a local pod.
    pub fn if_local(&self) -> &str {
        &self.if_local
    }

    /// Matches traffic not from a local pod.
    pub fn if_not_local(&self) -> &str {
        &self.if_not_local
    }

    /// nftables: matches traffic from a local pod (upstream's `IfLocalNFT`).
    pub fn if_local_nft(&self) -> &str {
        &self.if_local_nft
    }

    /// nftables: matches traffic not from a local pod (`IfNotLocalNFT`).
    pub fn if_not_local_nft(&self) -> &str {
        &self.if_not_local_nft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_per_mode() {
        let d = LocalDetector::new(&DetectLocal::ClusterCidr(vec!["10.0.0.0/8"
            .parse()
            .unwrap()]))
        .unwrap();
        assert_eq!(
            (d.if_local(), d.if_not_local()),
            ("-s 10.0.0.0/8", "! -s 10.0.0.0/8")
        );
        assert_eq!(
            (d.if_local_nft(), d.if_not_local_nft()),
            ("ip saddr 10.0.0.0/8", "ip saddr != 10.0.0.0/8")
        );
        let d = LocalDetector::new(&DetectLocal::InterfaceNamePrefix("veth".into())).unwrap();
        assert_eq!(d.if_not_local(), "! -i veth+");
        assert_eq!(d.if_local_nft(), "iifname veth*");
        let d = LocalDetector::new(&DetectLocal::NodeCidr(vec!["fd00:10::/64"
            .parse()
            .unwrap()]))
        .unwrap();
        assert_eq!(d.if_not_local_nft(), "ip6 saddr != fd00:10::/64");
        assert!(LocalDetector::new(&DetectLocal::Unknown).is_none());
    }
}
