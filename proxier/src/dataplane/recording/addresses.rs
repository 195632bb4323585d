//! A stateful fake of the node's devices and addresses (upstream's
//! `netlinktest.NewFakeNetlinkHandle`): devices by name, each with its
//! addresses in binding order. Listings filter by family the way upstream's
//! handle does ([`crate::dataplane::is_valid_for_set`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::dataplane::{is_valid_for_set, Addresses, DataplaneError};
use crate::k8s::IpFamily;

#[derive(Debug, Clone, Default)]
pub struct RecordingAddresses {
    devices: BTreeMap<String, Vec<IpAddr>>,
    /// Every mutating call, in order (`bind 10.0.0.1 kube-ipvs0`).
    pub log: Vec<String>,
}

fn err(message: String) -> DataplaneError {
    DataplaneError::new("netlink", message)
}

impl RecordingAddresses {
    /// Gives `dev` exactly these addresses (creating it), like upstream's
    /// `SetLocalAddresses`.
    pub fn set_local_addresses(&mut self, dev: &str, ips: &[IpAddr]) {
        self.devices.insert(dev.to_string(), ips.to_vec());
    }

    /// Every device with its addresses, ordered by device name.
    pub fn devices(&self) -> &BTreeMap<String, Vec<IpAddr>> {
        &self.devices
    }

    fn device(&mut self, dev: &str) -> Result<&mut Vec<IpAddr>, DataplaneError> {
        if dev.is_empty() {
            return Err(err("device name can't be empty".into()));
        }
        self.devices
            .get_mut(dev)
            .ok_or_else(|| err(format!("interface {dev} does not exist")))
    }

    fn collect<'a>(family: IpFamily, addrs: impl Iterator<Item = &'a IpAddr>) -> BTreeSet<IpAddr> {
        addrs
            .copied()
            .filter(|ip| is_valid_for_set(family, *ip))
            .collect()
    }
}

impl Addresses for RecordingAddresses {
    fn ensure_dummy_device(&mut self, dev: &str) -> Result<bool, DataplaneError> {
        if dev.is_empty() {
            return Err(err("device name can't be empty".into()));
        }
        if self.devices.contains_key(dev) {
            return Ok(true);
        }
        self.devices.insert(dev.to_string(), Vec::new());
        self.log.push(format!("add-dummy {dev}"));
        Ok(false)
    }

    fn delete_dummy_device(&mut self, dev: &str) -> Result<(), DataplaneError> {
        self.device(dev)?;
        self.devices.remove(dev);
        self.log.push(format!("delete-dummy {dev}"));
        Ok(())
    }

    fn ensure_address_bind(&mut self, address: IpAddr, dev: &str) -> Result<bool, DataplaneError> {
        let addrs = self.device(dev)?;
        if addrs.contains(&address) {
            return Ok(true);
        }
        addrs.push(address);
        self.log.push(format!("bind {address} {dev}"));
        Ok(false)
    }

    fn unbind_address(&mut self, address: IpAddr, dev: &str) -> Result<(), DataplaneError> {
        let addrs = self.device(dev)?;
        let at = addrs
            .iter()
            .position(|a| *a == address)
            .ok_or_else(|| err(format!("address {address} is not found in interface {dev}")))?;
        addrs.remove(at);
        self.log.push(format!("unbind {address} {dev}"));
        Ok(())
    }

    fn list_bind_address(&mut self, dev: &str) -> Result<Vec<IpAddr>, DataplaneError> {
        Ok(self.device(dev)?.clone())
    }

    fn get_local_addresses(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(Self::collect(
            family,
            self.devices.get(dev).into_iter().flatten(),
        ))
    }

    fn get_all_local_addresses(
        &mut self,
        family: IpFamily,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(Self::collect(family, self.devices.values().flatten()))
    }

