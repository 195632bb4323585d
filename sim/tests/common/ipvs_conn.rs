//! An IPVS table with one TCP virtual service over two real servers, and
//! the packets and counters the connection-table tests read: what
//! `ipvs_conn.rs` and `ipvs_conn_changes.rs` share. It builds, sends and
//! reads only; it must never assert on a table's behaviour (bar the
//! one-connection helper's own precondition).

use std::net::SocketAddr;

use sim::ipvs::{
    ConnState, DestSpec, InVerdict, Ipvs, IpvsConfig, Packet, Scheduler, ServiceKey, ServiceSpec,
    Sysctls,
};
use sim::time::Instant;

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

pub const VIP: &str = "10.96.0.1:80";
pub const A: &str = "10.244.1.1:8080";
pub const B: &str = "10.244.1.2:8080";
pub const CLIENT: &str = "192.0.2.7:1000";

pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

pub fn t(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

/// rr over A then B (so the list, and rr, go B, A).
pub fn setup(sysctls: Sysctls, persistent: Option<u32>) -> (Ipvs, ServiceKey) {
    let mut ipvs = Ipvs::new(IpvsConfig {
        sysctls,
        ..IpvsConfig::default()
    });
    let key = ServiceKey::tcp(sa(VIP));
    let mut spec = ServiceSpec::new(key, Scheduler::Rr);
    if let Some(secs) = persistent {
        spec = spec.persistent(secs);
    }
    ipvs.add_service(t(0), spec).unwrap();
    for d in [A, B] {
        ipvs.add_dest(t(0), &key, DestSpec::masq(sa(d), 1)).unwrap();
    }
    (ipvs, key)
}

pub fn tcp_in(ipvs: &mut Ipvs, at: Instant, client: &str, flags: u8) -> InVerdict {
    ipvs.process_in(at, &Packet::tcp(sa(client), sa(VIP), flags))
}

pub fn forwarded(v: InVerdict) -> (SocketAddr, bool) {
    match v {
        InVerdict::Forward(f) => (f.dest, f.new_conn),
        other => panic!("expected a forward, got {other:?}"),
    }
}

/// (active, inactive, persistent) of the server at `addr`.
pub fn counts(ipvs: &Ipvs, key: &ServiceKey, addr: &str) -> (u32, u32, u32) {
    let d = ipvs
        .dests(key)
        .unwrap()
        .into_iter()
        .chain(ipvs.trash())
        .find(|d| d.addr == sa(addr))
        .expect("server");
    (d.active_conns, d.inact_conns, d.persist_conns)
}

pub fn only_conn(ipvs: &Ipvs) -> (ConnState, Instant) {
    let v: Vec<_> = ipvs.conns().filter(|c| !c.template).collect();
    assert_eq!(v.len(), 1, "{v:?}");
    (v[0].state, v[0].expires)
}
