//! `ipvsadm` output formats.
//!
//! The files in `tests/fixtures/ipvs/` are NOT captured from a kernel
//! (this project's machines have no IPVS; capturing under a VM kernel is
//! future work, see the notes on IPVS in a VM). Their `derive.py`
//! applies ipvsadm 1.31's printf format strings (`print_title`,
//! `print_service_entry`, `print_largenum`, `print_conn`, the `-S` rule
//! printer) with Python's C-compatible `%` formatting to the table contents
//! of the `kube` scenario below, worked out by hand from the kernel's rules:
//! which server rr picks (newest first), active/inactive counts per TCP
//! state, timeouts, template lines, the 2-second estimator's integer
//! arithmetic, and ipvsadm's sort order (C `int` subtraction: 192.168.x
//! sorts before 10.x). Whitespace, including the trailing spaces of real
//! server lines, is significant.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use sim::ipvs::{
    DestSpec, Ipvs, ListFormat, Packet, Persistence, SchedFlags, Scheduler, ServiceKey, ServiceSpec,
};
use sim::netfilter::Family;
use sim::time::Instant;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ipvs")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(got: &str, fixture_name: &str) {
    let want = fixture(fixture_name);
    if got != want {
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            if g != w {
                panic!(
                    "{fixture_name} line {}:\n  got:  {g:?}\n  want: {w:?}",
                    i + 1
                );
            }
        }
        panic!(
            "{fixture_name}: got {} lines, want {}:\n{got}",
            got.lines().count(),
            want.lines().count()
        );
    }
}

fn add(ipvs: &mut Ipvs, spec: ServiceSpec, dests: &[DestSpec]) {
    ipvs.add_service(Instant::ZERO, spec).unwrap();
    for d in dests {
        ipvs.add_dest(Instant::ZERO, &spec.key, *d).unwrap();
    }
}

/// Seven services like a small kube-proxy node, and traffic at t = 1 s.
fn kube() -> Ipvs {
    let mut ipvs = Ipvs::default();
    let m = |a: &str, w: u32| DestSpec::masq(sa(a), w);
    let dns = [m("10.244.1.5:53", 1), m("10.244.2.7:53", 1)];
    add(
        &mut ipvs,
        ServiceSpec::new(ServiceKey::tcp(sa("10.96.0.1:443")), Scheduler::Rr),
        &[m("192.168.0.10:6443", 1)],
    );
    add(
        &mut ipvs,
        ServiceSpec::new(ServiceKey::tcp(sa("10.96.0.10:53")), Scheduler::Rr),
        &dns,
    );
    add(
        &mut ipvs,
        ServiceSpec::new(ServiceKey::udp(sa("10.96.0.10:53")), Scheduler::Rr),
        &dns,
    );
    let np = ServiceSpec::new(ServiceKey::tcp(sa("192.168.0.10:30080")), Scheduler::Rr)
        .persistent(10800);
    add(&mut ipvs, np, &[m("10.244.1.9:8080", 1)]);
    let mut sh = ServiceSpec::new(ServiceKey::tcp(sa("10.96.5.5:80")), Scheduler::Sh);
    sh.sched_flags = SchedFlags {
        flag1: true,
        flag2: true,
        flag3: false,
    };
    let capped = DestSpec {
        u_threshold: 100,
        l_threshold: 50,
        ..m("10.244.4.1:80", 3)
    };
    add(&mut ipvs, sh, &[capped]);
    let mut v6 = ServiceSpec::new(ServiceKey::tcp(sa("[fd00::10]:80")), Scheduler::Mh);
    v6.persistence = Some(Persistence {
        timeout_secs: 300,
        netmask_prefix: 64,
    });
    add(&mut ipvs, v6, &[m("[fd00::1:5]:8080", 1)]);
    let fwm = ServiceKey::Fwmark {
        family: Family::Ipv4,
        mark: 7,
    };
    add(
        &mut ipvs,
        ServiceSpec::new(fwm, Scheduler::Wlc),
        &[m("10.244.3.3:0", 2)],
    );

    let at = Instant::from_secs(1);
    let dns_vip = sa("10.96.0.10:53");
    let tcp = |ipvs: &mut Ipvs, port: u16, flags: u8, len: u32| {
        let c = SocketAddr::new("10.244.2.9".parse().unwrap(), port);
        ipvs.process_in(at, &Packet::tcp(c, dns_vip, flags).with_len(len));
    };
    tcp(&mut ipvs, 40001, SYN, 60); // → 10.244.2.7 (rr: newest first)
    tcp(&mut ipvs, 40001, ACK, 52); // ESTABLISHED
    tcp(&mut ipvs, 40002, SYN, 60); // → 10.244.1.5, SYN_RECV
    tcp(&mut ipvs, 40003, SYN, 60); // → 10.244.2.7
    tcp(&mut ipvs, 40003, FIN | ACK, 52); // SYN_RECV + FIN → TIME_WAIT
    let reply = Packet::tcp(sa("10.244.2.7:53"), sa("10.244.2.9:40001"), ACK).with_len(52);
    ipvs.process_out(at, &reply);
    for port in [33001, 33002] {
        let c = SocketAddr::new("10.244.2.9".parse().unwrap(), port);
        ipvs.process_in(at, &Packet::udp(c, dns_vip).with_len(70));
    }
    let syn = Packet::tcp(sa("203.0.113.7:40000"), sa("192.168.0.10:30080"), SYN).with_len(60);
    ipvs.process_in(at, &syn);
    ipvs
}

