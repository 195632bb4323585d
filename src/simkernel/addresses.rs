//! The proxier's [`Addresses`] trait over a simulated node's interfaces:
//! the `kube-ipvs0` dummy device and the node's local addresses, as
//! upstream's netlink handle reaches them.
//!
//! A bound service address is a `/32` (`/128`) on the dummy device, so the
//! node's routing takes it as local and IPVS sees packets for it at
//! LOCAL_IN. Listings filter with [`is_valid_for_set`] like upstream's
//! handle (no loopback, no other family, no IPv6 link-local).
//!
//! **Invariant:** translates only; the node's interface table decides.
//!
//! **Errors:** as the netlink calls fail: an empty device name, a device
//! that does not exist (`Link not found`), unbinding an address the device
//! does not hold (`cannot assign requested address`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use proxier::dataplane::{is_valid_for_set, Addresses, DataplaneError};
use proxier::k8s::IpFamily;
use sim::node::{IfaceKind, Interface};

use super::SimKernel;

fn no_link(dev: &str) -> DataplaneError {
    DataplaneError::new(
        "netlink",
        format!("error get interface: {dev}, err: Link not found"),
    )
}

fn valid<'a>(family: IpFamily, ifaces: impl Iterator<Item = &'a Interface>) -> BTreeSet<IpAddr> {
    ifaces
        .flat_map(|i| i.addrs.iter().map(|a| a.addr))
        .filter(|ip| is_valid_for_set(family, *ip))
        .collect()
}

impl SimKernel<'_> {
    fn device(&self, dev: &str) -> Result<&Interface, DataplaneError> {
        if dev.is_empty() {
            return Err(DataplaneError::new("netlink", "device name can't be empty"));
        }
        self.node.interfaces().get(dev).ok_or_else(|| no_link(dev))
    }
}

impl Addresses for SimKernel<'_> {
    fn ensure_dummy_device(&mut self, dev: &str) -> Result<bool, DataplaneError> {
        if dev.is_empty() {
            return Err(DataplaneError::new("netlink", "device name can't be empty"));
        }
        match self.node.interfaces().get(dev) {
            Some(i) if i.kind == IfaceKind::Dummy => Ok(true),
            Some(_) => Err(DataplaneError::new(
                "netlink",
                format!("error creating dummy interface {dev}: file exists (not a dummy device)"),
            )),
            None => {
                self.node
                    .add_dummy_interface(dev)
                    .map_err(|e| DataplaneError::new("netlink", e.to_string()))?;
                Ok(false)
            }
        }
    }

    fn delete_dummy_device(&mut self, dev: &str) -> Result<(), DataplaneError> {
        self.device(dev)?;
        self.node
            .del_dummy_interface(dev)
            .map_err(|e| DataplaneError::new("netlink", e.to_string()))
    }

    fn ensure_address_bind(&mut self, address: IpAddr, dev: &str) -> Result<bool, DataplaneError> {
        self.device(dev)?;
        if self.node.interfaces().has_addr(dev, address) {
            return Ok(true);
        }
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        self.node.add_address(dev, address, prefix).map_err(|e| {
            DataplaneError::new(
                "netlink",
                format!("error bind address: {address} to interface: {dev}, err: {e}"),
            )
        })?;
        Ok(false)
    }

    fn unbind_address(&mut self, address: IpAddr, dev: &str) -> Result<(), DataplaneError> {
        self.device(dev)?;
        let removed = self
            .node
            .del_address(dev, address)
            .map_err(|e| DataplaneError::new("netlink", e.to_string()))?;
        if !removed {
            return Err(DataplaneError::new(
                "netlink",
                format!(
                    "error unbind address: {address} from interface: {dev}, err: cannot assign requested address"
                ),
            ));
        }
        Ok(())
    }

    fn list_bind_address(&mut self, dev: &str) -> Result<Vec<IpAddr>, DataplaneError> {
        Ok(self.device(dev)?.addrs.iter().map(|a| a.addr).collect())
    }

    fn get_local_addresses(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(valid(family, self.node.interfaces().get(dev).into_iter()))
    }

    fn get_all_local_addresses(
        &mut self,
        family: IpFamily,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(valid(family, self.node.interfaces().iter()))
    }

    fn get_all_local_addresses_except(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(valid(
            family,
            self.node.interfaces().iter().filter(|i| i.name != dev),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simkernel::KernelSide;
    use proxier::dataplane::Kernel;
    use sim::netfilter::Variant;
    use sim::node::Node;
    use sim::time::Instant;

    #[test]
    fn bound_addresses_become_local() {
        let mut node = Node::new("n", 1, Variant::Nft);
        node.add_interface("eth0").unwrap();
        node.add_address("eth0", "192.168.0.10".parse().unwrap(), 24)
            .unwrap();
        let mut side = KernelSide::default();
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        let vip: IpAddr = "10.96.0.1".parse().unwrap();
        assert!(k
            .addresses()
            .ensure_address_bind(vip, "kube-ipvs0")
            .is_err());
        assert!(!k.addresses().ensure_dummy_device("kube-ipvs0").unwrap());
        assert!(k.addresses().ensure_dummy_device("kube-ipvs0").unwrap());
        assert!(!k
            .addresses()
            .ensure_address_bind(vip, "kube-ipvs0")
            .unwrap());
        assert!(k
            .addresses()
            .ensure_address_bind(vip, "kube-ipvs0")
            .unwrap());
        let all = k.addresses().get_all_local_addresses(IpFamily::V4).unwrap();
        assert_eq!(all.len(), 2);
        let except = k
            .addresses()
            .get_all_local_addresses_except(IpFamily::V4, "kube-ipvs0")
            .unwrap();
        assert_eq!(
            except.into_iter().collect::<Vec<_>>(),
            ["192.168.0.10".parse::<IpAddr>().unwrap()]
        );
        k.addresses().unbind_address(vip, "kube-ipvs0").unwrap();
        assert!(k.addresses().unbind_address(vip, "kube-ipvs0").is_err());
        assert!(!node.is_local(vip));
    }
}
