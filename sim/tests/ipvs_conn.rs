//! The IPVS connection table on virtual time, against the kernel's rules
//! (`ip_vs_core.c`, `ip_vs_conn.c`, `ip_vs_proto_tcp.c`): state transitions
//! and timeouts, active/inactive counts, persistence templates and their
//! expiry, one-packet UDP, fwmark and port-0 services. What the table does
//! when servers or sysctls change, and the refusals, are in
//! `ipvs_conn_changes.rs`. Expected times are worked out from the kernel's
//! timeout tables.

use sim::ipvs::{
    ConnState, DestSpec, InVerdict, Ipvs, OutVerdict, Packet, Scheduler, SctpState, ServiceKey,
    ServiceSpec, Sysctls, TcpState, TimeoutUser,
};
use sim::netfilter::Family;
use sim::time::Instant;

mod common;

use common::ipvs_conn::*;

#[test]
fn tcp_lifecycle_moves_between_active_and_inactive() {
    let (mut ipvs, key) = setup(Sysctls::default(), None);
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(0), CLIENT, SYN)),
        (sa(B), true)
    );
    assert_eq!(only_conn(&ipvs), (ConnState::Tcp(TcpState::SynRecv), t(60)));
    assert_eq!(counts(&ipvs, &key, B), (1, 0, 0));
    let reply = ipvs.process_out(t(0), &Packet::tcp(sa(B), sa(CLIENT), SYN | ACK));
    assert!(matches!(reply, OutVerdict::Reply { source, .. } if source == sa(VIP)));
    tcp_in(&mut ipvs, t(1), CLIENT, ACK);
    assert_eq!(
        only_conn(&ipvs),
        (ConnState::Tcp(TcpState::Established), t(901))
    );
    ipvs.advance(t(100));
    tcp_in(&mut ipvs, t(100), CLIENT, FIN | ACK);
    assert_eq!(
        only_conn(&ipvs),
        (ConnState::Tcp(TcpState::CloseWait), t(160))
    );
    assert_eq!(counts(&ipvs, &key, B), (0, 1, 0));
    ipvs.process_out(t(101), &Packet::tcp(sa(B), sa(CLIENT), FIN | ACK));
    tcp_in(&mut ipvs, t(101), CLIENT, ACK);
    assert_eq!(
        only_conn(&ipvs),
        (ConnState::Tcp(TcpState::TimeWait), t(221))
    );
    ipvs.advance(Instant::from_millis(220_999));
    assert_eq!(ipvs.conn_count(), 1);
    ipvs.advance(t(221));
    assert_eq!(ipvs.conn_count(), 0);
    assert_eq!(counts(&ipvs, &key, B), (0, 0, 0));
    assert_eq!(ipvs.next_deadline(), None);
}

#[test]
fn udp_is_always_inactive_and_set_timeout_applies_to_later_packets() {
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::udp(sa("10.96.0.10:53"));
    ipvs.add_service(t(0), ServiceSpec::new(key, Scheduler::Rr))
        .unwrap();
    ipvs.add_dest(t(0), &key, DestSpec::masq(sa("10.244.1.5:53"), 1))
        .unwrap();
    let dns = Packet::udp(sa("10.244.2.9:33000"), sa("10.96.0.10:53"));
    ipvs.process_in(t(0), &dns);
    assert_eq!(only_conn(&ipvs), (ConnState::Udp, t(300)));
    assert_eq!(counts(&ipvs, &key, "10.244.1.5:53"), (0, 1, 0));
    assert_eq!(
        ipvs.list_timeout(),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    let set = TimeoutUser {
        tcp: 0,
        tcp_fin: 0,
        udp: 60,
    };
    ipvs.set_timeout(set).unwrap();
    assert_eq!(
        ipvs.list_timeout(),
        "Timeout (tcp tcpfin udp): 900 120 60\n"
    );
    assert_eq!(only_conn(&ipvs).1, t(300));
    ipvs.process_in(t(10), &dns);
    assert_eq!(only_conn(&ipvs).1, t(70));
}

#[test]
fn a_template_outlives_its_timeout_while_it_controls_connections() {
    // Persistence 30 s. The template is re-armed for 60 s each time it
    // fires while a connection it controls lives (expire_later), and keeps
    // that 60 s timeout for later restarts.
    let (mut ipvs, key) = setup(Sysctls::default(), Some(30));
    assert_eq!(forwarded(tcp_in(&mut ipvs, t(0), CLIENT, SYN)).0, sa(B));
    tcp_in(&mut ipvs, t(0), CLIENT, ACK);
    let tpl = |ipvs: &Ipvs| ipvs.conns().find(|c| c.template).cloned();
    let first = tpl(&ipvs).expect("template");
    assert_eq!(first.state, ConnState::Template { assured: true });
    assert_eq!(
        (first.client, first.vaddr, first.daddr),
        (sa("192.0.2.7:0"), sa(VIP), sa(B))
    );
    assert_eq!(first.expires, t(30));
    assert_eq!(counts(&ipvs, &key, B), (1, 0, 1));
    // Close: CLOSE_WAIT, then TIME_WAIT until 130 s.
    tcp_in(&mut ipvs, t(10), CLIENT, FIN | ACK);
    ipvs.process_out(t(10), &Packet::tcp(sa(B), sa(CLIENT), FIN | ACK));
    ipvs.advance(t(100));
    let held = tpl(&ipvs).expect("held by the TIME_WAIT connection");
    assert_eq!(
        (held.expires, held.timeout.as_secs(), held.n_control),
        (t(150), 60, 1)
    );
    // The TIME_WAIT entry is gone at 130; a new connection at 140 still
    // goes to B and restarts the template with 60 s, not 30 s.
    ipvs.advance(t(140));
    assert_eq!(tpl(&ipvs).map(|c| c.n_control), Some(0));
    let (dest, new) = forwarded(tcp_in(&mut ipvs, t(140), "192.0.2.7:1001", SYN));
    assert_eq!((dest, new), (sa(B), true));
    assert_eq!(tpl(&ipvs).map(|c| c.expires), Some(t(200)));
    // Another client is scheduled normally (rr moves on to A).
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(140), "192.0.2.8:5", SYN)).0,
        sa(A)
    );
}

