//! A node's interfaces and addresses, and what the kernel concludes from
//! them: which addresses are local, their routing type for `-m addrtype`,
//! and the source address a packet leaving an interface gets.
//!
//! Models: interfaces in creation order (`lo` first, holding 127.0.0.1/8
//! and ::1/128), each with addresses and prefix lengths (in the order they
//! were added, the first of a family being the primary); the local table —
//! every address of every interface is local to the whole node (Linux's
//! weak host model) and so is all of 127.0.0.0/8; `inet_addr_type`
//! (0.0.0.0 and 255.255.255.255 are BROADCAST, 224.0.0.0/4 MULTICAST, a
//! subnet's broadcast address BROADCAST, local addresses LOCAL, the rest
//! UNICAST; with an interface given, only that interface's entries count);
//! and `inet_select_addr` (the address of an interface on the next hop's
//! subnet, else its first address of the family). Interfaces have a kind:
//! loopback, Ethernet-like, bridge (`-m physdev` asks whether a packet
//! came in through one) or dummy (IPVS mode's `kube-ipvs0`: its addresses
//! are local like any other; it is down, so it adds no connected or
//! broadcast routes, and nothing is attached to it). A local-address index
//! keeps lookups logarithmic however many addresses a node holds.
//!
//! Must never: let two interfaces share a name.
//!
//! Error contract: [`IfaceError`] for unknown interfaces, duplicates and
//! impossible prefixes; queries cannot fail.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::netfilter::{Cidr, Family};

/// RTN_* indices used by `-m addrtype`.
pub(crate) const RTN_UNICAST: usize = 1;
pub(crate) const RTN_LOCAL: usize = 2;
pub(crate) const RTN_BROADCAST: usize = 3;
pub(crate) const RTN_MULTICAST: usize = 5;

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

impl IfAddr {
    /// The connected network.
    pub fn network(&self) -> Cidr {
        Cidr::new(self.addr, self.prefix).expect("prefix checked when the address was added")
    }

    /// The IPv4 subnet broadcast address (none for /31, /32 and IPv6).
    pub fn broadcast(&self) -> Option<IpAddr> {
        match self.addr {
            IpAddr::V4(a) if self.prefix < 31 => {
                let host = u32::MAX >> self.prefix;
                Some(IpAddr::V4(Ipv4Addr::from(u32::from(a) | host)))
            }
            _ => None,
        }
    }
}

