//! The IPVS schedulers against sequences worked out by hand from the
//! kernel's algorithms (`net/netfilter/ipvs/ip_vs_{rr,wrr,lc,wlc,sed,nq,
//! sh,dh}.c`).
//!
//! Every test builds one service through the public API and opens
//! connections with SYNs; what it checks is the real server each SYN is
//! forwarded to. Remember the kernel links a new real server at the head of
//! the service's list: servers added A, B, C are walked C, B, A.

use std::net::SocketAddr;

use sim::ipvs::sched::{dh_bucket, sh_bucket, sh_table};
use sim::ipvs::{
    DestSpec, InVerdict, Ipvs, Packet, SchedFlags, Scheduler, ServiceKey, ServiceSpec,
};
use sim::time::Instant;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

const VIP: &str = "10.96.0.1:80";
const A: &str = "10.244.1.1:8080";
const B: &str = "10.244.1.2:8080";
const C: &str = "10.244.1.3:8080";

/// A service with `dests` (address, weight) added in this order.
fn service(sched: Scheduler, flags: SchedFlags, dests: &[(&str, u32)]) -> (Ipvs, ServiceKey) {
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::tcp(sa(VIP));
    let mut spec = ServiceSpec::new(key, sched);
    spec.sched_flags = flags;
    ipvs.add_service(Instant::ZERO, spec).unwrap();
    for (addr, w) in dests {
        ipvs.add_dest(Instant::ZERO, &key, DestSpec::masq(sa(addr), *w))
            .unwrap();
    }
    (ipvs, key)
}

/// Open a connection from `client` with a SYN; the chosen server or None.
fn open(ipvs: &mut Ipvs, client: &str) -> Option<SocketAddr> {
    match ipvs.process_in(Instant::ZERO, &Packet::tcp(sa(client), sa(VIP), SYN)) {
        InVerdict::Forward(f) => Some(f.dest),
        _ => None,
    }
}

/// Open `n` connections from fresh client ports (40000 + entries so far);
/// their servers.
fn sequence(ipvs: &mut Ipvs, n: u16) -> Vec<SocketAddr> {
    let base = 40000 + ipvs.conn_count() as u16;
    (0..n)
        .map(|i| open(ipvs, &format!("192.0.2.1:{}", base + i)).expect("scheduled"))
        .collect()
}

fn names(v: &[SocketAddr]) -> String {
    v.iter()
        .map(|a| match a.to_string().as_str() {
            A => "A",
            B => "B",
            C => "C",
            _ => "?",
        })
        .collect()
}

#[test]
fn rr_walks_the_list_newest_first_and_skips_weight_zero() {
    let (mut ipvs, key) = service(
        Scheduler::Rr,
        SchedFlags::default(),
        &[(A, 1), (B, 1), (C, 1)],
    );
    assert_eq!(names(&sequence(&mut ipvs, 6)), "CBACBA");
    // Quiesce B: it gets no new connections; the cursor (at A) stays.
    ipvs.edit_dest(Instant::ZERO, &key, DestSpec::masq(sa(B), 0))
        .unwrap();
    assert_eq!(names(&sequence(&mut ipvs, 4)), "CACA");
}

#[test]
fn rr_cursor_moves_to_the_predecessor_of_a_deleted_server() {
    let (mut ipvs, key) = service(
        Scheduler::Rr,
        SchedFlags::default(),
        &[(A, 1), (B, 1), (C, 1)],
    );
    assert_eq!(names(&sequence(&mut ipvs, 2)), "CB"); // cursor at B
    ipvs.del_dest(Instant::ZERO, &key, sa(B)).unwrap(); // cursor to C
    assert_eq!(names(&sequence(&mut ipvs, 3)), "ACA");
}

#[test]
fn wrr_steps_the_current_weight_down_from_the_maximum() {
    // Added one at a time, as ipvsadm and kube-proxy do: adding A(4) alone
    // gives di 4, mw 1, cw 1; later adds keep cw 1 (ip_vs_wrr_dest_changed).
    // So the first pass is cw = 1 over C(2), B(3), A(4); then cw wraps to
    // mw 4 and steps 4, 3, 2, 1 (di 1), taking servers with weight >= cw.
    let (mut ipvs, _) = service(
        Scheduler::Wrr,
        SchedFlags::default(),
        &[(A, 4), (B, 3), (C, 2)],
    );
    let seq = names(&sequence(&mut ipvs, 18));
    assert_eq!(seq, "CBA".to_owned() + "ABACBACBA" + "ABACBA");
}

