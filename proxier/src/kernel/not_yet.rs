//! The IPVS-mode interfaces ([`Ipvs`], [`Ipset`], [`Addresses`]) on the
//! kernel backend: not implemented yet. Every call is an error saying so,
//! which the IPVS proxier reports like any kernel refusal.
//!
//! (The real ones — generic netlink for IPVS, `ipset restore`, rtnetlink for
//! `kube-ipvs0` — are issue 6's second half; this machine's kernel lacks
//! IPVS, so they are tested in a VM.)

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::dataplane::{
    Addresses, DataplaneError, IpSetSpec, Ipset, Ipvs, RealServer, VirtualServer,
};
use crate::k8s::IpFamily;

/// Stands in for the IPVS-mode interfaces until they exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotYet;

fn no<T>(operation: &str) -> Result<T, DataplaneError> {
    Err(DataplaneError::new(
        operation,
        "not implemented on the kernel backend yet",
    ))
}

impl Ipvs for NotYet {
    fn flush(&mut self) -> Result<(), DataplaneError> {
        no("ipvs flush")
    }
    fn add_virtual_server(&mut self, _: &VirtualServer) -> Result<(), DataplaneError> {
        no("ipvs add virtual server")
    }
    fn update_virtual_server(&mut self, _: &VirtualServer) -> Result<(), DataplaneError> {
        no("ipvs update virtual server")
    }
    fn delete_virtual_server(&mut self, _: &VirtualServer) -> Result<(), DataplaneError> {
        no("ipvs delete virtual server")
    }
    fn get_virtual_server(
        &mut self,
        _: &VirtualServer,
    ) -> Result<Option<VirtualServer>, DataplaneError> {
        no("ipvs get virtual server")
    }
    fn get_virtual_servers(&mut self) -> Result<Vec<VirtualServer>, DataplaneError> {
        no("ipvs list virtual servers")
    }
    fn add_real_server(&mut self, _: &VirtualServer, _: &RealServer) -> Result<(), DataplaneError> {
        no("ipvs add real server")
    }
    fn get_real_servers(&mut self, _: &VirtualServer) -> Result<Vec<RealServer>, DataplaneError> {
        no("ipvs list real servers")
    }
    fn delete_real_server(
        &mut self,
        _: &VirtualServer,
        _: &RealServer,
    ) -> Result<(), DataplaneError> {
        no("ipvs delete real server")
    }
    fn update_real_server(
        &mut self,
        _: &VirtualServer,
        _: &RealServer,
    ) -> Result<(), DataplaneError> {
        no("ipvs update real server")
    }
    fn configure_timeouts(
        &mut self,
        _: Duration,
        _: Duration,
        _: Duration,
    ) -> Result<(), DataplaneError> {
        no("ipvs set timeouts")
    }
}

impl Ipset for NotYet {
    fn flush_set(&mut self, _: &str) -> Result<(), DataplaneError> {
        no("ipset flush")
    }
    fn destroy_set(&mut self, _: &str) -> Result<(), DataplaneError> {
        no("ipset destroy")
    }
    fn destroy_all_sets(&mut self) -> Result<(), DataplaneError> {
        no("ipset destroy")
    }
    fn create_set(&mut self, _: &IpSetSpec, _: bool) -> Result<(), DataplaneError> {
        no("ipset create")
    }
    fn add_entry(&mut self, _: &str, _: &IpSetSpec, _: bool) -> Result<(), DataplaneError> {
        no("ipset add")
    }
    fn del_entry(&mut self, _: &str, _: &str) -> Result<(), DataplaneError> {
        no("ipset del")
    }
    fn test_entry(&mut self, _: &str, _: &str) -> Result<bool, DataplaneError> {
        no("ipset test")
    }
    fn list_entries(&mut self, _: &str) -> Result<Vec<String>, DataplaneError> {
        no("ipset list")
    }
    fn list_sets(&mut self) -> Result<Vec<String>, DataplaneError> {
        no("ipset list -n")
    }
    fn get_version(&mut self) -> Result<String, DataplaneError> {
        no("ipset version")
    }
}

impl Addresses for NotYet {
    fn ensure_dummy_device(&mut self, _: &str) -> Result<bool, DataplaneError> {
        no("ip link add type dummy")
    }
    fn delete_dummy_device(&mut self, _: &str) -> Result<(), DataplaneError> {
        no("ip link delete")
    }
    fn ensure_address_bind(&mut self, _: IpAddr, _: &str) -> Result<bool, DataplaneError> {
        no("ip addr add")
    }
    fn unbind_address(&mut self, _: IpAddr, _: &str) -> Result<(), DataplaneError> {
        no("ip addr del")
    }
    fn list_bind_address(&mut self, _: &str) -> Result<Vec<IpAddr>, DataplaneError> {
        no("ip addr show")
    }
    fn get_local_addresses(
        &mut self,
        _: IpFamily,
        _: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        no("ip addr show")
    }
    fn get_all_local_addresses(&mut self, _: IpFamily) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        no("ip addr show")
    }
    fn get_all_local_addresses_except(
        &mut self,
        _: IpFamily,
        _: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        no("ip addr show")
    }
}
