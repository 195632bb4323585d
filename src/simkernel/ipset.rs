//! The proxier's [`Ipset`] trait over a simulated node's ipsets.
//!
//! Each call is the `ipset` command upstream's runner would run (`create
//! -exist`, `add -exist`, `del`, `test`, `flush`, `destroy`, `list`), applied
//! to the node's sets, so kube-proxy's `-m set` rules find them when its
//! iptables payload is restored.
//!
//! **Invariant:** translates only; the node's sets decide.
//!
//! **Errors:** refusals carry the `ipset` tool's own words (v7.17): a set
//! that does not exist, a set created twice, an element added twice without
//! `-exist` or deleted when absent, a set destroyed while a rule still
//! references it, and entries that do not fit the set.

use proxier::dataplane::{DataplaneError, IpSetSpec, Ipset};
use sim::node::IpSetError;

use super::SimKernel;

/// The version `ipset version` reports.
const VERSION: &str = "7.17";

fn tool_err(op: &str, words: &str, set: &str) -> DataplaneError {
    DataplaneError::new(
        format!("ipset {op} {set}"),
        format!("ipset v{VERSION}: {words}"),
    )
}

fn model_err(op: &str, e: IpSetError) -> DataplaneError {
    tool_err(op, &format!("Syntax error: {}", e.reason), &e.set)
}

fn no_set(op: &str, set: &str) -> DataplaneError {
    tool_err(op, "The set with the given name does not exist", set)
}