#[test]
fn a_template_without_connections_expires_on_time() {
    let (mut ipvs, key) = setup(Sysctls::default(), Some(30));
    tcp_in(&mut ipvs, t(0), CLIENT, SYN);
    tcp_in(&mut ipvs, t(0), CLIENT, RST); // SYN_RECV + RST stays SYN_RECV
    ipvs.advance(t(29));
    assert_eq!(ipvs.conn_count(), 2);
    ipvs.advance(t(60)); // connection gone at 60, template re-armed to 90
    assert_eq!(ipvs.conn_count(), 1);
    ipvs.advance(t(89));
    assert_eq!(counts(&ipvs, &key, B), (0, 0, 1));
    ipvs.advance(t(90));
    assert_eq!(ipvs.conn_count(), 0);
    assert_eq!(counts(&ipvs, &key, B), (0, 0, 0));
}

#[test]
fn packets_that_are_not_for_ipvs_or_find_no_server() {
    let (mut ipvs, key) = setup(Sysctls::default(), None);
    let other = Packet::tcp(sa(CLIENT), sa("10.96.0.2:80"), SYN);
    assert_eq!(ipvs.process_in(t(0), &other), InVerdict::Accept);
    assert_eq!(tcp_in(&mut ipvs, t(0), CLIENT, ACK), InVerdict::Accept);
    assert_eq!(
        tcp_in(&mut ipvs, t(0), CLIENT, SYN | RST),
        InVerdict::Accept
    );
    // Source port 20 (FTP data) is never scheduled.
    assert_eq!(
        tcp_in(&mut ipvs, t(0), "192.0.2.7:20", SYN),
        InVerdict::Accept
    );
    for d in [A, B] {
        ipvs.del_dest(t(0), &key, sa(d)).unwrap();
    }
    assert_eq!(
        tcp_in(&mut ipvs, t(0), CLIENT, SYN),
        InVerdict::Unreachable(key)
    );
    let reply = Packet::tcp(sa(A), sa(CLIENT), ACK);
    assert_eq!(ipvs.process_out(t(0), &reply), OutVerdict::Accept);
}

#[test]
fn one_packet_udp_schedules_every_datagram() {
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::udp(sa("10.96.0.10:53"));
    let mut spec = ServiceSpec::new(key, Scheduler::Rr);
    spec.one_packet = true;
    ipvs.add_service(t(0), spec).unwrap();
    for d in ["10.244.1.5:53", "10.244.1.6:53"] {
        ipvs.add_dest(t(0), &key, DestSpec::masq(sa(d), 1)).unwrap();
    }
    let dns = Packet::udp(sa("10.244.2.9:33000"), sa("10.96.0.10:53"));
    let dests: Vec<_> = (0..4)
        .map(|_| forwarded(ipvs.process_in(t(0), &dns)))
        .collect();
    let six = (sa("10.244.1.6:53"), true);
    let five = (sa("10.244.1.5:53"), true);
    assert_eq!(dests, vec![six, five, six, five]);
    assert_eq!(ipvs.conn_count(), 0);
    assert_eq!(ipvs.service(&key).unwrap().live_counters().conns, 4);
}