#[test]
fn wrr_uses_the_gcd_as_step() {
    // A(2) alone: di 2, mw 1, cw 1. With B(4): di 2, mw 4 - 1 = 3, and cw
    // realigned to (1 / 2) * 2 + 1 = 1. List B, A: cw 1 → B A; wrap to 3 →
    // B; cw 1 (last pass) → B A; wrap → B.
    let (mut ipvs, _) = service(Scheduler::Wrr, SchedFlags::default(), &[(A, 2), (B, 4)]);
    assert_eq!(names(&sequence(&mut ipvs, 6)), "BABBAB");
}

#[test]
fn wrr_with_every_weight_zero_has_no_destination() {
    let (mut ipvs, key) = service(Scheduler::Wrr, SchedFlags::default(), &[(A, 0), (B, 0)]);
    let v = ipvs.process_in(Instant::ZERO, &Packet::tcp(sa("192.0.2.1:1"), sa(VIP), SYN));
    assert_eq!(v, InVerdict::Unreachable(key));
}

#[test]
fn wrr_with_a_huge_weight_gap_terminates() {
    // mw = 2^31-1 and the heavy server overloaded: the kernel would walk
    // two billion empty passes; the result must still be the light server.
    let (mut ipvs, key) = service(Scheduler::Wrr, SchedFlags::default(), &[(A, 1)]);
    let heavy = DestSpec {
        u_threshold: 1,
        ..DestSpec::masq(sa(B), i32::MAX as u32)
    };
    ipvs.add_dest(Instant::ZERO, &key, heavy).unwrap();
    assert_eq!(names(&sequence(&mut ipvs, 3)), "BAA");
}

#[test]
fn lc_prefers_fewest_active_then_inactive() {
    let (mut ipvs, _) = service(Scheduler::Lc, SchedFlags::default(), &[(A, 1), (B, 1)]);
    // All equal: first in list (B); then A; then B again (256 vs 256).
    assert_eq!(names(&sequence(&mut ipvs, 3)), "BAB");
    // Close the connection on A to TIME_WAIT: A = 1 inactive, B = 2 active.
    let client = sa("192.0.2.1:40001");
    let vip = sa(VIP);
    ipvs.process_in(Instant::ZERO, &Packet::tcp(client, vip, ACK));
    ipvs.process_in(Instant::ZERO, &Packet::tcp(client, vip, FIN | ACK));
    ipvs.process_out(Instant::ZERO, &Packet::tcp(sa(A), client, FIN | ACK));
    let a = &ipvs.dests(&ServiceKey::tcp(vip)).unwrap()[1];
    assert_eq!((a.active_conns, a.inact_conns), (0, 1));
    assert_eq!(
        open(&mut ipvs, "192.0.2.9:1").map(|d| names(&[d])),
        Some("A".into())
    );
}

#[test]
fn wlc_divides_overhead_by_weight() {
    let (mut ipvs, _) = service(Scheduler::Wlc, SchedFlags::default(), &[(A, 1), (B, 3)]);
    assert_eq!(names(&sequence(&mut ipvs, 6)), "BABBBA");
}

#[test]
fn sed_counts_the_incoming_job() {
    let (mut ipvs, _) = service(Scheduler::Sed, SchedFlags::default(), &[(A, 1), (B, 3)]);
    assert_eq!(names(&sequence(&mut ipvs, 8)), "BBBABBBA");
}

#[test]
fn nq_sends_to_an_idle_server_first() {
    let (mut ipvs, _) = service(Scheduler::Nq, SchedFlags::default(), &[(A, 1), (B, 3)]);
    assert_eq!(names(&sequence(&mut ipvs, 8)), "BABBBBBA");
}

#[test]
fn sh_and_dh_bucket_hashes_match_hand_computation() {
    // 2654435761 = 0x9E3779B1; only the low byte of the product matters.
    assert_eq!(sh_bucket("10.0.0.1".parse().unwrap(), 0, 0), 0xB1);
    assert_eq!(sh_bucket("10.0.0.2".parse().unwrap(), 0, 0), 0x62);
    assert_eq!(sh_bucket("10.0.0.1".parse().unwrap(), 1, 0), 0x62);
    assert_eq!(sh_bucket("10.0.0.1".parse().unwrap(), 0, 177), 98);
    // IPv6 folds the four words by XOR: ::1 folds to 1.
    assert_eq!(sh_bucket("::1".parse().unwrap(), 0, 0), 0xB1);
    assert_eq!(dh_bucket("10.96.0.1".parse().unwrap()), 0xB1);
    // Weights 2 and 1 tile the 256 buckets as 0 0 1 0 0 1 …
    let t = sh_table(&[2, 1]);
    assert_eq!(
        &t[..6],
        &[Some(0), Some(0), Some(1), Some(0), Some(0), Some(1)]
    );
    assert_eq!(t.iter().filter(|x| **x == Some(1)).count(), 85);
    // A weight-0 server still takes one bucket per round.
    assert_eq!(
        &sh_table(&[0, 1])[..4],
        &[Some(0), Some(1), Some(0), Some(1)]
    );
}

