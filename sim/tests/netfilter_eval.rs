//! The chain walker and every match, evaluated directly on a ruleset.
//! The `statistic --mode nth` sequence was measured on Linux 6.18 (rule
//! counters after each of six packets).

use std::collections::BTreeMap;
use std::net::IpAddr;

use sim::netfilter::eval::{
    evaluate, AddrTypeLookup, ChainOutcome, Decision, Env, NfacctCounters, PacketCtx, RecentTables,
    Trace, TraceKind,
};
use sim::netfilter::{CtStates, Family, Hook, RestoreMode, Ruleset, TableId, Variant};
use sim::node::IpSets;
use sim::packet::{Packet, PacketRepr, TcpFlags, Transport};
use sim::rng::stream;
use sim::time::Instant;

mod common;

use common::ip;

/// Local addresses: 192.168.0.10 on eth0 and 127.0.0.1 on lo.
struct Addrs;

impl AddrTypeLookup for Addrs {
    fn addr_type(&self, addr: IpAddr, iface: Option<&str>) -> usize {
        let local = match iface {
            None => addr == ip("192.168.0.10") || addr == ip("127.0.0.1"),
            Some("eth0") => addr == ip("192.168.0.10"),
            Some("lo") => addr == ip("127.0.0.1"),
            Some(_) => false,
        };
        if local {
            2
        } else {
            1
        }
    }
}

/// Everything outside the ruleset, kept across evaluations.
struct World {
    rs: Ruleset,
    sets: IpSets,
    recent: RecentTables,
    nfacct: NfacctCounters,
    nth: BTreeMap<(TableId, String, usize), u32>,
    rng: rand_chacha::ChaCha8Rng,
    now: Instant,
}

fn world(rules: &str) -> World {
    let mut rs = Ruleset::new(Family::Ipv4, Variant::Nft);
    rs.restore(rules, RestoreMode::NoFlush).unwrap();
    World {
        rs,
        sets: IpSets::default(),
        recent: RecentTables::default(),
        nfacct: NfacctCounters::new(),
        nth: BTreeMap::new(),
        rng: stream(1, "eval"),
        now: Instant::ZERO,
    }
}

struct Pkt {
    p: Packet,
    hook: Hook,
    in_iface: Option<&'static str>,
    mark: u32,
    ctstate: CtStates,
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: TcpFlags) -> Pkt {
    let p = common::tcp(src, sport, dst, dport, flags);
    Pkt {
        p,
        hook: Hook::Input,
        in_iface: Some("eth0"),
        mark: 0,
        ctstate: CtStates::NEW,
    }
}

fn icmp(ty: u8, code: u8) -> Pkt {
    let p = Packet::build(&PacketRepr {
        src: ip("10.0.0.1"),
        dst: ip("192.168.0.10"),
        ttl: 64,
        ident: 0,
        transport: Transport::Icmp { ty, code, rest: 0 },
        payload: Vec::new(),
    })
    .unwrap();
    Pkt {
        p,
        ..tcp("10.0.0.1", 1, "192.168.0.10", 1, TcpFlags::SYN)
    }
}

/// The one helper: evaluate `table` at the packet's hook; returns the
/// outcome, the final mark and the trace.
fn check(w: &mut World, table: TableId, pkt: &Pkt) -> (ChainOutcome, u32, Trace) {
    let mut trace = Trace::default();
    let mut ctx = PacketCtx {
        pkt: &pkt.p,
        hook: pkt.hook,
        in_iface: pkt.in_iface,
        out_iface: None,
        mark: pkt.mark,
        ctstate: pkt.ctstate,
        ipvs: None,
    };
    let mut env = Env {
        now: w.now,
        addrs: &Addrs,
        sets: &w.sets,
        recent: &mut w.recent,
        nfacct: &mut w.nfacct,
        nth: &mut w.nth,
        choices: &mut w.rng,
        hits: Vec::new(),
        trace: Some(&mut trace),
        label: "",
    };
    let out = evaluate(&w.rs, table, &mut ctx, &mut env).unwrap();
    (out, ctx.mark, trace)
}

fn decided(out: &ChainOutcome) -> (Decision, Option<(String, usize)>) {
    (
        out.decision.clone(),
        out.by.as_ref().map(|r| (r.chain.clone(), r.num)),
    )
}

