//! A node's IPVS table and what goes with it: the `net.ipv4.vs.*`
//! sysctls, dummy devices (IPVS mode binds service addresses to
//! `kube-ipvs0` so the node takes them as local), and letting time pass.
//!
//! Models: one [`Ipvs`] per node (network namespace), kept with the state
//! that changes while packets flow (so explorations work on copies); the
//! sysctls `conntrack`, `conn_reuse_mode`, `expire_nodest_conn`,
//! `expire_quiescent_template`, `sloppy_tcp` and `sloppy_sctp`; dummy
//! devices as interfaces of kind [`IfaceKind::Dummy`] — their addresses
//! are local (`addrtype LOCAL`, delivered locally) and nothing is attached
//! to them; and the reference count of ipsets (rules using them), which
//! keeps a set in use from being destroyed. The packet path's IPVS hooks
//! are in `path::ipvs_hook`.
//!
//! Must never: read a clock — time passes through [`Node::expire`].
//!
//! Error contract: [`NodeError`] for an unknown sysctl or a bad value, for
//! dummy devices that exist or do not; the IPVS table's own control calls
//! return [`crate::ipvs::IpvsError`] through [`Node::ipvs_mut`].

use super::{IfaceError, IfaceKind, Node, NodeError};
use crate::conntrack::SysctlError;
use crate::ipvs::Ipvs;
use crate::time::Instant;

impl Node {
    /// The IPVS table.
    pub fn ipvs(&self) -> &Ipvs {
        &self.state.ipvs
    }

    /// The IPVS table, to change (`ipvsadm`, kube-proxy's netlink calls).
    pub fn ipvs_mut(&mut self) -> &mut Ipvs {
        &mut self.state.ipvs
    }

    /// Let virtual time reach `now`: conntrack entries and IPVS
    /// connections whose timers ran out go (both also expire lazily when
    /// packets arrive).
    pub fn expire(&mut self, now: Instant) {
        self.state.conntrack.expire(now);
        self.state.ipvs.advance(now);
    }

    /// `ip link add NAME type dummy`.
    pub fn add_dummy_interface(&mut self, name: &str) -> Result<(), NodeError> {
        Ok(self.ifaces.add_kind(name, IfaceKind::Dummy)?)
    }

    /// `ip link add NAME type bridge`.
    pub fn add_bridge_interface(&mut self, name: &str) -> Result<(), NodeError> {
        Ok(self.ifaces.add_kind(name, IfaceKind::Bridge)?)
    }

    /// `ip link del NAME` for a dummy device.
    pub fn del_dummy_interface(&mut self, name: &str) -> Result<(), NodeError> {
        match self.ifaces.get(name) {
            Some(i) if i.kind == IfaceKind::Dummy => Ok(self.ifaces.remove(name)?),
            _ => Err(IfaceError::NoSuchInterface { name: name.into() }.into()),
        }
    }

    /// How many iptables rules (both families) reference ipset `name`
    /// with `-m set` — what the kernel counts before it lets a set go.
    pub fn ipset_references(&self, name: &str) -> usize {
        self.iptables
            .iter()
            .flat_map(|rs| rs.tables())
            .flat_map(|t| t.chains())
            .flat_map(|c| c.rules())
            .filter(|r| {
                r.matches
                    .iter()
                    .any(|m| matches!(m, crate::netfilter::Match::Set(s) if s.name == name))
            })
            .count()
    }

    /// The value of an IPVS sysctl (`net.ipv4.vs.NAME`, dots or slashes).
    pub fn vs_sysctl(&self, name: &str) -> Option<i64> {
        let s = self.state.ipvs.sysctls();
        Some(match vs_name(name)? {
            "conntrack" => i64::from(s.conntrack),
            "conn_reuse_mode" => i64::from(s.conn_reuse_mode),
            "expire_nodest_conn" => i64::from(s.expire_nodest_conn),
            "expire_quiescent_template" => i64::from(s.expire_quiescent_template),
            "sloppy_tcp" => i64::from(s.sloppy_tcp),
            "sloppy_sctp" => i64::from(s.sloppy_sctp),
            _ => return None,
        })
    }

    /// Set an IPVS sysctl (`net.ipv4.vs.NAME`); later packets see it.
    pub(super) fn set_vs_sysctl(&mut self, name: &str, value: i64) -> Result<(), NodeError> {
        let err = |reason| SysctlError {
            name: name.to_string(),
            reason,
        };
        let short = vs_name(name).ok_or_else(|| err("not an IPVS sysctl"))?;
        let v = u8::try_from(value).map_err(|_| err("value out of range (0-255)"))?;
        let mut s = self.state.ipvs.sysctls();
        match short {
            "conntrack" => s.conntrack = v != 0,
            "conn_reuse_mode" => s.conn_reuse_mode = v,
            "expire_nodest_conn" => s.expire_nodest_conn = v != 0,
            "expire_quiescent_template" => s.expire_quiescent_template = v != 0,
            "sloppy_tcp" => s.sloppy_tcp = v != 0,
            "sloppy_sctp" => s.sloppy_sctp = v != 0,
            _ => return Err(err("not modelled; hint: see ipvs::Sysctls").into()),
        }
        self.state.ipvs.set_sysctls(s);
        Ok(())
    }
}

/// `conntrack` from `net.ipv4.vs.conntrack` or `net/ipv4/vs/conntrack`.
fn vs_name(name: &str) -> Option<&str> {
    name.strip_prefix("net.ipv4.vs.")
        .or_else(|| name.strip_prefix("net/ipv4/vs/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Variant;

    #[test]
    fn vs_sysctls_and_dummy_devices() {
        let mut n = Node::new("n", 1, Variant::Nft);
        n.set_sysctl("net/ipv4/vs/conntrack", 1).unwrap();
        n.set_sysctl("net.ipv4.vs.expire_nodest_conn", 1).unwrap();
        assert_eq!(n.vs_sysctl("net.ipv4.vs.conntrack"), Some(1));
        assert!(n.ipvs().sysctls().expire_nodest_conn);
        assert!(n.set_sysctl("net.ipv4.vs.drop_entry", 1).is_err());
        assert!(n.set_sysctl("net.ipv4.vs.conntrack", -1).is_err());
        n.add_dummy_interface("kube-ipvs0").unwrap();
        n.add_address("kube-ipvs0", "10.96.0.1".parse().unwrap(), 32)
            .unwrap();
        assert!(n.is_local("10.96.0.1".parse().unwrap()));
        assert!(n.add_dummy_interface("kube-ipvs0").is_err());
        assert!(n.del_dummy_interface("lo").is_err());
        n.del_dummy_interface("kube-ipvs0").unwrap();
        assert!(!n.is_local("10.96.0.1".parse().unwrap()));
    }
}
