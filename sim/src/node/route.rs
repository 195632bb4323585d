//! A node's routing decision: local delivery or which interface and next
//! hop, and the preferred source address.
//!
//! Models: the local table (every local address, and 127.0.0.0/8, is
//! delivered locally), then the main table — connected routes derived from
//! interface addresses (`proto kernel scope link src ADDR`) and static
//! routes (`DST [via GW] dev DEV [src ADDR]`, `blackhole DST`,
//! `unreachable DST`), the longest prefix winning, connected routes before
//! static ones of equal length, then static routes in the order added. A
//! default route is a static route to 0.0.0.0/0 or ::/0.
//!
//! Must never: route across families, or depend on anything but the
//! interfaces and routes it holds.
//!
//! Error contract: [`RouteError`] for a route whose device does not exist;
//! lookups cannot fail (no route is [`RouteResult::Unreachable`]).

use std::net::IpAddr;

use super::iface::Interfaces;
use crate::netfilter::{Cidr, Family};

/// What kind of route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// A normal route through a device.
    Unicast,
    /// `blackhole`: silently dropped.
    Blackhole,
    /// `unreachable`: dropped with an error.
    Unreachable,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Destination network.
    pub dst: Cidr,
    /// Gateway; `None` for a directly reachable network.
    pub via: Option<IpAddr>,
    /// Output device (empty for blackhole/unreachable routes).
    pub dev: String,
    /// Preferred source (`src`).
    pub src: Option<IpAddr>,
    /// Kind.
    pub kind: RouteKind,
}

/// Where a destination goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteResult {
    /// Delivered to this node (through `lo` when generated locally).
    Local,
    /// Sent out of `dev` to `next_hop`, preferably from `src`.
    Unicast {
        /// Output device.
        dev: String,
        /// The neighbour the packet goes to (gateway or destination).
        next_hop: IpAddr,
        /// Preferred source address, when the node has one on `dev`.
        src: Option<IpAddr>,
    },
    /// A blackhole route.
    Blackhole,
    /// No route, or an unreachable route.
    Unreachable,
}

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The device does not exist.
    #[error("no device `{dev}` for route to {dst}; hint: add the interface first")]
    NoDevice { dev: String, dst: Cidr },
}

/// Static routes of a node (connected routes come from its interfaces).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routes {
    list: Vec<Route>,
}

impl Routes {
    /// Add a static route.
    pub fn add(&mut self, route: Route, ifaces: &Interfaces) -> Result<(), RouteError> {
        if route.kind == RouteKind::Unicast && ifaces.get(&route.dev).is_none() {
            return Err(RouteError::NoDevice {
                dev: route.dev.clone(),
                dst: route.dst,
            });
        }
        self.list.push(route);
        Ok(())
    }

    /// Remove every static route to `dst`; returns how many went.
    pub fn remove(&mut self, dst: Cidr) -> usize {
        let before = self.list.len();
        self.list.retain(|r| r.dst != dst);
        before - self.list.len()
    }

    /// The static routes in the order added.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.list.iter()
    }

    /// The routing decision for `dst`.
    pub fn lookup(&self, dst: IpAddr, ifaces: &Interfaces) -> RouteResult {
        if ifaces.is_local(dst) {
            return RouteResult::Local;
        }
        let fam = Family::of(dst);
        // (prefix, rank) — higher prefix wins, then lower rank.
        let mut best: Option<((u8, usize), RouteResult)> = None;
        let mut consider = |key: (u8, usize), res: RouteResult| {
            let better = match &best {
                None => true,
                Some((k, _)) => key.0 > k.0 || (key.0 == k.0 && key.1 < k.1),
            };
            if better {
                best = Some((key, res));
            }
        };
        // A down dummy device (`kube-ipvs0`) has no connected routes.
        let connected = |i: &&super::iface::Interface| {
            !i.is_loopback() && i.kind != super::iface::IfaceKind::Dummy
        };
        for i in ifaces.iter().filter(connected) {
            for a in i.addrs.iter().filter(|a| Family::of(a.addr) == fam) {
                if a.network().contains(dst) {
                    consider(
                        (a.prefix, 0),
                        RouteResult::Unicast {
                            dev: i.name.clone(),
                            next_hop: dst,
                            src: Some(a.addr),
                        },
                    );
                }
            }
        }
        for (n, r) in self.list.iter().enumerate() {
            if r.dst.family() != fam || !r.dst.contains(dst) {
                continue;
            }
            let res = match r.kind {
                RouteKind::Blackhole => RouteResult::Blackhole,
                RouteKind::Unreachable => RouteResult::Unreachable,
                RouteKind::Unicast => {
                    let next_hop = r.via.unwrap_or(dst);
                    RouteResult::Unicast {
                        dev: r.dev.clone(),
                        next_hop,
                        src: r.src.or_else(|| ifaces.select_addr(&r.dev, next_hop)),
                    }
                }
            };
            consider((r.dst.prefix(), n + 1), res);
        }
        best.map(|(_, r)| r).unwrap_or(RouteResult::Unreachable)
    }
}