/// What kind of device an interface is (`ip link add … type KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IfaceKind {
    /// `lo`.
    Loopback,
    /// A NIC or veth end.
    Ethernet,
    /// A Linux bridge (`cni0`); with `br_netfilter`, packets entering
    /// through its ports carry bridge info.
    Bridge,
    /// A dummy device (`kube-ipvs0`): holds addresses, carries nothing.
    Dummy,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`, `cni0`, `kube-ipvs0`…).
    pub name: String,
    /// Its addresses in the order added.
    pub addrs: Vec<IfAddr>,
    /// Its kind.
    pub kind: IfaceKind,
}

impl Interface {
    /// Whether it is the loopback device.
    pub fn is_loopback(&self) -> bool {
        self.kind == IfaceKind::Loopback
    }
}

/// Why an interface operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfaceError {
    /// No interface of that name.
    #[error("no interface `{name}`; hint: add it first")]
    NoSuchInterface { name: String },
    /// An interface of that name exists.
    #[error("interface `{name}` exists")]
    Exists { name: String },
    /// A prefix longer than the address.
    #[error("bad prefix /{prefix} for {addr}")]
    BadPrefix { addr: IpAddr, prefix: u8 },
    /// The address is already on the interface.
    #[error("{addr} is already on `{name}`")]
    AddressExists { name: String, addr: IpAddr },
}

/// All interfaces of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    list: Vec<Interface>,
    /// Every (address, interface) pair: the local table, so that a node
    /// with 100,000 service addresses on `kube-ipvs0` still answers "is
    /// this address local" without walking them (the kernel hashes it).
    index: BTreeSet<(IpAddr, String)>,
}

impl Default for Interfaces {
    fn default() -> Self {
        let index = [
            (IpAddr::V4(Ipv4Addr::LOCALHOST), "lo".to_string()),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), "lo".to_string()),
        ]
        .into();
        Interfaces {
            index,
            list: vec![Interface {
                name: "lo".into(),
                addrs: vec![
                    IfAddr {
                        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                        prefix: 8,
                    },
                    IfAddr {
                        addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                        prefix: 128,
                    },
                ],
                kind: IfaceKind::Loopback,
            }],
        }
    }
}

fn is_loopback_net(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[0] == 127,
        IpAddr::V6(a) => a == Ipv6Addr::LOCALHOST,
    }
}

impl Interfaces {
    /// Every interface, `lo` first.
    pub fn iter(&self) -> impl Iterator<Item = &Interface> {
        self.list.iter()
    }

    /// The interface called `name`.
    pub fn get(&self, name: &str) -> Option<&Interface> {
        self.list.iter().find(|i| i.name == name)
    }

    /// Add an Ethernet-like interface with no addresses.
    pub fn add(&mut self, name: &str) -> Result<(), IfaceError> {
        self.add_kind(name, IfaceKind::Ethernet)
    }

    /// Add an interface of `kind` with no addresses (a second loopback is
    /// refused like a duplicate).
    pub fn add_kind(&mut self, name: &str, kind: IfaceKind) -> Result<(), IfaceError> {
        if self.get(name).is_some() || kind == IfaceKind::Loopback {
            return Err(IfaceError::Exists { name: name.into() });
        }
        self.list.push(Interface {
            name: name.into(),
            addrs: Vec::new(),
            kind,
        });
        Ok(())
    }

    /// Delete an interface and its addresses (`ip link del`); `lo` cannot
    /// be deleted.
    pub fn remove(&mut self, name: &str) -> Result<(), IfaceError> {
        let at = self
            .list
            .iter()
            .position(|i| i.name == name && !i.is_loopback())
            .ok_or_else(|| IfaceError::NoSuchInterface { name: name.into() })?;
        let gone = self.list.remove(at);
        for a in gone.addrs {
            self.index.remove(&(a.addr, gone.name.clone()));
        }
        Ok(())
    }

    /// `ip addr show NAME`, without the kernel's interface index, link
    /// address and address lifetimes; `None` when there is no such
    /// interface. A dummy device is shown DOWN, as kube-proxy leaves
    /// `kube-ipvs0`.
    pub fn show(&self, name: &str) -> Option<String> {
        let i = self.get(name)?;
        let (flags, mtu, state) = match i.kind {
            IfaceKind::Loopback => ("LOOPBACK,UP,LOWER_UP", 65536, "UNKNOWN"),
            IfaceKind::Ethernet | IfaceKind::Bridge => {
                ("BROADCAST,MULTICAST,UP,LOWER_UP", 1500, "UP")
            }
            IfaceKind::Dummy => ("BROADCAST,NOARP", 1500, "DOWN"),
        };
        let mut out = format!("{name}: <{flags}> mtu {mtu} state {state}\n");
        for a in &i.addrs {
            let scope = if is_loopback_net(a.addr) {
                "host"
            } else {
                "global"
            };
            let line = match a.addr {
                IpAddr::V4(v4) => format!("    inet {v4}/{} scope {scope} {name}\n", a.prefix),
                IpAddr::V6(v6) => format!("    inet6 {v6}/{} scope {scope}\n", a.prefix),
            };
            out.push_str(&line);
        }
        Some(out)
    }

    /// Whether `name` is a bridge.
    pub fn is_bridge(&self, name: &str) -> bool {
        self.get(name).is_some_and(|i| i.kind == IfaceKind::Bridge)
    }

    /// Add `addr/prefix` to interface `name`.
    pub fn add_addr(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), IfaceError> {
        if Cidr::new(addr, prefix).is_none() {
            return Err(IfaceError::BadPrefix { addr, prefix });
        }
        let i = self
            .list
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| IfaceError::NoSuchInterface { name: name.into() })?;
        if !self.index.insert((addr, name.to_string())) {
            return Err(IfaceError::AddressExists {
                name: name.into(),
                addr,
            });
        }
        i.addrs.push(IfAddr { addr, prefix });
        Ok(())
    }

    /// Remove `addr` from interface `name`; returns whether it was there.
    pub fn del_addr(&mut self, name: &str, addr: IpAddr) -> Result<bool, IfaceError> {
        let i = self
            .list
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| IfaceError::NoSuchInterface { name: name.into() })?;
        if !self.index.remove(&(addr, name.to_string())) {
            return Ok(false);
        }
        i.addrs.retain(|a| a.addr != addr);
        Ok(true)
    }

    /// Whether interface `name` holds `addr`.
    pub fn has_addr(&self, name: &str, addr: IpAddr) -> bool {
        self.index.contains(&(addr, name.to_string()))
    }

    /// Whether `addr` is on some interface.
    fn on_any(&self, addr: IpAddr) -> bool {
        self.index
            .range((addr, String::new())..)
            .next()
            .is_some_and(|(a, _)| *a == addr)
    }

    /// Whether `addr` is local to the node (on any interface, or loopback).
    pub fn is_local(&self, addr: IpAddr) -> bool {
        is_loopback_net(addr) || self.on_any(addr)
    }

    /// The interface holding local address `addr` (`lo` for 127.0.0.0/8).
    pub fn owner(&self, addr: IpAddr) -> Option<&Interface> {
        self.list
            .iter()
            .find(|i| i.addrs.iter().any(|a| a.addr == addr))
            .or_else(|| is_loopback_net(addr).then(|| self.list.first()).flatten())
    }

    /// Every local address of a family, interface by interface.
    pub fn local_addrs(&self, family: Family) -> Vec<IpAddr> {
        self.list
            .iter()
            .flat_map(|i| i.addrs.iter().map(|a| a.addr))
            .filter(|a| Family::of(*a) == family)
            .collect()
    }

    /// `inet_addr_type_dev_table`: the `RTN_*` type of `addr`, counting only
    /// interface `dev`'s entries when given.
    pub fn addr_type(&self, addr: IpAddr, dev: Option<&str>) -> usize {
        let on_dev = |i: &&Interface| dev.is_none_or(|d| i.name == d);
        match addr {
            IpAddr::V4(a) => {
                if a.is_unspecified() || a.is_broadcast() {
                    return RTN_BROADCAST;
                }
                if a.is_multicast() {
                    return RTN_MULTICAST;
                }
            }
            IpAddr::V6(a) => {
                if a.is_multicast() {
                    return RTN_MULTICAST;
                }
            }
        }
        let local = match dev {
            None => self.is_local(addr),
            Some(d) => {
                self.has_addr(d, addr)
                    || (is_loopback_net(addr) && self.get(d).is_some_and(Interface::is_loopback))
            }
        };
        if local {
            return RTN_LOCAL;
        }
        // A dummy device is down: it has no broadcast routes.
        let broadcast = self
            .list
            .iter()
            .filter(on_dev)
            .filter(|i| i.kind != IfaceKind::Dummy)
            .any(|i| i.addrs.iter().any(|x| x.broadcast() == Some(addr)));
        if broadcast {
            return RTN_BROADCAST;
        }
        RTN_UNICAST
    }

    /// `inet_select_addr`: the source for a packet leaving `dev` towards
    /// `next_hop`.
    pub fn select_addr(&self, dev: &str, next_hop: IpAddr) -> Option<IpAddr> {
        let i = self.get(dev)?;
        let fam = Family::of(next_hop);
        let same: Vec<&IfAddr> = i
            .addrs
            .iter()
            .filter(|a| Family::of(a.addr) == fam)
            .collect();
        same.iter()
            .find(|a| a.network().contains(next_hop))
            .or_else(|| same.first())
            .map(|a| a.addr)
    }
}
