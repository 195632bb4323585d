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
//! subnet, else its first address of the family).
//!
//! Must never: let two interfaces share a name.
//!
//! Error contract: [`IfaceError`] for unknown interfaces, duplicates and
//! impossible prefixes; queries cannot fail.

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

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`, `cni0`, `kube-ipvs0`…).
    pub name: String,
    /// Its addresses in the order added.
    pub addrs: Vec<IfAddr>,
    /// Whether it is the loopback device.
    pub loopback: bool,
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
}

impl Default for Interfaces {
    fn default() -> Self {
        Interfaces {
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
                loopback: true,
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

    /// Add an interface with no addresses.
    pub fn add(&mut self, name: &str) -> Result<(), IfaceError> {
        if self.get(name).is_some() {
            return Err(IfaceError::Exists { name: name.into() });
        }
        self.list.push(Interface {
            name: name.into(),
            addrs: Vec::new(),
            loopback: false,
        });
        Ok(())
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
        if i.addrs.iter().any(|a| a.addr == addr) {
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
        let before = i.addrs.len();
        i.addrs.retain(|a| a.addr != addr);
        Ok(i.addrs.len() != before)
    }

    /// Whether `addr` is local to the node (on any interface, or loopback).
    pub fn is_local(&self, addr: IpAddr) -> bool {
        is_loopback_net(addr)
            || self
                .list
                .iter()
                .any(|i| i.addrs.iter().any(|a| a.addr == addr))
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
        let ifaces: Vec<&Interface> = self.list.iter().filter(on_dev).collect();
        let local = ifaces.iter().any(|i| {
            i.addrs.iter().any(|x| x.addr == addr) || (i.loopback && is_loopback_net(addr))
        });
        if local {
            return RTN_LOCAL;
        }
        if ifaces
            .iter()
            .any(|i| i.addrs.iter().any(|x| x.broadcast() == Some(addr)))
        {
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