#[test]
fn sh_keeps_a_client_on_its_bucket_server() {
    // List B, A with weight 1: even buckets B, odd buckets A.
    let (mut ipvs, key) = service(Scheduler::Sh, SchedFlags::default(), &[(A, 1), (B, 1)]);
    for port in [1000, 2000, 3000] {
        assert_eq!(open(&mut ipvs, &format!("10.0.0.1:{port}")), Some(sa(A)));
        assert_eq!(open(&mut ipvs, &format!("10.0.0.2:{port}")), Some(sa(B)));
    }
    // A quiesced: 10.0.0.1 (bucket 177) finds nothing without fallback.
    ipvs.edit_dest(Instant::ZERO, &key, DestSpec::masq(sa(A), 0))
        .unwrap();
    assert_eq!(open(&mut ipvs, "10.0.0.1:4000"), None);
}

#[test]
fn sh_fallback_and_port_flags() {
    let flags = SchedFlags {
        flag1: true,
        flag2: false,
        flag3: false,
    };
    let (mut ipvs, key) = service(Scheduler::Sh, flags, &[(A, 1), (B, 1)]);
    ipvs.edit_dest(Instant::ZERO, &key, DestSpec::masq(sa(A), 0))
        .unwrap();
    // Bucket 177 is A's; offset 177 probes bucket (177 + 177) & 255 = 98: B.
    assert_eq!(open(&mut ipvs, "10.0.0.1:4000"), Some(sa(B)));

    let port = SchedFlags {
        flag1: false,
        flag2: true,
        flag3: false,
    };
    let (mut ipvs, _) = service(Scheduler::Sh, port, &[(A, 1), (B, 1)]);
    // 10.0.0.1 port 1 hashes like 10.0.0.2: bucket 98, B; port 2 → 0x13 odd, A.
    assert_eq!(open(&mut ipvs, "10.0.0.1:1"), Some(sa(B)));
    assert_eq!(open(&mut ipvs, "10.0.0.1:2"), Some(sa(A)));
}

#[test]
fn dh_sends_every_client_of_a_virtual_address_to_one_server() {
    // Bucket of 10.96.0.1 is 177 (odd): A in a B, A list.
    let (mut ipvs, _) = service(Scheduler::Dh, SchedFlags::default(), &[(A, 1), (B, 1)]);
    let all: Vec<_> = (1..20)
        .map(|i| open(&mut ipvs, &format!("192.0.2.{i}:5000")))
        .collect();
    assert!(all.iter().all(|d| *d == Some(sa(A))), "{all:?}");
}

#[test]
fn overloaded_servers_are_skipped_until_below_the_hysteresis() {
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::tcp(sa(VIP));
    ipvs.add_service(Instant::ZERO, ServiceSpec::new(key, Scheduler::Rr))
        .unwrap();
    ipvs.add_dest(Instant::ZERO, &key, DestSpec::masq(sa(A), 1))
        .unwrap();
    let capped = DestSpec {
        u_threshold: 2,
        ..DestSpec::masq(sa(B), 1)
    };
    ipvs.add_dest(Instant::ZERO, &key, capped).unwrap();
    // B, A, B (B now at 2 = u_threshold: overloaded), A, A.
    assert_eq!(names(&sequence(&mut ipvs, 5)), "BABAA");
    let b = ipvs.dests(&key).unwrap()[0].clone();
    assert!(b.overloaded);
    assert_eq!(ipvs.candidates(&key), vec![sa(A)]);
    // B's connections (client ports 40000, 40002) get established; one is
    // reset (CLOSE, 10 s) and expires: 1 * 4 < 2 * 3 clears the flag.
    for port in ["40000", "40002"] {
        let client = sa(&format!("192.0.2.1:{port}"));
        ipvs.process_in(Instant::ZERO, &Packet::tcp(client, sa(VIP), ACK));
    }
    let client = sa("192.0.2.1:40000");
    ipvs.process_in(Instant::ZERO, &Packet::tcp(client, sa(VIP), 0x04));
    ipvs.advance(Instant::from_secs(10));
    let b = &ipvs.dests(&key).unwrap()[0];
    assert_eq!((b.active_conns, b.inact_conns, b.overloaded), (1, 0, false));
}
