//! IPVS in a node's packet path: a virtual service on a `kube-ipvs0`
//! address, real servers on the node's bridge and behind another node,
//! and the masquerade rule kube-proxy installs — what happens to a
//! connection's packets hook by hook.

use std::net::SocketAddr;

use sim::ipvs::{DestSpec, Scheduler, ServiceKey, ServiceSpec};
use sim::netfilter::{Family, RestoreMode, Variant};
use sim::node::{Delivery, DropReason, Node, Processed};
use sim::packet::{Packet, PacketRepr, TcpFlags, Transport};
use sim::time::Instant;

mod common;

use common::{default_route, ip, route_via, sock, tcp_between as tcp};

const VIP: &str = "10.96.0.1";
const CLIENT: &str = "203.0.113.7";
const LOCAL_RS: &str = "10.244.1.5";
const REMOTE_RS: &str = "10.244.2.5";

fn key() -> ServiceKey {
    ServiceKey::tcp(sock(VIP, 80))
}

/// node-a: `eth0` 192.168.0.10/24, bridge `cni0` 10.244.1.1/24, the VIP on
/// `kube-ipvs0`, 10.244.2.0/24 via node-b, the rest via 192.168.0.1; packets from outside the pod
/// network are marked for masquerading, marked packets masqueraded.
fn node(dests: &[&str], conntrack: bool) -> Node {
    let mut n = Node::new("node-a", 1, Variant::Nft);
    n.add_interface("eth0").unwrap();
    n.add_address("eth0", ip("192.168.0.10"), 24).unwrap();
    n.add_bridge_interface("cni0").unwrap();
    n.add_address("cni0", ip("10.244.1.1"), 24).unwrap();
    n.add_dummy_interface("kube-ipvs0").unwrap();
    n.add_address("kube-ipvs0", ip(VIP), 32).unwrap();
    n.add_route(default_route("192.168.0.1", "eth0")).unwrap();
    n.add_route(route_via("10.244.2.0", 24, "192.168.0.11", "eth0"))
        .unwrap();
    n.set_sysctl("net.ipv4.vs.conntrack", i64::from(conntrack))
        .unwrap();
    n.restore(
        Family::Ipv4,
        "*nat\n\
         -A PREROUTING ! -s 10.244.0.0/16 -j MARK --or-mark 0x4000\n\
         -A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE\n\
         COMMIT\n",
        RestoreMode::Flush,
    )
    .unwrap();
    let ipvs = n.ipvs_mut();
    ipvs.add_service(Instant::ZERO, ServiceSpec::new(key(), Scheduler::Rr))
        .unwrap();
    for d in dests {
        ipvs.add_dest(Instant::ZERO, &key(), DestSpec::masq(sock(d, 8080), 1))
            .unwrap();
    }
    n
}

/// The one helper that sends a packet into the node at second `at`.
fn run(n: &mut Node, p: Packet, iface: &str, at: u64) -> Processed {
    n.receive(p, iface, Instant::from_secs(at)).unwrap()
}

fn addrs(p: &Packet) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(p.src(), p.src_port().unwrap()),
        SocketAddr::new(p.dst(), p.dst_port().unwrap()),
    )
}

#[test]
fn a_connection_is_forwarded_masqueraded_and_its_replies_un_natted() {
    let mut n = node(&[REMOTE_RS], true);
    let client = sock(CLIENT, 40000);
    let syn = run(&mut n, tcp(client, sock(VIP, 80), TcpFlags::SYN), "eth0", 0);
    assert_eq!(
        syn.delivery,
        Delivery::Out {
            iface: "eth0".into(),
            next_hop: ip("192.168.0.11")
        }
    );
    let (src, dst) = addrs(&syn.packet);
    assert_eq!(dst, sock(REMOTE_RS, 8080));
    assert_eq!(src.ip(), ip("192.168.0.10"), "masqueraded at POSTROUTING");
    assert!(syn.nat.masquerade);
    assert_eq!(syn.nat.dnat, Some((ip(REMOTE_RS), Some(8080))));
    assert_eq!(syn.nat.ipvs, Some(key()));
    assert_eq!(syn.packet.ttl(), 63);

    // The real server answers the masqueraded address: conntrack undoes
    // the SNAT, IPVS (in FORWARD) puts the virtual address back.
    let synack = tcp(sock(REMOTE_RS, 8080), src, TcpFlags::SYN | TcpFlags::ACK);
    let back = run(&mut n, synack, "eth0", 0);
    assert_eq!(addrs(&back.packet), (sock(VIP, 80), client));
    assert!(matches!(back.delivery, Delivery::Out { ref iface, .. } if iface == "eth0"));

    // The rest of the connection follows the IPVS connection.
    let ack = run(&mut n, tcp(client, sock(VIP, 80), TcpFlags::ACK), "eth0", 1);
    assert_eq!(addrs(&ack.packet), (src, sock(REMOTE_RS, 8080)));
    let d = &n.ipvs().dests(&key()).unwrap()[0];
    assert_eq!((d.active_conns, d.inact_conns), (1, 0));
}

