//! The IPVS connection table when its configuration changes under live
//! connections, against the kernel's rules (`ip_vs_conn.c`, `ip_vs_ctl.c`):
//! a weight-0 server drained, a deleted server in the trash and revived,
//! the `expire_nodest_conn` / `expire_quiescent_template` /
//! `conn_reuse_mode` sysctls, and requests the kernel refuses.

use sim::ipvs::{
    ConnState, DestSpec, DropReason, InVerdict, Ipvs, IpvsError, Packet, Persistence, Scheduler,
    ServiceKey, ServiceSpec, Sysctls, TcpState, TimeoutUser,
};
use sim::netfilter::{Family, Protocol};

mod common;

use common::ipvs_conn::*;

#[test]
fn quiesced_server_keeps_affinity_unless_expire_quiescent_template() {
    for (quiescent, want) in [(false, B), (true, A)] {
        let sys = Sysctls {
            expire_quiescent_template: quiescent,
            ..Sysctls::default()
        };
        let (mut ipvs, key) = setup(sys, Some(300));
        assert_eq!(forwarded(tcp_in(&mut ipvs, t(0), CLIENT, SYN)).0, sa(B));
        ipvs.edit_dest(t(1), &key, DestSpec::masq(sa(B), 0))
            .unwrap();
        let (dest, _) = forwarded(tcp_in(&mut ipvs, t(2), "192.0.2.7:1001", SYN));
        assert_eq!(dest, sa(want), "expire_quiescent_template={quiescent}");
        if quiescent {
            // The old template lingers, invalidated (ports 65535, client 0).
            let listing = ipvs.list_conns(t(2), false);
            assert!(
                listing.contains("192.0.2.7:0        10.96.0.1:65535    10.244.1.2:65535"),
                "{listing}"
            );
        }
    }
}

#[test]
fn weight_zero_drains_a_server_gracefully() {
    let (mut ipvs, key) = setup(Sysctls::default(), None);
    assert_eq!(forwarded(tcp_in(&mut ipvs, t(0), CLIENT, SYN)).0, sa(B));
    tcp_in(&mut ipvs, t(0), CLIENT, ACK);
    ipvs.edit_dest(t(1), &key, DestSpec::masq(sa(B), 0))
        .unwrap();
    assert_eq!(ipvs.candidates(&key), vec![sa(A)]);
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(2), CLIENT, ACK)),
        (sa(B), false)
    );
    for port in 2000..2004 {
        let c = format!("192.0.2.9:{port}");
        assert_eq!(forwarded(tcp_in(&mut ipvs, t(2), &c, SYN)).0, sa(A));
    }
    tcp_in(&mut ipvs, t(3), CLIENT, RST);
    ipvs.advance(t(13));
    assert_eq!(counts(&ipvs, &key, B), (0, 0, 0));
}

#[test]
fn a_deleted_server_stays_in_the_trash_until_its_connections_end() {
    let (mut ipvs, key) = setup(Sysctls::default(), None);
    tcp_in(&mut ipvs, t(0), CLIENT, SYN);
    tcp_in(&mut ipvs, t(0), CLIENT, ACK); // ESTABLISHED until 900
    ipvs.del_dest(t(10), &key, sa(B)).unwrap();
    assert_eq!(ipvs.dests(&key).unwrap().len(), 1);
    assert_eq!(ipvs.trash().len(), 1);
    assert_eq!(counts(&ipvs, &key, B), (1, 0, 0));
    let v = tcp_in(&mut ipvs, t(11), CLIENT, ACK);
    assert_eq!(v, InVerdict::Drop(DropReason::DestUnavailable));
    // Dropped packets do not restart the timer: gone at 900. The trash
    // timer runs at 70 + 60k: idle from 910, freed at 1030.
    ipvs.advance(t(900));
    assert_eq!(ipvs.conn_count(), 0);
    ipvs.advance(t(1029));
    assert_eq!(ipvs.trash().len(), 1);
    ipvs.advance(t(1030));
    assert!(ipvs.trash().is_empty());
    assert_eq!(ipvs.next_deadline(), None);
}

