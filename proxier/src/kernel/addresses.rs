//! [`Addresses`] over iproute2's `ip`: the `kube-ipvs0` dummy device and
//! the service addresses bound to it, and the node's local addresses.
//!
//! **Why `ip` and not rtnetlink:** the calls are few per sync (one per
//! address that changes), `ip` already runs every tool in a named namespace
//! (`ip netns exec`), and its JSON output (`ip -j addr show`) is stable
//! and parsed here with serde_json — a small, robust surface. The cost is
//! a process per bind on a cold sync with many services; swapping in
//! rtnetlink (`netlink-packet-route`) would not change the trait.
//!
//! Like upstream's netlink handle: the dummy device is created and left
//! down; addresses are bound as `/32` or `/128` with the default (global)
//! scope; binding an address that is bound already (`EEXIST`, "File
//! exists") reports `true`.
//!
//! **Error contract:** a [`DataplaneError`] naming the `ip` command line
//! and what `ip` said; a device that does not exist is an error for every
//! call but [`Addresses::ensure_dummy_device`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::exec::{Journal, KernelWrite, Runner};
use crate::dataplane::{is_valid_for_set, Addresses, DataplaneError};
use crate::k8s::IpFamily;

/// A node's interfaces through `ip`.
#[derive(Debug, Clone)]
pub struct KernelAddresses {
    runner: Runner,
    journal: Journal,
}

/// `(device, address)` pairs of `ip -j addr show` output, in its order.
pub fn parse_addr_json(json: &str) -> Result<Vec<(String, IpAddr)>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable `ip -j addr` output: {e}"))?;
    let mut out = Vec::new();
    for link in value.as_array().into_iter().flatten() {
        let Some(name) = link.get("ifname").and_then(|n| n.as_str()) else {
            continue;
        };
        for info in link
            .get("addr_info")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(ip) = info
                .get("local")
                .and_then(|l| l.as_str())
                .and_then(|l| l.parse().ok())
            {
                out.push((name.to_string(), ip));
            }
        }
    }
    Ok(out)
}

fn prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

impl KernelAddresses {
    pub fn new(runner: Runner, journal: Journal) -> Self {
        KernelAddresses { runner, journal }
    }

    fn write(&self, args: &[&str]) -> Result<(), DataplaneError> {
        let result = self.runner.check("ip", args, None).map(|_| ());
        self.journal.record(KernelWrite {
            command: self.runner.describe("ip", args),
            input: None,
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });
        result
    }

    fn exists(&self, dev: &str) -> Result<bool, DataplaneError> {
        let out = self.runner.run("ip", &["link", "show", "dev", dev], None)?;
        Ok(out.success())
    }

    /// Every `(device, address)` of the namespace, or of one device.
    fn addresses(&self, dev: Option<&str>) -> Result<Vec<(String, IpAddr)>, DataplaneError> {
        let mut args = vec!["-j", "addr", "show"];
        if let Some(d) = dev {
            args.extend(["dev", d]);
        }
        let out = self.runner.check("ip", &args, None)?;
        parse_addr_json(&out).map_err(|e| DataplaneError::new(self.runner.describe("ip", &args), e))
    }
}

impl Addresses for KernelAddresses {
    fn ensure_dummy_device(&mut self, dev: &str) -> Result<bool, DataplaneError> {
        if self.exists(dev)? {
            return Ok(true);
        }
        self.write(&["link", "add", dev, "type", "dummy"])?;
        Ok(false)
    }

    fn delete_dummy_device(&mut self, dev: &str) -> Result<(), DataplaneError> {
        self.write(&["link", "delete", dev])
    }

    fn ensure_address_bind(&mut self, address: IpAddr, dev: &str) -> Result<bool, DataplaneError> {
        let cidr = format!("{address}/{}", prefix(address));
        let args = ["addr", "add", &cidr, "dev", dev];
        let out = self.runner.run("ip", &args, None)?;
        let result = if out.success() {
            Ok(false)
        } else if out.stderr.contains("File exists") {
            return Ok(true);
        } else {
            Err(DataplaneError::new(
                self.runner.describe("ip", &args),
                out.complaint(),
            ))
        };
        self.journal.record(KernelWrite {
            command: self.runner.describe("ip", &args),
            input: None,
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });
        result
    }

    fn unbind_address(&mut self, address: IpAddr, dev: &str) -> Result<(), DataplaneError> {
        let cidr = format!("{address}/{}", prefix(address));
        self.write(&["addr", "del", &cidr, "dev", dev])
    }

    fn list_bind_address(&mut self, dev: &str) -> Result<Vec<IpAddr>, DataplaneError> {
        Ok(self
            .addresses(Some(dev))?
            .into_iter()
            .map(|(_, ip)| ip)
            .collect())
    }

    fn get_local_addresses(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(self
            .list_bind_address(dev)?
            .into_iter()
            .filter(|ip| is_valid_for_set(family, *ip))
            .collect())
    }

    fn get_all_local_addresses(
        &mut self,
        family: IpFamily,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(self
            .addresses(None)?
            .into_iter()
            .map(|(_, ip)| ip)
            .filter(|ip| is_valid_for_set(family, *ip))
            .collect())
    }

    fn get_all_local_addresses_except(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        Ok(self
            .addresses(None)?
            .into_iter()
            .filter(|(d, ip)| d != dev && is_valid_for_set(family, *ip))
            .map(|(_, ip)| ip)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ip_json() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":5,"ifname":"kube-ipvs0","addr_info":[{"family":"inet","local":"10.96.0.53","prefixlen":32},
            {"family":"inet6","local":"fd00::1","prefixlen":128}]},{"ifindex":6,"ifname":"x"}]"#;
        let got = parse_addr_json(json).unwrap();
        let want: Vec<(String, IpAddr)> = vec![
            ("lo".into(), "127.0.0.1".parse().unwrap()),
            ("kube-ipvs0".into(), "10.96.0.53".parse().unwrap()),
            ("kube-ipvs0".into(), "fd00::1".parse().unwrap()),
        ];
        assert_eq!(got, want);
        assert!(parse_addr_json("not json").is_err());
    }
}
