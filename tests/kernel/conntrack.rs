//! Conntrack over netlink on real UDP flows, and the namespace-bound
//! sysctl and nfacct handles.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use proxier::dataplane::{ConntrackFlow, Kernel, Sysctl};
use proxier::k8s::{IpFamily, Protocol};
use proxier::kernel::netns::in_netns;
use proxier::kernel::{HostKernel, Journal, KernelOptions, KernelSysctl};

use crate::support::{netns, require, HostRules};

const SERVER: &str = "10.0.0.1:5353";
const SERVICE: &str = "10.0.0.100:53";

/// Sends one datagram from a fresh socket to `to`, lets `server` answer,
/// and waits for the answer; returns the client's address.
fn exchange(client: &UdpSocket, to: &str, server: &UdpSocket) -> SocketAddr {
    client.send_to(b"ping", to).unwrap();
    let mut buf = [0u8; 16];
    let (_, from) = server.recv_from(&mut buf).unwrap();
    server.send_to(b"pong", from).unwrap();
    client.recv_from(&mut buf).unwrap();
    client.local_addr().unwrap()
}

#[test]
fn udp_flows_are_listed_and_deleted_by_tuple() {
    if require(
        "udp_flows_are_listed_and_deleted_by_tuple",
        &["iptables-nft"],
    )
    .is_none()
    {
        return;
    }
    let host = HostRules::capture();
    let ns = netns();
    let r = ns.runner();
    for args in [
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"][..],
        &["addr", "add", "10.0.0.1/24", "dev", "v0"],
        &["link", "set", "v0", "up"],
        &["link", "set", "v1", "up"],
    ] {
        r.check("ip", args, None).unwrap();
    }
    // A ClusterIP-like DNAT (which also turns conntrack on in the namespace).
    r.check(
        "iptables-nft",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            "10.0.0.100/32",
            "-p",
            "udp",
            "--dport",
            "53",
            "-j",
            "DNAT",
            "--to-destination",
            SERVER,
        ],
        None,
    )
    .unwrap();

    // The sockets live in the namespace; they are used from here.
    let (server, nat_a, nat_b, direct) = in_netns(Some(ns.name()), || {
        let bind = |a: &str| {
            let s = UdpSocket::bind(a).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        };
        (
            bind(SERVER),
            bind("10.0.0.1:0"),
            bind("10.0.0.1:0"),
            bind("10.0.0.1:0"),
        )
    })
    .unwrap();
    let a = exchange(&nat_a, SERVICE, &server);
    let b = exchange(&nat_b, SERVICE, &server);
    let c = exchange(&direct, SERVER, &server);

    let mut kernel = HostKernel::new(KernelOptions {
        netns: Some(ns.name().to_string()),
        ..KernelOptions::default()
    })
    .unwrap();
    let flow = |client: SocketAddr, to: &str| {
        let to: SocketAddr = to.parse().unwrap();
        let server: SocketAddr = SERVER.parse().unwrap();
        ConntrackFlow {
            protocol: Protocol::Udp,
            orig_src: client.ip(),
            orig_dst: to.ip(),
            orig_src_port: client.port(),
            orig_dst_port: to.port(),
            reply_src: server.ip(),
            reply_src_port: server.port(),
        }
    };
    let expected = [flow(a, SERVICE), flow(b, SERVICE), flow(c, SERVER)];
    let listed = kernel
        .conntrack()
        .list_flows(IpFamily::V4, Protocol::Udp)
        .unwrap();
    for f in &expected {
        assert!(listed.contains(f), "{f:?} not in {listed:#?}");
    }
    assert!(kernel
        .conntrack()
        .list_flows(IpFamily::V4, Protocol::Tcp)
        .unwrap()
        .is_empty());
    assert!(kernel
        .conntrack()
        .list_flows(IpFamily::V6, Protocol::Udp)
        .unwrap()
        .is_empty());

    // Delete the first DNATed flow: exactly it goes.
    assert_eq!(kernel.conntrack().delete_flows(&expected[..1]).unwrap(), 1);
    let listed = kernel
        .conntrack()
        .list_flows(IpFamily::V4, Protocol::Udp)
        .unwrap();
    assert!(!listed.contains(&expected[0]), "{listed:#?}");
    assert!(listed.contains(&expected[1]) && listed.contains(&expected[2]));
    // Gone already: counted as not deleted, not an error.
    assert_eq!(kernel.conntrack().delete_flows(&expected[..1]).unwrap(), 0);
    assert_eq!(kernel.take_writes().len(), 1);
    host.assert_unchanged();
}

#[test]
fn sysctl_and_nfacct_stay_in_the_namespace() {
    if require("sysctl_and_nfacct_stay_in_the_namespace", &["nfacct"]).is_none() {
        return;
    }
    let host = HostRules::capture();
    const KEY: &str = "net/ipv4/conf/all/route_localnet";
    let host_sysctl = KernelSysctl::new(None, Journal::default());
    let host_value = host_sysctl.get(KEY).unwrap();
    let ns = netns();
    let mut kernel = HostKernel::new(KernelOptions {
        netns: Some(ns.name().to_string()),
        ..KernelOptions::default()
    })
    .unwrap();
    let value = if host_value == 0 { 1 } else { 0 };
    kernel.sysctl().set(KEY, value).unwrap();
    assert_eq!(kernel.sysctl().get(KEY).unwrap(), value);
    assert_eq!(
        host_sysctl.get(KEY).unwrap(),
        host_value,
        "the host's sysctl changed"
    );
    assert!(kernel.sysctl().get("net/no/such/key").is_err());

    kernel.nfacct().ensure("kpsim_test_counter").unwrap();
    kernel.nfacct().ensure("kpsim_test_counter").unwrap();
    let listed = ns.runner().check("nfacct", &["list"], None).unwrap();
    assert!(listed.contains("kpsim_test_counter"), "{listed}");
    let on_host = proxier::kernel::Runner::new(None)
        .check("nfacct", &["list"], None)
        .unwrap();
    assert!(!on_host.contains("kpsim_test_counter"), "{on_host}");
    host.assert_unchanged();
}
