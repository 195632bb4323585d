//! The ipset interface, as upstream's `pkg/proxy/ipvs/ipset` offers it to
//! the IPVS proxier (`utilipset.Interface`, `IPSet`, `Entry`).
//!
//! Sets are named kernel tables of the types kube-proxy uses (`hash:ip`,
//! `hash:ip,port`, `hash:ip,port,ip`, `hash:ip,port,net`, `bitmap:port`);
//! entries travel as the text `ipset add SET ENTRY` takes
//! (`10.0.0.1,tcp:80`), which [`Entry`]'s `Display` writes exactly as
//! upstream's `Entry.String()` does.
//!
//! **Never:** this module holds types and the trait only; no kernel, no state.
//!
//! **Errors:** operations return a [`DataplaneError`] when the kernel (or the
//! `ipset` tool) refuses: creating an existing set without `ignore_exist`,
//! touching a set that does not exist, adding an entry that exists without
//! `ignore_exist`, deleting one that does not.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::DataplaneError;
use crate::k8s::{IpFamily, Protocol};

/// Upstream's `DefaultPortRange` for `bitmap:port` sets.
pub const DEFAULT_PORT_RANGE: &str = "0-65535";
/// Upstream's defaults for hash sets (`setIPSetDefaults`).
pub const DEFAULT_HASH_SIZE: u32 = 1024;
pub const DEFAULT_MAX_ELEM: u32 = 65536;

/// An ipset type (`utilipset.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetType {
    HashIp,
    HashIpPort,
    HashIpPortIp,
    HashIpPortNet,
    BitmapPort,
}

impl SetType {
    /// The type as `ipset create` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SetType::HashIp => "hash:ip",
            SetType::HashIpPort => "hash:ip,port",
            SetType::HashIpPortIp => "hash:ip,port,ip",
            SetType::HashIpPortNet => "hash:ip,port,net",
            SetType::BitmapPort => "bitmap:port",
        }
    }

    pub fn is_hash(self) -> bool {
        self != SetType::BitmapPort
    }
}

impl fmt::Display for SetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `family` of a hash set: `inet` or `inet6`.
pub fn hash_family(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "inet",
        IpFamily::V6 => "inet6",
    }
}

/// A set's definition (upstream's `utilipset.IPSet` after
/// `setIPSetDefaults`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpSetSpec {
    pub name: String,
    pub set_type: SetType,
    /// `inet` or `inet6` (hash types only).
    pub hash_family: String,
    pub hash_size: u32,
    pub max_elem: u32,
    /// `bitmap:port` only.
    pub port_range: String,
    /// kube-proxy's description; it goes into iptables comments, not the kernel.
    pub comment: String,
}

impl IpSetSpec {
    /// A set with upstream's defaults.
    pub fn new(name: &str, set_type: SetType, family: IpFamily, comment: &str) -> Self {
        IpSetSpec {
            name: name.to_string(),
            set_type,
            hash_family: hash_family(family).to_string(),
            hash_size: DEFAULT_HASH_SIZE,
            max_elem: DEFAULT_MAX_ELEM,
            port_range: DEFAULT_PORT_RANGE.to_string(),
            comment: comment.to_string(),
        }
    }

    /// The `ipset create` arguments upstream's runner passes (without
    /// `-exist`), e.g. `create KUBE-CLUSTER-IP hash:ip,port family inet
    /// hashsize 1024 maxelem 65536`.
    pub fn create_args(&self) -> Vec<String> {
        let mut args = vec![
            "create".to_string(),
            self.name.clone(),
            self.set_type.name().to_string(),
        ];
        if self.set_type.is_hash() {
            args.extend([
                "family".to_string(),
                self.hash_family.clone(),
                "hashsize".to_string(),
                self.hash_size.to_string(),
                "maxelem".to_string(),
                self.max_elem.to_string(),
            ]);
        } else {
            args.extend(["range".to_string(), self.port_range.clone()]);
        }
        args
    }

    /// The port range of a `bitmap:port` set, parsed (`begin-end`).
    pub fn port_bounds(&self) -> Option<(u32, u32)> {
        let (a, b) = self.port_range.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
}

/// One member of a set (upstream's `utilipset.Entry`). Which fields matter
/// depends on `set_type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub ip: Option<IpAddr>,
    pub port: u16,
    pub protocol: Protocol,
    pub net: Option<IpNet>,
    pub ip2: Option<IpAddr>,
    pub set_type: SetType,
}

impl Entry {
    /// `hash:ip,port`: `ip,proto:port`.
    pub fn ip_port(ip: IpAddr, protocol: Protocol, port: u16) -> Self {
        Entry {
            ip: Some(ip),
            port,
            protocol,
            net: None,
            ip2: None,
            set_type: SetType::HashIpPort,
        }
    }

    /// `hash:ip,port,ip`: `ip,proto:port,ip2`.
    pub fn ip_port_ip(ip: IpAddr, protocol: Protocol, port: u16, ip2: IpAddr) -> Self {
        Entry {
            ip2: Some(ip2),
            set_type: SetType::HashIpPortIp,
            ..Entry::ip_port(ip, protocol, port)
        }
    }

    /// `hash:ip,port,net`: `ip,proto:port,net`.
    pub fn ip_port_net(ip: IpAddr, protocol: Protocol, port: u16, net: IpNet) -> Self {
        Entry {
            net: Some(net),
            set_type: SetType::HashIpPortNet,
            ..Entry::ip_port(ip, protocol, port)
        }
    }