#[test]
fn re_adding_a_server_revives_it_from_the_trash() {
    let (mut ipvs, key) = setup(Sysctls::default(), None);
    tcp_in(&mut ipvs, t(0), CLIENT, SYN);
    tcp_in(&mut ipvs, t(0), CLIENT, ACK);
    ipvs.del_dest(t(10), &key, sa(B)).unwrap();
    ipvs.add_dest(t(20), &key, DestSpec::masq(sa(B), 1))
        .unwrap();
    assert!(ipvs.trash().is_empty());
    assert_eq!(counts(&ipvs, &key, B), (1, 0, 0));
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(21), CLIENT, ACK)),
        (sa(B), false)
    );
}

#[test]
fn expire_nodest_conn_deletes_connections_with_their_server() {
    let sys = Sysctls {
        expire_nodest_conn: true,
        ..Sysctls::default()
    };
    let (mut ipvs, key) = setup(sys, Some(600));
    tcp_in(&mut ipvs, t(0), CLIENT, SYN);
    tcp_in(&mut ipvs, t(0), CLIENT, ACK);
    assert_eq!(ipvs.conn_count(), 2);
    ipvs.del_dest(t(10), &key, sa(B)).unwrap();
    // The connection and then its template, which controls nothing more.
    assert_eq!(ipvs.conn_count(), 0);
    assert_eq!(counts(&ipvs, &key, B), (0, 0, 0));
    // A mid-stream packet finds no entry: not a SYN, so not scheduled.
    assert_eq!(tcp_in(&mut ipvs, t(11), CLIENT, ACK), InVerdict::Accept);
    // Trash: idle from the tick at 70, freed at 190.
    ipvs.advance(t(189));
    assert_eq!(ipvs.trash().len(), 1);
    ipvs.advance(t(190));
    assert!(ipvs.trash().is_empty());
}

#[test]
fn expire_nodest_conn_reschedules_a_syn_to_a_quiesced_server() {
    let sys = Sysctls {
        expire_nodest_conn: true,
        ..Sysctls::default()
    };
    let (mut ipvs, key) = setup(sys, None);
    assert_eq!(forwarded(tcp_in(&mut ipvs, t(0), CLIENT, SYN)).0, sa(B));
    ipvs.edit_dest(t(1), &key, DestSpec::masq(sa(B), 0))
        .unwrap();
    // Same tuple, SYN again: the old entry is expired and A chosen...
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(2), CLIENT, SYN)),
        (sa(A), true)
    );
    assert_eq!(counts(&ipvs, &key, B), (0, 0, 0));
    // ...unless conntrack already confirmed the flow: then it is dropped.
    ipvs.edit_dest(t(3), &key, DestSpec::masq(sa(A), 0))
        .unwrap();
    ipvs.edit_dest(t(3), &key, DestSpec::masq(sa(B), 1))
        .unwrap();
    let syn = Packet::tcp(sa(CLIENT), sa(VIP), SYN).with_ct_confirmed(true);
    assert_eq!(
        ipvs.process_in(t(4), &syn),
        InVerdict::Drop(DropReason::ConnReuse)
    );
    assert_eq!(ipvs.conn_count(), 0);
}

