//! A stateful fake of the kernel's ipsets (upstream's `ipsettest.NewFake`),
//! stricter where `ipset` is: a set must exist before entries go in, an
//! entry added twice without `-exist` and a missing entry deleted are
//! errors. Sets and entries are ordered, so listings are deterministic.

use std::collections::{BTreeMap, BTreeSet};

use crate::dataplane::{DataplaneError, IpSetSpec, Ipset};

#[derive(Debug, Clone)]
pub struct RecordingIpset {
    sets: BTreeMap<String, (IpSetSpec, BTreeSet<String>)>,
    /// What `get_version` answers.
    pub version: String,
    /// Every mutating call, in order (`add KUBE-CLUSTER-IP 10.0.0.1,tcp:80`).
    pub log: Vec<String>,
}

impl Default for RecordingIpset {
    fn default() -> Self {
        RecordingIpset {
            sets: BTreeMap::new(),
            version: "7.1".into(),
            log: Vec::new(),
        }
    }
}

fn err(message: String) -> DataplaneError {
    DataplaneError::new("ipset", message)
}

impl RecordingIpset {
    /// Every set with its entries, ordered by name.
    pub fn sets(&self) -> impl Iterator<Item = (&IpSetSpec, &BTreeSet<String>)> {
        self.sets.values().map(|(s, e)| (s, e))
    }

    /// The entries of one set.
    pub fn entries(&self, set: &str) -> Option<&BTreeSet<String>> {
        self.sets.get(set).map(|(_, e)| e)
    }

    fn members(&mut self, set: &str) -> Result<&mut BTreeSet<String>, DataplaneError> {
        self.sets
            .get_mut(set)
            .map(|(_, e)| e)
            .ok_or_else(|| err(format!("the set with the given name does not exist: {set}")))
    }
}

impl Ipset for RecordingIpset {
    fn flush_set(&mut self, set: &str) -> Result<(), DataplaneError> {
        self.members(set)?.clear();
        self.log.push(format!("flush {set}"));
        Ok(())
    }

    fn destroy_set(&mut self, set: &str) -> Result<(), DataplaneError> {
        self.sets
            .remove(set)
            .ok_or_else(|| err(format!("the set with the given name does not exist: {set}")))?;
        self.log.push(format!("destroy {set}"));
        Ok(())
    }

    fn destroy_all_sets(&mut self) -> Result<(), DataplaneError> {
        self.sets.clear();
        self.log.push("destroy".into());
        Ok(())
    }

    fn create_set(&mut self, set: &IpSetSpec, ignore_exist: bool) -> Result<(), DataplaneError> {
        if self.sets.contains_key(&set.name) {
            if ignore_exist {
                return Ok(());
            }
            return Err(err(format!(
                "set cannot be created: set with the same name already exists: {}",
                set.name
            )));
        }
        self.log.push(set.create_args().join(" "));
        self.sets
            .insert(set.name.clone(), (set.clone(), BTreeSet::new()));
        Ok(())
    }

    fn add_entry(
        &mut self,
        entry: &str,
        set: &IpSetSpec,
        ignore_exist: bool,
    ) -> Result<(), DataplaneError> {
        let members = self.members(&set.name)?;
        if !members.insert(entry.to_string()) && !ignore_exist {
            return Err(err(format!(
                "element cannot be added to the set {}: it's already added",
                set.name
            )));
        }
        self.log.push(format!("add {} {entry}", set.name));
        Ok(())
    }

    fn del_entry(&mut self, entry: &str, set: &str) -> Result<(), DataplaneError> {
        if !self.members(set)?.remove(entry) {
            return Err(err(format!(
                "element cannot be deleted from the set {set}: it's not added"
            )));
        }
        self.log.push(format!("del {set} {entry}"));
        Ok(())
    }

    fn test_entry(&mut self, entry: &str, set: &str) -> Result<bool, DataplaneError> {
        Ok(self.members(set)?.contains(entry))
    }

    fn list_entries(&mut self, set: &str) -> Result<Vec<String>, DataplaneError> {
        Ok(self.members(set)?.iter().cloned().collect())
    }

    fn list_sets(&mut self) -> Result<Vec<String>, DataplaneError> {
        Ok(self.sets.keys().cloned().collect())
    }

    fn get_version(&mut self) -> Result<String, DataplaneError> {
        Ok(self.version.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::SetType;
    use crate::k8s::IpFamily;

    #[test]
    fn entries_need_their_set() {
        let mut ipset = RecordingIpset::default();
        let spec = IpSetSpec::new("KUBE-X", SetType::BitmapPort, IpFamily::V4, "x");
        assert!(ipset.add_entry("80", &spec, true).is_err());
        ipset.create_set(&spec, true).unwrap();
        ipset.create_set(&spec, true).unwrap();
        assert!(ipset.create_set(&spec, false).is_err());
        ipset.add_entry("80", &spec, true).unwrap();
        ipset.add_entry("80", &spec, true).unwrap();
        assert!(ipset.add_entry("80", &spec, false).is_err());
        assert!(ipset.test_entry("80", "KUBE-X").unwrap());
        ipset.del_entry("80", "KUBE-X").unwrap();
        assert!(ipset.del_entry("80", "KUBE-X").is_err());
        assert_eq!(ipset.list_sets().unwrap(), ["KUBE-X"]);
    }
}