#[test]
fn port_zero_and_fwmark_services() {
    let mut ipvs = Ipvs::default();
    let any = ServiceKey::tcp(sa("10.96.0.5:0"));
    ipvs.add_service(t(0), ServiceSpec::new(any, Scheduler::Rr).persistent(60))
        .unwrap();
    ipvs.add_dest(t(0), &any, DestSpec::masq(sa("10.244.1.1:0"), 1))
        .unwrap();
    let syn = Packet::tcp(sa(CLIENT), sa("10.96.0.5:443"), SYN);
    assert_eq!(
        forwarded(ipvs.process_in(t(0), &syn)).0,
        sa("10.244.1.1:443")
    );
    let tpl = ipvs.conns().find(|c| c.template).expect("template");
    assert_eq!(tpl.vaddr, sa("10.96.0.5:0"));
    // Without persistence a port-0 service schedules nothing.
    let plain = ServiceKey::tcp(sa("10.96.0.6:0"));
    ipvs.add_service(t(0), ServiceSpec::new(plain, Scheduler::Rr))
        .unwrap();
    ipvs.add_dest(t(0), &plain, DestSpec::masq(sa("10.244.1.1:0"), 1))
        .unwrap();
    let syn = Packet::tcp(sa(CLIENT), sa("10.96.0.6:443"), SYN);
    assert_eq!(ipvs.process_in(t(0), &syn), InVerdict::Unreachable(plain));
    // A fwmark service wins over an address service for marked packets.
    let fwm = ServiceKey::Fwmark {
        family: Family::Ipv4,
        mark: 7,
    };
    ipvs.add_service(t(0), ServiceSpec::new(fwm, Scheduler::Rr).persistent(60))
        .unwrap();
    ipvs.add_dest(t(0), &fwm, DestSpec::masq(sa("10.244.3.3:9000"), 1))
        .unwrap();
    // Persistent fwmark services keep the client's destination port
    // (dst_port != svc->port, which is 0), whatever the real server's port.
    let marked = Packet::tcp(sa("192.0.2.1:5"), sa("10.96.0.5:443"), SYN).with_mark(7);
    assert_eq!(
        forwarded(ipvs.process_in(t(0), &marked)).0,
        sa("10.244.3.3:443")
    );
    let tpl = ipvs
        .conns()
        .filter(|c| c.template)
        .last()
        .expect("template");
    assert_eq!(
        (tpl.protocol, tpl.vaddr, tpl.daddr),
        (None, sa("0.0.0.7:0"), sa("10.244.3.3:0"))
    );
}

#[test]
fn sctp_association_becomes_active_when_established() {
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::sctp(sa("10.96.0.7:9999"));
    ipvs.add_service(t(0), ServiceSpec::new(key, Scheduler::Rr))
        .unwrap();
    ipvs.add_dest(t(0), &key, DestSpec::masq(sa("10.244.1.9:9999"), 1))
        .unwrap();
    let (c, v, s) = (sa(CLIENT), sa("10.96.0.7:9999"), sa("10.244.1.9:9999"));
    assert_eq!(
        ipvs.process_in(t(0), &Packet::sctp(c, v, 0)),
        InVerdict::Accept
    );
    ipvs.process_in(t(0), &Packet::sctp(c, v, 1)); // INIT
    assert_eq!(only_conn(&ipvs), (ConnState::Sctp(SctpState::Init1), t(4)));
    ipvs.process_out(t(0), &Packet::sctp(s, c, 2)); // INIT ACK
    ipvs.process_in(t(0), &Packet::sctp(c, v, 10)); // COOKIE ECHO
    assert_eq!(
        only_conn(&ipvs).0,
        ConnState::Sctp(SctpState::CookieReplied)
    );
    assert_eq!(counts(&ipvs, &key, "10.244.1.9:9999"), (0, 1, 0));
    ipvs.process_out(t(0), &Packet::sctp(s, c, 11)); // COOKIE ACK
    assert_eq!(
        only_conn(&ipvs),
        (ConnState::Sctp(SctpState::Established), t(900))
    );
    assert_eq!(counts(&ipvs, &key, "10.244.1.9:9999"), (1, 0, 0));
}

#[test]
fn time_never_runs_backwards() {
    let (mut ipvs, _) = setup(Sysctls::default(), None);
    tcp_in(&mut ipvs, t(100), CLIENT, SYN);
    // An earlier timestamp is treated as "now" (100 s).
    tcp_in(&mut ipvs, t(5), CLIENT, ACK);
    assert_eq!(
        only_conn(&ipvs),
        (ConnState::Tcp(TcpState::Established), t(1000))
    );
}

#[test]
fn a_replaced_entry_still_counts_while_its_successor_is_scheduled() {
    // lc over B, A. The TIME_WAIT entry a SYN replaces is freed by its timer
    // after the SYN is scheduled (ip_vs_conn_expire_now), so B still has one
    // inactive connection and loses to the idle A.
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::tcp(sa(VIP));
    ipvs.add_service(t(0), ServiceSpec::new(key, Scheduler::Lc))
        .unwrap();
    for d in [A, B] {
        ipvs.add_dest(t(0), &key, DestSpec::masq(sa(d), 1)).unwrap();
    }
    assert_eq!(forwarded(tcp_in(&mut ipvs, t(0), CLIENT, SYN)).0, sa(B));
    tcp_in(&mut ipvs, t(0), CLIENT, ACK);
    tcp_in(&mut ipvs, t(1), CLIENT, FIN | ACK);
    ipvs.process_out(t(1), &Packet::tcp(sa(B), sa(CLIENT), FIN | ACK));
    assert_eq!(counts(&ipvs, &key, B), (0, 1, 0));
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(2), CLIENT, SYN)),
        (sa(A), true)
    );
    assert_eq!(counts(&ipvs, &key, B), (0, 0, 0));
    assert_eq!(counts(&ipvs, &key, A), (1, 0, 0));
}