impl Ipset for SimKernel<'_> {
    fn flush_set(&mut self, set: &str) -> Result<(), DataplaneError> {
        self.node
            .ipsets_mut()
            .flush(Some(set))
            .map_err(|_| no_set("flush", set))
    }

    fn destroy_set(&mut self, set: &str) -> Result<(), DataplaneError> {
        if self.node.ipsets().get(set).is_none() {
            return Err(no_set("destroy", set));
        }
        if self.node.ipset_references(set) > 0 {
            return Err(tool_err(
                "destroy",
                "Set cannot be destroyed: it is in use by a kernel component",
                set,
            ));
        }
        self.node
            .ipsets_mut()
            .destroy(Some(set))
            .map_err(|e| model_err("destroy", e))
    }

    fn destroy_all_sets(&mut self) -> Result<(), DataplaneError> {
        let names: Vec<String> = self.node.ipsets().iter().map(|s| s.name.clone()).collect();
        if let Some(used) = names.iter().find(|n| self.node.ipset_references(n) > 0) {
            return Err(tool_err(
                "destroy",
                "Set cannot be destroyed: it is in use by a kernel component",
                used,
            ));
        }
        self.node
            .ipsets_mut()
            .destroy(None)
            .map_err(|e| model_err("destroy", e))
    }

    fn create_set(&mut self, set: &IpSetSpec, ignore_exist: bool) -> Result<(), DataplaneError> {
        let exists = "Set cannot be created: set with the same name already exists";
        if self.node.ipsets().get(&set.name).is_some() && !ignore_exist {
            return Err(tool_err("create", exists, &set.name));
        }
        let args = set.create_args();
        let options: Vec<&str> = args.iter().skip(3).map(String::as_str).collect();
        let existed = self.node.ipsets().get(&set.name).is_some();
        self.node
            .ipsets_mut()
            .create(&set.name, set.set_type.name(), &options, ignore_exist)
            .map_err(|e| {
                if existed {
                    tool_err("create", exists, &set.name)
                } else {
                    model_err("create", e)
                }
            })
    }

    fn add_entry(
        &mut self,
        entry: &str,
        set: &IpSetSpec,
        ignore_exist: bool,
    ) -> Result<(), DataplaneError> {
        let name = set.name.as_str();
        let s = self
            .node
            .ipsets()
            .get(name)
            .ok_or_else(|| no_set("add", name))?;
        let member = s.parse_member(entry).map_err(|e| model_err("add", e))?;
        if s.contains(&member) && !ignore_exist {
            return Err(tool_err(
                "add",
                "Element cannot be added to the set: it's already added",
                name,
            ));
        }
        self.node
            .ipsets_mut()
            .add(name, entry, ignore_exist)
            .map_err(|e| model_err("add", e))
    }

    fn del_entry(&mut self, entry: &str, set: &str) -> Result<(), DataplaneError> {
        let s = self
            .node
            .ipsets()
            .get(set)
            .ok_or_else(|| no_set("del", set))?;
        let member = s.parse_member(entry).map_err(|e| model_err("del", e))?;
        if !s.contains(&member) {
            return Err(tool_err(
                "del",
                "Element cannot be deleted from the set: it's not added",
                set,
            ));
        }
        self.node
            .ipsets_mut()
            .del(set, entry, false)
            .map_err(|e| model_err("del", e))
    }

    fn test_entry(&mut self, entry: &str, set: &str) -> Result<bool, DataplaneError> {
        if self.node.ipsets().get(set).is_none() {
            return Err(no_set("test", set));
        }
        self.node
            .ipsets()
            .test(set, entry)
            .map_err(|e| model_err("test", e))
    }

    fn list_entries(&mut self, set: &str) -> Result<Vec<String>, DataplaneError> {
        let s = self
            .node
            .ipsets()
            .get(set)
            .ok_or_else(|| no_set("list", set))?;
        Ok(s.members().map(ToString::to_string).collect())
    }

    fn list_sets(&mut self) -> Result<Vec<String>, DataplaneError> {
        Ok(self.node.ipsets().iter().map(|s| s.name.clone()).collect())
    }

    fn get_version(&mut self) -> Result<String, DataplaneError> {
        Ok(VERSION.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simkernel::KernelSide;
    use proxier::dataplane::{Kernel, RestoreFlags, SetType};
    use proxier::k8s::IpFamily;
    use sim::netfilter::Variant;
    use sim::node::Node;
    use sim::time::Instant;

    #[test]
    fn sets_behave_like_the_ipset_tool() {
        let mut node = Node::new("n", 1, Variant::Nft);
        let mut side = KernelSide::default();
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        let spec = IpSetSpec::new("KUBE-CLUSTER-IP", SetType::HashIpPort, IpFamily::V4, "c");
        let e = k
            .ipset()
            .add_entry("10.96.0.1,tcp:80", &spec, true)
            .unwrap_err();
        assert!(e.message.ends_with("does not exist"), "{e}");
        k.ipset().create_set(&spec, true).unwrap();
        k.ipset().create_set(&spec, true).unwrap();
        assert!(k.ipset().create_set(&spec, false).is_err());
        k.ipset()
            .add_entry("10.96.0.1,tcp:80", &spec, true)
            .unwrap();
        k.ipset()
            .add_entry("10.96.0.1,tcp:80", &spec, true)
            .unwrap();
        let e = k
            .ipset()
            .add_entry("10.96.0.1,tcp:80", &spec, false)
            .unwrap_err();
        assert!(e.message.contains("it's already added"), "{e}");
        assert!(k.ipset().add_entry("10.96.0.1", &spec, true).is_err());
        assert_eq!(
            k.ipset().list_entries("KUBE-CLUSTER-IP").unwrap(),
            ["10.96.0.1,tcp:80"]
        );
        assert!(k
            .ipset()
            .test_entry("10.96.0.1,tcp:80", "KUBE-CLUSTER-IP")
            .unwrap());
        k.iptables(IpFamily::V4)
            .restore_all(
                "*filter\n:X - [0:0]\n-A X -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT\nCOMMIT\n",
                RestoreFlags::KUBE_PROXY,
            )
            .unwrap();
        let e = k.ipset().destroy_set("KUBE-CLUSTER-IP").unwrap_err();
        assert!(e.message.contains("in use by a kernel component"), "{e}");
        k.ipset()
            .del_entry("10.96.0.1,tcp:80", "KUBE-CLUSTER-IP")
            .unwrap();
        assert!(k
            .ipset()
            .del_entry("10.96.0.1,tcp:80", "KUBE-CLUSTER-IP")
            .is_err());
        assert_eq!(k.ipset().list_sets().unwrap(), ["KUBE-CLUSTER-IP"]);
    }
}
