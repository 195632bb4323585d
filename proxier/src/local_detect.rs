//! Telling pod traffic from other traffic (upstream `LocalTrafficDetector`).
//!
//! Produces the iptables match fragments upstream puts in its rules:
//! `-s CIDR` / `! -s CIDR` for the CIDR modes, `-i IFACE` / `! -i IFACE` for
//! the interface modes (a prefix gets iptables' `+` wildcard). A detector
//! that is not implemented yields nothing and the rules that need it are
//! left out, as upstream does.

use crate::config::DetectLocal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDetector {
    if_local: String,
    if_not_local: String,
}

impl LocalDetector {
    pub fn new(mode: &DetectLocal) -> Option<Self> {
        let (if_local, if_not_local) = match mode {
            DetectLocal::ClusterCidr(cidrs) | DetectLocal::NodeCidr(cidrs) => {
                // One CIDR per family; the proxier passes its family's.
                let cidr = cidrs.first()?;
                (format!("-s {cidr}"), format!("! -s {cidr}"))
            }
            DetectLocal::BridgeInterface(name) => (format!("-i {name}"), format!("! -i {name}")),
            DetectLocal::InterfaceNamePrefix(prefix) => {
                (format!("-i {prefix}+"), format!("! -i {prefix}+"))
            }
            DetectLocal::Unknown => return None,
        };
        Some(LocalDetector {
            if_local,
            if_not_local,
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
        let d = LocalDetector::new(&DetectLocal::InterfaceNamePrefix("veth".into())).unwrap();
        assert_eq!(d.if_not_local(), "! -i veth+");
        assert!(LocalDetector::new(&DetectLocal::Unknown).is_none());
    }
}
