//! The netlink handle IPVS mode uses for addresses (upstream's
//! `NetLinkHandle` in `pkg/proxy/ipvs/netlink.go`).
//!
//! IPVS only intercepts traffic addressed to the node itself, so kube-proxy
//! creates a dummy device (`kube-ipvs0`) and binds every service VIP to it
//! (`/32` or `/128`). It also lists the node's local addresses to find the
//! NodePort addresses and to avoid binding a VIP another interface owns.
//! Listings for one family skip loopback, the other family and IPv6
//! link-local addresses ([`is_valid_for_set`]), as upstream's handle does.
//!
//! **Never:** this module holds the trait and the filter only; no kernel, no
//! state.
//!
//! **Errors:** operations return a [`DataplaneError`] when the kernel
//! refuses: an empty device name, a device that does not exist, unbinding
//! an address the device does not hold.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::DataplaneError;
use crate::k8s::IpFamily;

/// Whether a local address counts for a proxier of `family` (upstream's
/// `netlinkHandle.isValidForSet`): same family (an IPv4-mapped IPv6 address
/// counts as IPv4, as in Go), not loopback, and for IPv6 not link-local.
pub fn is_valid_for_set(family: IpFamily, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    if IpFamily::of(&ip) != family {
        return false;
    }
    if let IpAddr::V6(v6) = ip {
        if v6.is_unicast_link_local() {
            return false;
        }
    }
    !ip.is_loopback()
}

/// A node's network interfaces, as kube-proxy's netlink handle reaches them.
pub trait Addresses {
    /// Creates the dummy device if missing; returns whether it existed.
    fn ensure_dummy_device(&mut self, dev: &str) -> Result<bool, DataplaneError>;
    /// Deletes a device.
    fn delete_dummy_device(&mut self, dev: &str) -> Result<(), DataplaneError>;
    /// Binds `address` to `dev` if not bound; returns whether it was bound.
    fn ensure_address_bind(&mut self, address: IpAddr, dev: &str) -> Result<bool, DataplaneError>;
    /// Removes `address` from `dev`.
    fn unbind_address(&mut self, address: IpAddr, dev: &str) -> Result<(), DataplaneError>;
    /// Every address bound to `dev`, in binding order, unfiltered.
    fn list_bind_address(&mut self, dev: &str) -> Result<Vec<IpAddr>, DataplaneError>;
    /// The addresses of `dev` valid for `family` ([`is_valid_for_set`]).
    fn get_local_addresses(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError>;
    /// The addresses of every device valid for `family`.
    fn get_all_local_addresses(
        &mut self,
        family: IpFamily,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError>;
    /// The addresses of every device but `dev` valid for `family`.
    fn get_all_local_addresses_except(
        &mut self,
        family: IpFamily,
        dev: &str,
    ) -> Result<BTreeSet<IpAddr>, DataplaneError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's `TestIpIsValidForSet` cases.
    #[test]
    fn valid_for_set_matches_upstream() {
        let cases = [
            (IpFamily::V4, "127.0.0.1", false),
            (IpFamily::V4, "127.0.0.0", false),
            (IpFamily::V4, "127.6.7.8", false),
            (IpFamily::V4, "8.8.8.8", true),
            (IpFamily::V4, "192.168.0.1", true),
            (IpFamily::V4, "169.254.0.0", true),
            (IpFamily::V4, "::ffff:169.254.0.0", true),
            (IpFamily::V4, "1000::", false),
            (IpFamily::V6, "::1", false),
            (IpFamily::V6, "1000::", true),
            (IpFamily::V6, "fe80::200:ff:fe01:1", false),
            (IpFamily::V6, "8.8.8.8", false),
            (IpFamily::V6, "::ffff:8.8.8.8", false),
        ];
        for (family, ip, want) in cases {
            assert_eq!(
                is_valid_for_set(family, ip.parse().unwrap()),
                want,
                "{family:?} {ip}"
            );
        }
    }
}
