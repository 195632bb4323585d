//! kube-proxy's view of one ipset (upstream's `IPSet` wrapper in
//! `pkg/proxy/ipvs/ipset.go`): its definition and the entries the current
//! sync wants, and the reconciliation that makes the kernel's set match —
//! delete what is stale, add what is missing, touch nothing else.
//!
//! **Never:** writes entries it was not asked for, or rewrites a set whose
//! entries already match.
//!
//! **Errors:** creating the set is fatal to a sync ([`IpSet::ensure`]);
//! failures of single entries are returned as warnings, as upstream only
//! logs them.

use std::collections::BTreeSet;

use super::names::{family_set_name, SetInfo};
use crate::dataplane::{DataplaneError, IpSetEntry, IpSetSpec, Ipset};
use crate::k8s::IpFamily;

#[derive(Debug, Clone)]
pub struct IpSet {
    pub spec: IpSetSpec,
    /// The entries this sync wants (entry text), ordered.
    pub active: BTreeSet<String>,
}

impl IpSet {
    /// The set for `family`, named as upstream's `NewIPSet` names it.
    pub fn new(info: &SetInfo, family: IpFamily) -> Self {
        let name = family_set_name(info.name, family == IpFamily::V6);
        IpSet {
            spec: IpSetSpec::new(&name, info.set_type, family, info.comment),
            active: BTreeSet::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Upstream's `validateEntry`.
    pub fn validate(&self, entry: &IpSetEntry) -> bool {
        entry.validate(&self.spec)
    }

    /// Records `entry` as wanted, if valid for this set; returns validity.
    pub fn insert(&mut self, entry: &IpSetEntry) -> bool {
        let valid = self.validate(entry);
        if valid {
            self.active.insert(entry.to_string());
        }
        valid
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// The comment as iptables rules quote it.
    pub fn comment(&self) -> String {
        format!("\"{}\"", self.spec.comment)
    }

    /// Creates the set if missing (`ipset create -exist`).
    pub fn ensure(&self, ipset: &mut dyn Ipset) -> Result<(), DataplaneError> {
        ipset.create_set(&self.spec, true)
    }

    /// Makes the kernel's entries equal the wanted ones (upstream's
    /// `syncIPSetEntries`); returns the failures.
    pub fn sync_entries(&self, ipset: &mut dyn Ipset) -> Vec<DataplaneError> {
        let mut warnings = Vec::new();
        let current: BTreeSet<String> = match ipset.list_entries(self.name()) {
            Ok(list) => list.into_iter().collect(),
            Err(e) => return vec![e],
        };
        if current == self.active {
            return warnings;
        }
        for stale in current.difference(&self.active) {
            if let Err(e) = ipset.del_entry(stale, self.name()) {
                warnings.push(e);
            }
        }
        for missing in self.active.difference(&current) {
            if let Err(e) = ipset.add_entry(missing, &self.spec, true) {
                warnings.push(e);
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::recording::RecordingIpset;
    use crate::ipvs::names::IPSET_INFO;
    use crate::k8s::Protocol;

    #[test]
    fn sync_touches_only_what_differs() {
        let info = IPSET_INFO
            .iter()
            .find(|i| i.name == "KUBE-NODE-PORT-TCP")
            .unwrap();
        let mut set = IpSet::new(info, IpFamily::V4);
        let mut kernel = RecordingIpset::default();
        set.ensure(&mut kernel).unwrap();
        assert!(set.insert(&IpSetEntry::port(Protocol::Tcp, 30001)));
        assert!(set.insert(&IpSetEntry::port(Protocol::Tcp, 30002)));
        assert!(set.sync_entries(&mut kernel).is_empty());
        kernel.log.clear();
        assert!(set.sync_entries(&mut kernel).is_empty());
        assert!(
            kernel.log.is_empty(),
            "no change, no call: {:?}",
            kernel.log
        );
        set.active.remove("30001");
        set.sync_entries(&mut kernel);
        assert_eq!(kernel.log, ["del KUBE-NODE-PORT-TCP 30001"]);
        assert_eq!(
            set.comment(),
            "\"Kubernetes nodeport TCP port for masquerade purpose\""
        );
        let v6 = IpSet::new(info, IpFamily::V6);
        assert_eq!(v6.name(), "KUBE-6-NODE-PORT-TCP");
    }
}
