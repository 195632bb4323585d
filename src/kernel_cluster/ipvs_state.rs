//! A node kernel's IPVS table read back for the `realServers` expectation,
//! worded exactly as the simulator's check words it
//! (`scenario::expect_flows`), so [`super::verdict`] compares the two like
//! any other state check: the real servers of one virtual service, by pod
//! name (or `IP:PORT` when no pod has the address), with their weights.
//!
//! Must never: change the table it reads.
//!
//! Error contract: a [`ClusterError`] when the expectation is malformed or
//! the kernel cannot be read; a missing virtual service is a reading
//! ("no such virtual service"), as in the simulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use proxier::dataplane::Ipvs;
use proxier::k8s::Protocol;
use sim::ipvs::ServiceKey;

use super::ClusterError;
use crate::scenario::plan::Plan;
use crate::scenario::spec::RealServersSpec;

/// `(what, got)` for `spec` on the kernel behind `ipvs`.
pub fn real_servers(
    plan: &Plan,
    spec: &RealServersSpec,
    ipvs: &mut dyn Ipvs,
) -> Result<(String, String), ClusterError> {
    let addr: SocketAddr = spec.service.parse().map_err(|_| {
        ClusterError::Unsupported(format!(
            "expect.realServers.service {:?} is not IP:PORT",
            spec.service
        ))
    })?;
    let upper = spec.protocol.as_deref().map(str::to_ascii_uppercase);
    let (protocol, sim_protocol) = match upper.as_deref() {
        Some("UDP") => (Protocol::Udp, sim::netfilter::Protocol::Udp),
        Some("SCTP") => (Protocol::Sctp, sim::netfilter::Protocol::Sctp),
        _ => (Protocol::Tcp, sim::netfilter::Protocol::Tcp),
    };
    let key = ServiceKey::Addr {
        protocol: sim_protocol,
        addr,
    };
    let what = format!("IPVS real servers of {key} on {}", spec.node);
    let vs = ipvs
        .get_virtual_servers()?
        .into_iter()
        .find(|v| v.address == addr.ip() && v.port == addr.port() && v.protocol == protocol);
    let Some(vs) = vs else {
        return Ok((what, "no such virtual service".into()));
    };
    let got: BTreeMap<String, i32> = ipvs
        .get_real_servers(&vs)?
        .iter()
        .map(|rs| {
            let pod = plan.pods.iter().find(|p| p.ip == rs.address);
            let name = pod.map_or_else(
                || SocketAddr::new(rs.address, rs.port).to_string(),
                |p| p.name.name.clone(),
            );
            (name, rs.weight)
        })
        .collect();
    let shown: Vec<String> = got.iter().map(|(k, v)| format!("{k} weight {v}")).collect();
    Ok((what, shown.join(", ")))
}