    fn get_all_local_addresses_except(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(Self::collect(
            family,
            self.devices
                .iter()
                .filter(|(name, _)| name.as_str() != dev)
                .flat_map(|(_, a)| a),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// Upstream's `TestGetNodeIPs`: all local addresses minus kube-ipvs0's.
    #[test]
    fn node_ips_exclude_the_dummy_device_like_upstream() {
        type Case = (
            IpFamily,
            &'static [(&'static str, &'static [&'static str])],
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (
                IpFamily::V4,
                &[("eth0", &["1.2.3.4"]), ("lo", &["127.0.0.1"])],
                &["1.2.3.4"],
            ),
            (IpFamily::V4, &[("lo", &["127.0.0.1"])], &[]),
            (IpFamily::V4, &[], &[]),
            (
                IpFamily::V4,
                &[
                    ("encap0", &["10.20.30.40", "fe80::200:ff:fe01:1"]),
                    ("lo", &["127.0.0.1", "::1"]),
                    ("docker0", &["172.17.0.1"]),
                ],
                &["10.20.30.40", "172.17.0.1"],
            ),
            (
                IpFamily::V4,
                &[
                    ("encaps9", &["10.20.30.40"]),
                    ("lo", &["127.0.0.1", "::1"]),
                    ("encap7", &["1000::", "10.20.30.31"]),
                ],
                &["10.20.30.40", "10.20.30.31"],
            ),
            (
                IpFamily::V4,
                &[
                    ("kube-ipvs0", &["2000::", "1.2.3.4"]),
                    ("lo", &["127.0.0.1", "::1"]),
                    ("encap7", &["1000::", "10.20.30.31"]),
                ],
                &["10.20.30.31"],
            ),
            (
                IpFamily::V4,
                &[
                    ("kube-ipvs0", &["1.2.3.4", "2.3.4.5"]),
                    ("lo", &["127.0.0.1", "::1"]),
                ],
                &[],
            ),
            (
                IpFamily::V4,
                &[("kube-ipvs0", &["1.2.3.4", "2.3.4.5"])],
                &[],
            ),
            (
                IpFamily::V4,
                &[
                    ("kube-ipvs0", &["1.2.3.4", "2.3.4.5"]),
                    ("eth5", &["3.4.5.6"]),
                    ("lo", &["127.0.0.1", "::1"]),
                ],
                &["3.4.5.6"],
            ),
            (
                IpFamily::V4,
                &[
                    ("ipvs0", &["1.2.3.4"]),
                    ("lo", &["127.0.0.1", "::1"]),
                    ("encap7", &["10.20.30.31"]),
                ],
                &["10.20.30.31", "1.2.3.4"],
            ),
            (
                IpFamily::V6,
                &[
                    ("ipvs0", &["1.2.3.4", "1000::"]),
                    ("lo", &["127.0.0.1", "::1"]),
                    ("encap7", &["10.20.30.31", "2000::", "fe80::200:ff:fe01:1"]),
                ],
                &["1000::", "2000::"],
            ),
            (
                IpFamily::V6,
                &[
                    ("ipvs0", &["1.2.3.4", "1000::"]),
                    ("lo", &["127.0.0.1", "::1"]),
                    ("encap7", &["10.20.30.31", "2000::", "fe80::200:ff:fe01:1"]),
                    ("kube-ipvs0", &["1.2.3.4", "2.3.4.5", "2000::"]),
                ],
                &["1000::"],
            ),
        ];
        for (i, (family, devs, want)) in cases.iter().enumerate() {
            let mut fake = RecordingAddresses::default();
            for (dev, addrs) in devs.iter() {
                fake.set_local_addresses(dev, &ips(addrs));
            }
            let all = fake.get_all_local_addresses(*family).unwrap();
            let dev = fake.get_local_addresses(*family, "kube-ipvs0").unwrap();
            let got: BTreeSet<IpAddr> = all.difference(&dev).copied().collect();
            let want: BTreeSet<IpAddr> = ips(want).into_iter().collect();
            assert_eq!(got, want, "case {i}");
            assert_eq!(
                fake.get_all_local_addresses_except(*family, "kube-ipvs0")
                    .unwrap()
                    .difference(&dev)
                    .count(),
                want.len(),
                "case {i} (except)"
            );
        }
    }

    #[test]
    fn binding_needs_the_device() {
        let mut fake = RecordingAddresses::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(fake.ensure_address_bind(ip, "kube-ipvs0").is_err());
        assert!(!fake.ensure_dummy_device("kube-ipvs0").unwrap());
        assert!(!fake.ensure_address_bind(ip, "kube-ipvs0").unwrap());
        assert!(fake.ensure_address_bind(ip, "kube-ipvs0").unwrap());
        fake.unbind_address(ip, "kube-ipvs0").unwrap();
        assert!(fake.unbind_address(ip, "kube-ipvs0").is_err());
    }
}