#[test]
fn ln_plain() {
    check(
        &kube().list(Instant::from_secs(2), ListFormat::Plain),
        "kube.Ln.txt",
    );
}

#[test]
fn ln_stats_show_the_counters_of_the_last_estimator_tick() {
    let ipvs = kube();
    check(
        &ipvs.list(Instant::from_millis(1999), ListFormat::Stats),
        "kube.Ln-stats-before-tick.txt",
    );
    check(
        &ipvs.list(Instant::from_secs(2), ListFormat::Stats),
        "kube.Ln-stats.txt",
    );
}

#[test]
fn ln_rate() {
    check(
        &kube().list(Instant::from_secs(2), ListFormat::Rate),
        "kube.Ln-rate.txt",
    );
}

#[test]
fn ln_thresholds() {
    check(
        &kube().list(Instant::from_secs(2), ListFormat::Thresholds),
        "kube.Ln-thresholds.txt",
    );
}

#[test]
fn lnc_connection_table() {
    check(
        &kube().list_conns(Instant::from_secs(2), false),
        "kube.Lnc.txt",
    );
}

#[test]
fn sn_rules() {
    check(&kube().list_rules(false), "kube.Sn.txt");
}

#[test]
fn one_service_timeout_and_nosort() {
    let ipvs = kube();
    let key = ServiceKey::tcp(sa("10.96.0.10:53"));
    let one = ipvs
        .list_service(Instant::from_secs(2), &key, ListFormat::Plain)
        .unwrap();
    let want = fixture("kube.Ln.txt");
    let start = want.find("TCP  10.96.0.10:53").unwrap();
    let end = want.find("TCP  10.96.5.5:80").unwrap();
    let title: String = want
        .lines()
        .skip(1)
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(one, title + &want[start..end]);
    assert_eq!(
        ipvs.list_timeout(),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    // --nosort: services in table order, real servers in kernel list order
    // (newest first).
    let raw = ipvs.list_with(Instant::from_secs(2), ListFormat::Plain, false, true);
    let i = raw.find("TCP  10.96.0.10:53").unwrap();
    assert!(raw[i..].find("10.244.2.7:53").unwrap() < raw[i..].find("10.244.1.5:53").unwrap());
}

#[test]
fn sort_uses_c_int_subtraction() {
    let mut ipvs = Ipvs::default();
    for a in ["10.0.0.1:80", "192.168.0.1:80"] {
        let spec = ServiceSpec::new(ServiceKey::tcp(sa(a)), Scheduler::Rr);
        ipvs.add_service(Instant::ZERO, spec).unwrap();
    }
    // 0x0A000001 - 0xC0A80001 wraps to a positive int: 10.0.0.1 sorts last.
    let text = ipvs.list(Instant::ZERO, ListFormat::Plain);
    let lines: Vec<&str> = text.lines().skip(3).collect();
    assert_eq!(lines, ["TCP  192.168.0.1:80 rr", "TCP  10.0.0.1:80 rr"]);
}

#[test]
fn large_numbers_and_masks() {
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::udp(sa("10.96.0.20:9000"));
    let mut spec = ServiceSpec::new(key, Scheduler::Rr);
    spec.persistence = Some(Persistence {
        timeout_secs: 300,
        netmask_prefix: 24,
    });
    spec.one_packet = true;
    add(&mut ipvs, spec, &[DestSpec::masq(sa("10.244.9.9:9000"), 1)]);
    let big = Packet::udp(sa("192.0.2.1:5000"), sa("10.96.0.20:9000")).with_len(60_000);
    for _ in 0..2000 {
        ipvs.process_in(Instant::from_millis(100), &big);
    }
    let plain = ipvs.list(Instant::from_secs(2), ListFormat::Plain);
    assert!(
        plain.contains("UDP  10.96.0.20:9000 rr persistent 300 mask 255.255.255.0 ops\n"),
        "{plain}"
    );
    // 120,000,000 bytes: "%8lluK" of 120000; --exact: width len + 1.
    let stats = ipvs.list(Instant::from_secs(2), ListFormat::Stats);
    assert!(
        stats.contains(
            "UDP  10.96.0.20:9000                  2000     2000        0  120000K        0\n"
        ),
        "{stats}"
    );
    let exact = ipvs.list_with(Instant::from_secs(2), ListFormat::Stats, true, false);
    assert!(
        exact.contains("     2000     2000        0 120000000        0\n"),
        "{exact}"
    );
    let rules = ipvs.list_rules(false);
    assert_eq!(
        rules.lines().next(),
        Some("-A -u 10.96.0.20:9000 -s rr -p 300 -M 255.255.255.0 -o")
    );
}

#[test]
fn same_input_same_output() {
    let run = || {
        let ipvs = kube();
        let t = Instant::from_secs(7);
        [
            ipvs.list(t, ListFormat::Plain),
            ipvs.list(t, ListFormat::Stats),
            ipvs.list(t, ListFormat::Rate),
            ipvs.list_conns(t, true),
        ]
        .concat()
    };
    assert_eq!(run(), run());
}