#[test]
fn without_vs_conntrack_the_flow_is_untracked_so_nothing_masquerades() {
    let mut n = node(&[REMOTE_RS], false);
    let client = sock(CLIENT, 40000);
    let syn = run(&mut n, tcp(client, sock(VIP, 80), TcpFlags::SYN), "eth0", 0);
    assert_eq!(addrs(&syn.packet), (client, sock(REMOTE_RS, 8080)));
    assert!(!syn.nat.masquerade);
    assert_eq!(n.conntrack().len(), 0);
}

#[test]
fn a_service_without_real_servers_answers_port_unreachable() {
    let mut n = node(&[], true);
    let out = run(
        &mut n,
        tcp(sock(CLIENT, 40000), sock(VIP, 80), TcpFlags::SYN),
        "eth0",
        0,
    );
    let Delivery::IcmpError { by, reply } = &out.delivery else {
        panic!("{:?}", out.delivery);
    };
    assert!(by.contains("no real server for TCP 10.96.0.1:80"), "{by}");
    assert_eq!(reply.packet.icmp_type_code(), Some((3, 3)));
    assert_eq!(
        (reply.packet.src(), reply.packet.dst()),
        (ip(VIP), ip(CLIENT))
    );
}

#[test]
fn a_quiesced_server_keeps_its_connections_and_gets_no_new_ones() {
    let mut n = node(&[LOCAL_RS, REMOTE_RS], true);
    let vip = sock(VIP, 80);
    let first = run(
        &mut n,
        tcp(sock(CLIENT, 40000), vip, TcpFlags::SYN),
        "eth0",
        0,
    );
    let (_, rs) = addrs(&first.packet);
    n.ipvs_mut()
        .edit_dest(Instant::from_secs(1), &key(), DestSpec::masq(rs, 0))
        .unwrap();
    let again = run(
        &mut n,
        tcp(sock(CLIENT, 40000), vip, TcpFlags::ACK),
        "eth0",
        2,
    );
    assert_eq!(addrs(&again.packet).1, rs, "the open connection stays");
    for port in 40001..40005 {
        let new = run(
            &mut n,
            tcp(sock(CLIENT, port), vip, TcpFlags::SYN),
            "eth0",
            2,
        );
        assert_ne!(addrs(&new.packet).1, rs, "new connections avoid it");
    }
}

#[test]
fn the_ipvs_match_sees_forwarded_packets_and_physdev_sees_the_bridge() {
    let mut n = node(&[REMOTE_RS], true);
    n.restore(
        Family::Ipv4,
        "*filter\n\
         -A INPUT -m physdev --physdev-is-in -p udp -j DROP\n\
         -A OUTPUT -s 203.0.113.9 -m ipvs --vaddr 10.96.0.1 --vproto tcp --vport 80 -j DROP\n\
         COMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
    let blocked = run(
        &mut n,
        tcp(sock("203.0.113.9", 40000), sock(VIP, 80), TcpFlags::SYN),
        "eth0",
        0,
    );
    let Delivery::Dropped(DropReason::Rule(r)) = &blocked.delivery else {
        panic!("{:?}", blocked.delivery);
    };
    assert_eq!(r.chain, "OUTPUT", "dropped after IPVS forwarded it");
    let other = run(
        &mut n,
        tcp(sock(CLIENT, 40000), sock(VIP, 80), TcpFlags::SYN),
        "eth0",
        0,
    );
    assert!(matches!(other.delivery, Delivery::Out { .. }));

    let udp = |src: &str| {
        Packet::build(&PacketRepr {
            src: ip(src),
            dst: ip("192.168.0.10"),
            ttl: 64,
            ident: 0,
            transport: Transport::Udp {
                src_port: 5000,
                dst_port: 53,
            },
            payload: Vec::new(),
        })
        .unwrap()
    };
    let from_pod = run(&mut n, udp("10.244.1.9"), "cni0", 0);
    assert!(matches!(
        from_pod.delivery,
        Delivery::Dropped(DropReason::Rule(_))
    ));
    let from_outside = run(&mut n, udp(CLIENT), "eth0", 0);
    assert_eq!(from_outside.delivery, Delivery::Local);
}