    /// `bitmap:port`: the port alone.
    pub fn port(protocol: Protocol, port: u16) -> Self {
        Entry {
            ip: None,
            port,
            protocol,
            net: None,
            ip2: None,
            set_type: SetType::BitmapPort,
        }
    }

    /// `hash:ip`: the address alone.
    pub fn ip(ip: IpAddr) -> Self {
        Entry {
            ip: Some(ip),
            port: 0,
            protocol: Protocol::Tcp,
            net: None,
            ip2: None,
            set_type: SetType::HashIp,
        }
    }

    /// Upstream's `Entry.Validate(set)`: the fields the type needs are
    /// present, and a `bitmap:port` port lies in the set's range.
    pub fn validate(&self, set: &IpSetSpec) -> bool {
        match self.set_type {
            SetType::HashIp | SetType::HashIpPort => self.ip.is_some(),
            SetType::HashIpPortIp => self.ip.is_some() && self.ip2.is_some(),
            SetType::HashIpPortNet => self.ip.is_some() && self.net.is_some(),
            SetType::BitmapPort => set
                .port_bounds()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&u32::from(self.port))),
        }
    }
}

impl fmt::Display for Entry {
    /// Upstream's `Entry.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = || self.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let proto = self.protocol.lower();
        match self.set_type {
            SetType::HashIp => write!(f, "{}", ip()),
            SetType::HashIpPort => write!(f, "{},{proto}:{}", ip(), self.port),
            SetType::HashIpPortIp => write!(
                f,
                "{},{proto}:{},{}",
                ip(),
                self.port,
                self.ip2.map(|i| i.to_string()).unwrap_or_default()
            ),
            SetType::HashIpPortNet => write!(
                f,
                "{},{proto}:{},{}",
                ip(),
                self.port,
                self.net.map(|n| n.to_string()).unwrap_or_default()
            ),
            SetType::BitmapPort => write!(f, "{}", self.port),
        }
    }
}

/// The kernel's ipsets (upstream `utilipset.Interface`).
pub trait Ipset {
    /// Deletes every entry of a set, keeping the set.
    fn flush_set(&mut self, set: &str) -> Result<(), DataplaneError>;
    /// Deletes a set and its entries.
    fn destroy_set(&mut self, set: &str) -> Result<(), DataplaneError>;
    /// Deletes every set.
    fn destroy_all_sets(&mut self) -> Result<(), DataplaneError>;
    /// Creates a set; with `ignore_exist` an existing set is not an error.
    fn create_set(&mut self, set: &IpSetSpec, ignore_exist: bool) -> Result<(), DataplaneError>;
    /// Adds an entry (its text); with `ignore_exist` a present entry is not
    /// an error.
    fn add_entry(
        &mut self,
        entry: &str,
        set: &IpSetSpec,
        ignore_exist: bool,
    ) -> Result<(), DataplaneError>;
    /// Deletes an entry.
    fn del_entry(&mut self, entry: &str, set: &str) -> Result<(), DataplaneError>;
    /// Whether the set holds the entry.
    fn test_entry(&mut self, entry: &str, set: &str) -> Result<bool, DataplaneError>;
    /// The entries of a set, as `ipset list` prints them.
    fn list_entries(&mut self, set: &str) -> Result<Vec<String>, DataplaneError>;
    /// The names of every set.
    fn list_sets(&mut self) -> Result<Vec<String>, DataplaneError>;
    /// The `ipset` version, `X.Y`.
    fn get_version(&mut self) -> Result<String, DataplaneError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_strings_are_upstreams() {
        let ip: IpAddr = "192.168.1.2".parse().unwrap();
        assert_eq!(
            Entry::ip_port(ip, Protocol::Tcp, 8080).to_string(),
            "192.168.1.2,tcp:8080"
        );
        assert_eq!(
            Entry::ip_port_ip(ip, Protocol::Udp, 53, "10.0.0.1".parse().unwrap()).to_string(),
            "192.168.1.2,udp:53,10.0.0.1"
        );
        assert_eq!(
            Entry::ip_port_net(ip, Protocol::Udp, 80, "10.0.1.0/24".parse().unwrap()).to_string(),
            "192.168.1.2,udp:80,10.0.1.0/24"
        );
        assert_eq!(Entry::port(Protocol::Tcp, 53).to_string(), "53");
        let v6: IpAddr = "2001:db8::1:1".parse().unwrap();
        assert_eq!(
            Entry::ip_port(v6, Protocol::Sctp, 3001).to_string(),
            "2001:db8::1:1,sctp:3001"
        );
    }

    #[test]
    fn specs_take_upstreams_defaults() {
        let s = IpSetSpec::new("KUBE-CLUSTER-IP", SetType::HashIpPort, IpFamily::V6, "c");
        assert_eq!(
            s.create_args().join(" "),
            "create KUBE-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536"
        );
        let b = IpSetSpec::new("KUBE-NODE-PORT-TCP", SetType::BitmapPort, IpFamily::V4, "c");
        assert_eq!(
            b.create_args().join(" "),
            "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535"
        );
        assert!(Entry::port(Protocol::Tcp, 65535).validate(&b));
    }
}