#[test]
fn goto_returns_to_the_caller_of_the_chain_that_went() {
    let mut w = world(
        "*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A INPUT -j DROP\n-A A -g B\n-A A -j ACCEPT\n-A B -j RETURN\nCOMMIT\n",
    );
    let (out, _, trace) = check(
        &mut w,
        TableId::Filter,
        &tcp("10.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN),
    );
    assert_eq!(decided(&out), (Decision::Drop, Some(("INPUT".into(), 2))));
    assert_eq!(out.rules_evaluated, 4);
    assert_eq!(
        trace.matched_rules(),
        [
            "filter:INPUT:1",
            "filter:A:1",
            "filter:B:1",
            "filter:INPUT:2"
        ]
    );
}

#[test]
fn return_from_a_builtin_chain_and_the_end_of_it_apply_the_policy() {
    let mut w = world("*filter\n:INPUT DROP [0:0]\n-A INPUT -p udp -j ACCEPT\n-A INPUT -p tcp --dport 22 -j RETURN\nCOMMIT\n");
    let (out, _, trace) = check(
        &mut w,
        TableId::Filter,
        &tcp("10.0.0.1", 1, "192.168.0.10", 22, TcpFlags::SYN),
    );
    assert_eq!(decided(&out), (Decision::Drop, None));
    assert!(matches!(
        trace.records.last().unwrap().kind,
        TraceKind::Policy { num: 3, .. }
    ));
    let (out, _, _) = check(
        &mut w,
        TableId::Filter,
        &tcp("10.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN),
    );
    assert_eq!(out.rules_evaluated, 2);
    assert_eq!(decided(&out), (Decision::Drop, None));
}

#[test]
fn address_interface_protocol_port_and_flag_matches() {
    let rules = "*filter\n\
-A INPUT ! -s 10.0.0.0/8 -j DROP\n\
-A INPUT ! -i eth+ -j DROP\n\
-A INPUT ! -p tcp -j ACCEPT\n\
-A INPUT -p tcp -m multiport --dports 1:10,80,443 -m tcp --syn -j ACCEPT\n\
-A INPUT -p tcp -m multiport ! --dports 1:10,80,443 -j REJECT --reject-with tcp-reset\n\
COMMIT\n";
    let mut w = world(rules);
    let mut go = |p: Pkt| decided(&check(&mut w, TableId::Filter, &p).0);
    assert_eq!(
        go(tcp("11.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN)).1,
        Some(("INPUT".into(), 1))
    );
    let mut from_lo = tcp("10.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN);
    from_lo.in_iface = Some("lo");
    assert_eq!(go(from_lo).1, Some(("INPUT".into(), 2)));
    assert_eq!(go(icmp(8, 0)).1, Some(("INPUT".into(), 3)));
    assert_eq!(
        go(tcp("10.0.0.1", 1, "192.168.0.10", 7, TcpFlags::SYN)).1,
        Some(("INPUT".into(), 4))
    );
    // An ACK to 443 fails --syn and is not in the negated list: no rule decides.
    assert_eq!(
        go(tcp("10.0.0.1", 1, "192.168.0.10", 443, TcpFlags::ACK)),
        (Decision::Accept, None)
    );
    let (d, by) = go(tcp("10.0.0.1", 1, "192.168.0.10", 8080, TcpFlags::SYN));
    assert!(matches!(d, Decision::Reject(_)));
    assert_eq!(by, Some(("INPUT".into(), 5)));
}

#[test]
fn icmp_types_and_codes() {
    let mut w = world("*filter\n-A INPUT -p icmp -m icmp --icmp-type port-unreachable -j DROP\n-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT\nCOMMIT\n");
    let mut go = |p: Pkt| decided(&check(&mut w, TableId::Filter, &p).0).1;
    assert_eq!(go(icmp(3, 3)), Some(("INPUT".into(), 1)));
    assert_eq!(go(icmp(3, 1)), None);
    assert_eq!(go(icmp(8, 0)), Some(("INPUT".into(), 2)));
}

#[test]
fn mark_targets_change_the_mark_later_rules_see() {
    let rules = "*mangle\n\
-A PREROUTING -j MARK --or-mark 0x4000\n\
-A PREROUTING -m mark --mark 0x4000/0x4000 -j MARK --xor-mark 0x4001\n\
-A PREROUTING -m mark ! --mark 0x1/0x1 -j DROP\n\
COMMIT\n";
    let mut w = world(rules);
    let mut p = tcp("10.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN);
    p.hook = Hook::Prerouting;
    let (out, mark, _) = check(&mut w, TableId::Mangle, &p);
    assert_eq!(mark, 0x1);
    assert_eq!(out.decision, Decision::Accept);
    p.mark = 0x4001;
    let (out, mark, _) = check(&mut w, TableId::Mangle, &p);
    assert_eq!(mark, 0x0);
    assert_eq!(out.decision, Decision::Drop);
}

#[test]
fn addrtype_with_and_without_an_interface_limit() {
    let rules = "*nat\n\
-A PREROUTING -m addrtype --dst-type LOCAL --limit-iface-in -j DNAT --to-destination 10.1.1.1\n\
-A PREROUTING -p tcp -m addrtype --dst-type LOCAL -j DNAT --to-destination 10.2.2.2:8080\n\
-A PREROUTING -m addrtype ! --src-type LOCAL -j RETURN\n\
COMMIT\n";
    let mut w = world(rules);
    let mut p = tcp("10.0.0.1", 1, "127.0.0.1", 80, TcpFlags::SYN);
    p.hook = Hook::Prerouting;
    let (out, _, _) = check(&mut w, TableId::Nat, &p);
    let Decision::Dnat(r) = out.decision else {
        panic!("{out:?}")
    };
    assert_eq!(r.addrs, Some((ip("10.2.2.2"), ip("10.2.2.2"))));
    assert_eq!(r.ports, Some((8080, 8080)));
    let mut p = tcp("10.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN);
    p.hook = Hook::Prerouting;
    let (out, _, _) = check(&mut w, TableId::Nat, &p);
    assert_eq!(decided(&out).1, Some(("PREROUTING".into(), 1)));
}

#[test]
fn conntrack_and_state_matches_see_nat_bits() {
    let rules = "*filter\n\
-A INPUT -m state --state INVALID -j DROP\n\
-A INPUT -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j REJECT\n\
-A INPUT -m conntrack --ctstate DNAT -j ACCEPT\n\
COMMIT\n";
    let mut w = world(rules);
    let mut go = |st: CtStates| {
        let mut p = tcp("10.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN);
        p.ctstate = st;
        decided(&check(&mut w, TableId::Filter, &p).0)
            .1
            .map(|x| x.1)
    };
    assert_eq!(go(CtStates::INVALID), Some(1));
    assert_eq!(go(CtStates::NEW), Some(2));
    assert_eq!(go(CtStates(CtStates::NEW.0 | CtStates::DNAT.0)), Some(3));
    assert_eq!(go(CtStates::ESTABLISHED), None);
}

#[test]
fn statistic_nth_matches_like_the_kernel() {
    let rules = "*filter\n\
-A INPUT -p tcp --dport 1 -m statistic --mode nth --every 3 --packet 0 -j ACCEPT\n\
-A INPUT -p tcp --dport 2 -m statistic --mode nth --every 3 --packet 2 -j ACCEPT\n\
COMMIT\n";
    let mut w = world(rules);
    for (port, want) in [
        (1, [true, false, false, true, false, false]),
        (2, [false, false, true, false, false, true]),
    ] {
        let got: Vec<bool> = (0..6)
            .map(|_| {
                let (out, _, _) = check(
                    &mut w,
                    TableId::Filter,
                    &tcp("10.0.0.1", 1, "192.168.0.10", port, TcpFlags::SYN),
                );
                out.by.is_some()
            })
            .collect();
        assert_eq!(got, want, "--dport {port}");
    }
}

#[test]
fn statistic_random_certainties() {
    let mut w = world("*filter\n-A INPUT -m statistic --mode random --probability 0 -j DROP\n-A INPUT -m statistic --mode random --probability 1 -j ACCEPT\nCOMMIT\n");
    for _ in 0..50 {
        let (out, _, _) = check(
            &mut w,
            TableId::Filter,
            &tcp("10.0.0.1", 1, "192.168.0.10", 1, TcpFlags::SYN),
        );
        assert_eq!(decided(&out).1, Some(("INPUT".into(), 2)));
    }
}

#[test]
fn recent_set_update_remove_and_rdest_with_mask() {
    let rules = "*filter\n\
-A INPUT -p tcp --dport 1 -m recent --name A --set --mask 255.255.255.0 --rsource -j ACCEPT\n\
-A INPUT -p tcp --dport 2 -m recent --name A --update --seconds 10 --hitcount 2 --mask 255.255.255.0 --rsource -j ACCEPT\n\
-A INPUT -p tcp --dport 3 -m recent --name A --remove --mask 255.255.255.0 --rsource -j ACCEPT\n\
-A INPUT -p tcp --dport 4 -m recent --name B --set --rdest -j ACCEPT\n\
COMMIT\n";
    let mut w = world(rules);
    let go = |w: &mut World, src: &str, port: u16, at: u64| {
        w.now = Instant::from_secs(at);
        check(
            w,
            TableId::Filter,
            &tcp(src, 1, "192.168.0.10", port, TcpFlags::SYN),
        )
        .0
        .by
        .is_some()
    };
    assert!(!go(&mut w, "10.0.0.1", 2, 0), "nothing recorded yet");
    assert!(go(&mut w, "10.0.0.1", 1, 0));
    assert!(
        !go(&mut w, "10.0.0.7", 2, 1),
        "one hit < hitcount 2 (same /24)"
    );
    assert!(go(&mut w, "10.0.0.7", 1, 2));
    assert!(go(&mut w, "10.0.0.9", 2, 3), "two hits within 10 s");
    assert!(
        !go(&mut w, "10.0.0.9", 2, 30),
        "hits older than 10 s do not count"
    );
    assert_eq!(w.recent.addresses("A"), [ip("10.0.0.0")]);
    assert!(go(&mut w, "10.0.0.1", 3, 31));
    assert!(w.recent.addresses("A").is_empty());
    go(&mut w, "10.0.0.1", 4, 32);
    assert_eq!(w.recent.addresses("B"), [ip("192.168.0.10")]);
}

#[test]
fn set_matches_and_missing_objects_are_errors() {
    let rules = "*filter\n\
-A INPUT -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT\n\
-A INPUT -m set ! --match-set KUBE-SRC src -j DROP\n\
-A INPUT -m nfacct --nfacct-name counted -j RETURN\n\
COMMIT\n";
    let mut w = world(rules);
    w.sets
        .restore(
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\nadd KUBE-CLUSTER-IP 192.168.0.10,tcp:80\ncreate KUBE-SRC hash:net family inet\nadd KUBE-SRC 10.0.0.0/8\n",
            false,
        )
        .unwrap();
    let (out, _, _) = check(
        &mut w,
        TableId::Filter,
        &tcp("11.0.0.1", 1, "192.168.0.10", 80, TcpFlags::SYN),
    );
    assert_eq!(decided(&out).1, Some(("INPUT".into(), 1)));
    let (out, _, _) = check(
        &mut w,
        TableId::Filter,
        &tcp("11.0.0.1", 1, "192.168.0.10", 81, TcpFlags::SYN),
    );
    assert_eq!(decided(&out).1, Some(("INPUT".into(), 2)));
    // The nfacct object does not exist: an error naming the rule.
    let p = tcp("10.0.0.1", 1, "192.168.0.10", 81, TcpFlags::SYN);
    let mut trace = Trace::default();
    let mut ctx = PacketCtx {
        pkt: &p.p,
        hook: Hook::Input,
        in_iface: Some("eth0"),
        out_iface: None,
        mark: 0,
        ctstate: CtStates::NEW,
        ipvs: None,
    };
    let mut env = Env {
        now: w.now,
        addrs: &Addrs,
        sets: &w.sets,
        recent: &mut w.recent,
        nfacct: &mut w.nfacct,
        nth: &mut w.nth,
        choices: &mut w.rng,
        hits: Vec::new(),
        trace: Some(&mut trace),
        label: "",
    };
    let e = evaluate(&w.rs, TableId::Filter, &mut ctx, &mut env).unwrap_err();
    assert_eq!((e.chain.as_str(), e.num), ("INPUT", 3));
    assert!(
        e.reason.contains("nfacct object `counted` does not exist"),
        "{e}"
    );
    w.nfacct.insert("counted".into(), Default::default());
    check(
        &mut w,
        TableId::Filter,
        &tcp("10.0.0.1", 1, "192.168.0.10", 81, TcpFlags::SYN),
    );
    assert_eq!(w.nfacct["counted"].packets, 1);
    w.sets.destroy(Some("KUBE-SRC")).unwrap();
    let p = tcp("10.0.0.1", 1, "192.168.0.10", 81, TcpFlags::SYN);
    let mut ctx = PacketCtx {
        pkt: &p.p,
        hook: Hook::Input,
        in_iface: Some("eth0"),
        out_iface: None,
        mark: 0,
        ctstate: CtStates::NEW,
        ipvs: None,
    };
    let mut env = Env {
        now: w.now,
        addrs: &Addrs,
        sets: &w.sets,
        recent: &mut w.recent,
        nfacct: &mut w.nfacct,
        nth: &mut w.nth,
        choices: &mut w.rng,
        hits: Vec::new(),
        trace: None,
        label: "",
    };
    let e = evaluate(&w.rs, TableId::Filter, &mut ctx, &mut env).unwrap_err();
    assert!(e.reason.contains("ipset `KUBE-SRC` does not exist"), "{e}");
}

#[test]
fn trace_lists_every_visited_rule_and_logs_like_the_kernel() {
    let mut w = world("*filter\n:X - [0:0]\n-A INPUT -p udp -j ACCEPT\n-A INPUT -j X\n-A X -p tcp --dport 22 -j DROP\nCOMMIT\n");
    let (_, _, trace) = check(
        &mut w,
        TableId::Filter,
        &tcp("10.0.0.1", 5, "192.168.0.10", 80, TcpFlags::SYN),
    );
    assert_eq!(
        trace.to_string(),
        "filter:INPUT:rule:1 no-match -A INPUT -p udp -j ACCEPT\n\
filter:INPUT:rule:2 match -A INPUT -j X => JUMP X\n\
filter:X:rule:1 no-match -A X -p tcp -m tcp --dport 22 -j DROP\n\
filter:X:return:2\n\
filter:INPUT:policy:3 ACCEPT\n"
    );
    assert_eq!(
        trace.kernel_log(),
        "TRACE: filter:INPUT:rule:2 SRC=10.0.0.1 DST=192.168.0.10 LEN=40 TTL=64 PROTO=TCP SPT=5 DPT=80 SYN\n\
TRACE: filter:X:return:2 SRC=10.0.0.1 DST=192.168.0.10 LEN=40 TTL=64 PROTO=TCP SPT=5 DPT=80 SYN\n\
TRACE: filter:INPUT:policy:3 SRC=10.0.0.1 DST=192.168.0.10 LEN=40 TTL=64 PROTO=TCP SPT=5 DPT=80 SYN\n"
    );
}

/// The same sequence was run on Linux 6.18 (UDP to 127.0.0.1, rule
/// counters read after each packet): the `--update --hitcount 2` rule
/// never matches because a non-matching update adds no stamp, the
/// `--rcheck --seconds 2 --reap` rule stops matching after 3 s and its
/// reap empties the table.
#[test]
fn recent_sequence_measured_on_a_kernel() {
    let rules = "*filter\n\
-A OUTPUT -p tcp --dport 1 -m recent --name A --set -j ACCEPT\n\
-A OUTPUT -p tcp --dport 2 -m recent --name A --rcheck --seconds 2 --reap -j ACCEPT\n\
-A OUTPUT -p tcp --dport 3 -m recent --name A --update --seconds 10 --hitcount 2 -j ACCEPT\n\
COMMIT\n";
    let mut w = world(rules);
    let go = |w: &mut World, port: u16, at: u64| {
        w.now = Instant::from_secs(at);
        let mut p = tcp("127.0.0.1", 1, "127.0.0.1", port, TcpFlags::SYN);
        p.hook = Hook::Output;
        p.in_iface = None;
        check(w, TableId::Filter, &p).0.by.is_some()
    };
    assert!(!go(&mut w, 2, 0), "rcheck before set");
    assert!(go(&mut w, 1, 0));
    assert!(go(&mut w, 2, 0), "rcheck after set");
    assert!(!go(&mut w, 3, 0), "one stamp, hitcount 2");
    assert!(!go(&mut w, 3, 0), "still one stamp");
    assert_eq!(w.recent.addresses("A"), [ip("127.0.0.1")]);
    assert!(!go(&mut w, 2, 3), "older than 2 s");
    assert!(w.recent.addresses("A").is_empty(), "reaped");
}
