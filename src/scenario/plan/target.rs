//! Where a traffic step's `to` points: an address, a node's address or a
//! load balancer's, with its port. The simulator's runner and the namespace
//! cluster both resolve targets here, so they aim at the same place. It
//! reads the plan only and must never allocate; an unknown or portless
//! target is an `Err` with the fix in the message.

use std::net::{IpAddr, SocketAddr};

use super::Plan;

/// A traffic target — `ip:port`, `node:port`, `lb[:port]` (a load
/// balancer's first port unless one is given).
pub fn resolve_target(plan: &Plan, to: &str) -> Result<SocketAddr, String> {
    let (host, port) = match to.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && h.parse::<std::net::Ipv6Addr>().is_err() => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("bad port in {to:?}"))?,
            ),
        ),
        _ => (to, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let need = || format!("{to:?} needs a port");
    if let Ok(ip) = host.parse::<IpAddr>() {
        return port.map(|p| SocketAddr::new(ip, p)).ok_or_else(need);
    }
    if let Some(n) = plan.nodes.iter().find(|n| n.name == host) {
        return port.map(|p| SocketAddr::new(n.ip, p)).ok_or_else(need);
    }
    if let Some(lb) = plan.load_balancers.iter().find(|l| l.name == host) {
        let svc = plan.service_of(lb);
        let port = port
            .or_else(|| svc.ports.first().map(|p| p.port))
            .ok_or_else(need)?;
        return Ok(SocketAddr::new(lb.ip, port));
    }
    Err(format!(
        "traffic target {to:?} is not ip:port, node:port or a load balancer"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_to_addresses_ports_and_balancers() {
        let path = format!("{}/scenarios/loadbalancer.yaml", env!("CARGO_MANIFEST_DIR"));
        let plan = crate::scenario::load(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let r = |to| resolve_target(&plan, to);
        assert_eq!(r("10.96.0.90:443"), Ok("10.96.0.90:443".parse().unwrap()));
        assert_eq!(r("node-b:31443"), Ok("192.168.0.11:31443".parse().unwrap()));
        assert_eq!(r("cloud-lb"), Ok("34.120.1.10:443".parse().unwrap()));
        assert!(r("node-b").unwrap_err().contains("needs a port"));
        assert!(r("nowhere:80").is_err());
    }
}
