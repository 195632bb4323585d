//! The `mh` (Maglev hashing) scheduler against the properties of the
//! kernel's algorithm (`ip_vs_mh.c`, Eisenbud et al., NSDI '16 §3.4): the
//! 4093-slot table is always full; equal weights share it to within one
//! slot, weights share it in proportion (after the `gcd` and `rshift`
//! reduction, exactly computable); removing a server moves few of the other
//! servers' slots; a quiesced server keeps its slots. The hash itself
//! (`hsiphash`) is checked against the kernel's test vectors in the unit
//! tests of `sched::siphash`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sim::ipvs::sched::{maglev_table, MH_TABLE_SIZE};
use sim::ipvs::{
    DestSpec, InVerdict, Ipvs, Packet, SchedFlags, Scheduler, ServiceKey, ServiceSpec,
};
use sim::time::Instant;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn servers(n: usize, weight: u32) -> Vec<(SocketAddr, u32)> {
    (0..n)
        .map(|i| {
            (
                sa(&format!("10.244.{}.{}:8080", i / 250, i % 250 + 1)),
                weight,
            )
        })
        .collect()
}

fn shares(table: &[Option<usize>]) -> BTreeMap<usize, usize> {
    let mut m = BTreeMap::new();
    for s in table {
        *m.entry(s.expect("every slot filled")).or_insert(0) += 1;
    }
    m
}

#[test]
fn the_table_has_the_default_prime_size_and_is_full() {
    // CONFIG_IP_VS_MH_TAB_INDEX defaults to 12: primes[12 - 8] = 4093.
    assert_eq!(MH_TABLE_SIZE, 4093);
    let t = maglev_table(&servers(7, 1));
    assert_eq!(t.len(), 4093);
    assert!(t.iter().all(Option::is_some));
    assert!(maglev_table(&servers(3, 0)).iter().all(Option::is_none));
    assert!(maglev_table(&[]).iter().all(Option::is_none));
}

#[test]
fn equal_weights_share_to_within_one_slot() {
    // One slot per server per turn: 4093 = 5 * 818 + 3.
    let s = shares(&maglev_table(&servers(5, 1)));
    assert_eq!(
        s.values().copied().collect::<Vec<_>>(),
        [819, 819, 819, 818, 818]
    );
}

#[test]
fn weights_share_in_proportion_after_gcd_and_shift() {
    // 2:1 → turns 2 and 1; 4093 = 1364 * 3 + 1 (the extra to the first).
    let two_one = [(sa("10.244.0.1:80"), 2), (sa("10.244.0.2:80"), 1)];
    let s = shares(&maglev_table(&two_one));
    assert_eq!((s[&0], s[&1]), (2729, 1364));
    // 6:3 is the same table as 2:1 (gcd 3).
    let six_three = [(two_one[0].0, 6), (two_one[1].0, 3)];
    assert_eq!(maglev_table(&six_three), maglev_table(&two_one));
    // 1000:1: max/gcd = 1000 needs 10 bits, shift 10 - 6 = 4: turns 62 and
    // (1 >> 4 = 0, so) 1. 4093 = 64 * 63 + 61.
    let skewed = [(two_one[0].0, 1000), (two_one[1].0, 1)];
    let s = shares(&maglev_table(&skewed));
    assert_eq!((s[&0], s[&1]), (64 * 62 + 61, 64));
}

#[test]
fn removing_a_server_moves_few_other_slots() {
    for (n, limit_percent) in [(5usize, 2usize), (100, 5)] {
        let all = servers(n, 1);
        let before = maglev_table(&all);
        for removed in [0, n / 2, n - 1] {
            let mut rest = all.clone();
            rest.remove(removed);
            let after = maglev_table(&rest);
            let (mut others, mut moved) = (0, 0);
            for (b, a) in before.iter().zip(&after) {
                let (b, a) = (b.expect("full"), a.expect("full"));
                if b != removed {
                    others += 1;
                    if all[b].0 != rest[a].0 {
                        moved += 1;
                    }
                }
            }
            assert!(
                moved * 100 < others * limit_percent,
                "{n} servers, removing #{removed} moved {moved} of {others}"
            );
        }
    }
}

const VIP: &str = "10.96.0.10:53";

fn mh_service(flags: SchedFlags, n: usize) -> (Ipvs, ServiceKey) {
    let mut ipvs = Ipvs::default();
    let key = ServiceKey::udp(sa(VIP));
    let mut spec = ServiceSpec::new(key, Scheduler::Mh);
    spec.sched_flags = flags;
    ipvs.add_service(Instant::ZERO, spec).unwrap();
    for (addr, w) in servers(n, 1) {
        ipvs.add_dest(Instant::ZERO, &key, DestSpec::masq(addr, w))
            .unwrap();
    }
    (ipvs, key)
}

/// The server each of 200 clients is sent to (one-shot UDP, no entries kept
/// between rounds: every datagram is from a fresh port of the client).
fn assignment(ipvs: &mut Ipvs, round: u16) -> Vec<Option<SocketAddr>> {
    (0..200)
        .map(|i| {
            let client = sa(&format!("198.51.100.{}:{}", i % 250 + 1, 1000 + round));
            match ipvs.process_in(Instant::ZERO, &Packet::udp(client, sa(VIP))) {
                InVerdict::Forward(f) => Some(f.dest),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn a_quiesced_server_keeps_its_slots() {
    let (mut ipvs, key) = mh_service(SchedFlags::default(), 4);
    let before = assignment(&mut ipvs, 0);
    assert!(before.iter().all(Option::is_some));
    // Clients hash on the address only: a new port changes nothing.
    assert_eq!(assignment(&mut ipvs, 1), before);
    let victim = before[0].expect("scheduled");
    ipvs.edit_dest(Instant::ZERO, &key, DestSpec::masq(victim, 0))
        .unwrap();
    let after = assignment(&mut ipvs, 2);
    for (b, a) in before.iter().zip(&after) {
        if *b == Some(victim) {
            assert_eq!(*a, None, "the victim's clients find nothing");
        } else {
            assert_eq!(a, b, "everyone else stays put");
        }
    }
}

#[test]
fn fallback_moves_only_the_quiesced_servers_clients() {
    let flags = SchedFlags {
        flag1: true,
        flag2: false,
        flag3: false,
    };
    let (mut ipvs, key) = mh_service(flags, 4);
    let before = assignment(&mut ipvs, 0);
    let victim = before[0].expect("scheduled");
    ipvs.edit_dest(Instant::ZERO, &key, DestSpec::masq(victim, 0))
        .unwrap();
    let after = assignment(&mut ipvs, 1);
    for (b, a) in before.iter().zip(&after) {
        assert!(a.is_some() && *a != Some(victim));
        if *b != Some(victim) {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn port_flag_spreads_one_client_over_servers() {
    let flags = SchedFlags {
        flag1: false,
        flag2: true,
        flag3: false,
    };
    let (mut ipvs, _) = mh_service(flags, 4);
    let used: std::collections::BTreeSet<SocketAddr> = (0..64)
        .filter_map(|port| {
            let client = sa(&format!("198.51.100.1:{}", 2000 + port));
            match ipvs.process_in(Instant::ZERO, &Packet::udp(client, sa(VIP))) {
                InVerdict::Forward(f) => Some(f.dest),
                _ => None,
            }
        })
        .collect();
    assert_eq!(used.len(), 4);
}