#[test]
fn a_syn_reusing_a_time_wait_entry_is_rescheduled() {
    let close = |ipvs: &mut Ipvs| {
        tcp_in(ipvs, t(0), CLIENT, SYN);
        tcp_in(ipvs, t(0), CLIENT, ACK);
        tcp_in(ipvs, t(1), CLIENT, FIN | ACK);
        ipvs.process_out(t(1), &Packet::tcp(sa(B), sa(CLIENT), FIN | ACK));
        assert_eq!(only_conn(ipvs).0, ConnState::Tcp(TcpState::TimeWait));
    };
    let (mut ipvs, _) = setup(Sysctls::default(), None);
    close(&mut ipvs);
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(5), CLIENT, SYN)),
        (sa(A), true)
    );
    // conn_reuse_mode 0 (kube-proxy on old kernels): the old entry is used.
    let sys = Sysctls {
        conn_reuse_mode: 0,
        ..Sysctls::default()
    };
    let (mut ipvs, _) = setup(sys, None);
    close(&mut ipvs);
    assert_eq!(
        forwarded(tcp_in(&mut ipvs, t(5), CLIENT, SYN)),
        (sa(B), false)
    );
    assert_eq!(only_conn(&ipvs).0, ConnState::Tcp(TcpState::SynRecv));
    // Confirmed conntrack flow: the entry is expired and the SYN dropped.
    let (mut ipvs, _) = setup(Sysctls::default(), None);
    close(&mut ipvs);
    let syn = Packet::tcp(sa(CLIENT), sa(VIP), SYN).with_ct_confirmed(true);
    assert_eq!(
        ipvs.process_in(t(5), &syn),
        InVerdict::Drop(DropReason::ConnReuse)
    );
    assert_eq!(ipvs.conn_count(), 0);
}

#[test]
fn refused_requests_change_nothing() {
    let (mut ipvs, key) = setup(Sysctls::default(), None);
    let before = ipvs.list(t(0), Default::default());
    let spec = ServiceSpec::new(key, Scheduler::Rr);
    assert_eq!(
        ipvs.add_service(t(0), spec),
        Err(IpvsError::ServiceExists(key))
    );
    let missing = ServiceKey::udp(sa(VIP));
    assert_eq!(
        ipvs.add_dest(t(0), &missing, DestSpec::masq(sa(A), 1)),
        Err(IpvsError::NoSuchService(missing))
    );
    assert_eq!(
        ipvs.add_dest(t(0), &key, DestSpec::masq(sa(A), 1)),
        Err(IpvsError::DestExists {
            service: key,
            dest: sa(A)
        })
    );
    let c = sa("10.244.9.9:1");
    assert_eq!(
        ipvs.del_dest(t(0), &key, c),
        Err(IpvsError::NoSuchDest {
            service: key,
            dest: c
        })
    );
    let bad = DestSpec {
        l_threshold: 5,
        u_threshold: 4,
        ..DestSpec::masq(c, 1)
    };
    assert_eq!(
        ipvs.add_dest(t(0), &key, bad),
        Err(IpvsError::ThresholdOrder { lower: 5, upper: 4 })
    );
    let v6 = sa("[fd00::1]:80");
    assert!(matches!(
        ipvs.add_dest(t(0), &key, DestSpec::masq(v6, 1)),
        Err(IpvsError::FamilyMismatch { .. })
    ));
    let icmp = ServiceKey::Addr {
        protocol: Protocol::Icmp,
        addr: sa(VIP),
    };
    let r = ipvs.add_service(t(0), ServiceSpec::new(icmp, Scheduler::Rr));
    assert_eq!(r, Err(IpvsError::UnsupportedProtocol(1)));
    let zero = ServiceKey::Fwmark {
        family: Family::Ipv4,
        mark: 0,
    };
    let r = ipvs.add_service(t(0), ServiceSpec::new(zero, Scheduler::Rr));
    assert_eq!(r, Err(IpvsError::ZeroFwmark));
    let mut p = ServiceSpec::new(missing, Scheduler::Rr);
    p.persistence = Some(Persistence {
        timeout_secs: 10,
        netmask_prefix: 33,
    });
    assert!(matches!(
        ipvs.add_service(t(0), p),
        Err(IpvsError::InvalidPersistence { .. })
    ));
    let huge = TimeoutUser {
        tcp: 9_000_000,
        tcp_fin: 0,
        udp: 0,
    };
    assert_eq!(
        ipvs.set_timeout(huge),
        Err(IpvsError::TimeoutOutOfRange(9_000_000))
    );
    assert!(matches!(
        "fo".parse::<Scheduler>(),
        Err(IpvsError::UnknownScheduler(_))
    ));
    assert_eq!(ipvs.list(t(0), Default::default()), before);
    assert_eq!(
        ipvs.list_timeout(),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
}
