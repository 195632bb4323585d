//! The nftables model's query API and error contract: what an evaluator
//! and a proxier see — lookups with concatenated keys, verdict maps,
//! `numgen` endpoint choice, set membership, element expiry on virtual time,
//! packet-path set updates, use counts — and how refusals are reported.

use std::time::Duration;

use sim::nftables::{
    Atom, ErrorKind, Expr, Family, ListOptions, MapRef, Match, MetaKey, NftError, PayloadField,
    Rhs, Ruleset, SetOp, Stmt, Value, Verdict,
};
use sim::time::Instant;

const KUBE: &str = r#"
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy services
add chain ip kube-proxy endpoint-A
add chain ip kube-proxy endpoint-B
add chain ip kube-proxy service-X
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy affinity-A { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy service-X ip saddr @affinity-A goto endpoint-A
add rule ip kube-proxy service-X numgen random mod 2 vmap { 0 : goto endpoint-A , 1 : goto endpoint-B }
add rule ip kube-proxy endpoint-A update @affinity-A { ip saddr }
add rule ip kube-proxy endpoint-A meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy endpoint-B meta l4proto tcp dnat to 10.180.0.2:80
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips {
    172.30.0.41 . tcp . 80 : goto service-X,
    172.30.0.41 . udp . 53 : drop
}
"#;

fn load(script: &str) -> Ruleset {
    let mut rs = Ruleset::new();
    if let Err(e) = rs.apply(script, Instant::ZERO) {
        panic!("script refused: {e}");
    }
    rs
}

fn refuse(rs: &mut Ruleset, script: &str) -> NftError {
    let before = rs.clone();
    let err = rs
        .apply(script, Instant::ZERO)
        .expect_err("must be refused");
    assert_eq!(*rs, before, "a refused transaction changed the ruleset");
    err
}

fn ip(s: &str) -> Value {
    Value::Ipv4(s.parse().expect("address"))
}

#[test]
fn service_dispatch_is_one_map_lookup_with_a_concatenated_key() {
    let rs = load(KUBE);
    let t = rs.table(Family::Ip, "kube-proxy").expect("table");
    let services = t.chain("services").expect("chain");
    let Stmt::Vmap { key, map } = &services.rules()[0].stmts()[0] else {
        panic!("services dispatches with a verdict map");
    };
    assert_eq!(
        key.parts(),
        [
            Expr::Payload(PayloadField::IpDaddr),
            Expr::Meta(MetaKey::L4proto),
            Expr::Payload(PayloadField::Port(
                sim::nftables::L4Header::Th,
                sim::nftables::PortField::Dport
            )),
        ]
    );
    let MapRef::Named(name) = map else {
        panic!("named map")
    };
    let m = t.set(name).expect("map");
    let k = [ip("172.30.0.41"), Value::Proto(6), Value::Port(80)];
    assert_eq!(
        m.verdict(&k, Instant::ZERO),
        Some(&Verdict::Goto("service-X".into()))
    );
    let udp = [ip("172.30.0.41"), Value::Proto(17), Value::Port(53)];
    assert_eq!(m.verdict(&udp, Instant::ZERO), Some(&Verdict::Drop));
    let miss = [ip("172.30.0.41"), Value::Proto(6), Value::Port(443)];
    assert_eq!(m.verdict(&miss, Instant::ZERO), None);
    assert!(t
        .set("cluster-ips")
        .expect("set")
        .contains(&[ip("172.30.0.41")], Instant::ZERO));
}

#[test]
fn numgen_and_affinity_rules_are_walkable() {
    let rs = load(KUBE);
    let t = rs.table(Family::Ip, "kube-proxy").expect("table");
    let svc = t.chain("service-X").expect("chain");
    let Stmt::Match(Match {
        left,
        right: Rhs::Named(set),
        ..
    }) = &svc.rules()[0].stmts()[0]
    else {
        panic!("affinity lookup first");
    };
    assert_eq!(*left, Expr::Payload(PayloadField::IpSaddr));
    assert_eq!(set, "affinity-A");
    let Stmt::Vmap {
        key: Expr::Numgen {
            modulus: 2,
            offset: 0,
        },
        map: MapRef::Anonymous(m),
    } = &svc.rules()[1].stmts()[0]
    else {
        panic!("numgen vmap second");
    };
    assert_eq!(
        m.lookup(&[Value::Int(1)]),
        Some(&Verdict::Goto("endpoint-B".into()))
    );
    assert_eq!(t.chain_uses("endpoint-A"), 2);
    assert_eq!(t.chain_uses("service-X"), 1, "the map element refers to it");
    assert_eq!(t.set_uses("affinity-A"), 2);
    let base = t.base_chains(sim::nftables::Hook::Prerouting);
    assert_eq!(base.len(), 1);
    assert_eq!(base[0].0.priority, -100);
}

#[test]
fn affinity_elements_expire_on_virtual_time() {
    let mut rs = load(KUBE);
    let update = {
        let t = rs.table(Family::Ip, "kube-proxy").expect("table");
        let Stmt::SetUpdate(u) = &t.chain("endpoint-A").expect("chain").rules()[0].stmts()[0]
        else {
            panic!("update statement");
        };
        assert_eq!(u.op, SetOp::Update);
        u.clone()
    };
    let client = [ip("203.0.113.7")];
    assert!(rs.update_set((Family::Ip, "kube-proxy"), &update, &client, Instant::ZERO));
    let at = |s: u64| Instant::from_secs(s);
    let listed = rs
        .list(
            "list set ip kube-proxy affinity-A",
            ListOptions::default(),
            at(3600),
        )
        .unwrap();
    assert!(
        listed.contains("elements = { 203.0.113.7 expires 2h }"),
        "{listed}"
    );
    // Refreshed by another packet at 1h: lives until 4h.
    assert!(rs.update_set((Family::Ip, "kube-proxy"), &update, &client, at(3600)));
    let set = |rs: &Ruleset| {
        rs.table(Family::Ip, "kube-proxy")
            .unwrap()
            .set("affinity-A")
            .unwrap()
            .clone()
    };
    assert!(set(&rs).contains(&client, at(3 * 3600 + 1)));
    assert!(!set(&rs).contains(&client, at(4 * 3600)));
    rs.expire(at(4 * 3600));
    assert!(
        set(&rs).is_empty(Instant::ZERO),
        "expired elements are gone"
    );
}

#[test]
fn element_timeouts_and_expiry_print_from_now() {
    let mut rs = load(
        "add table ip t\nadd set ip t s { type ipv4_addr ; flags timeout ; timeout 10s ; }\n\
         add element ip t s { 1.1.1.1, 2.2.2.2 timeout 1h expires 90s, 3.3.3.3 timeout 1003ms }\n",
    );
    let now = Instant::ZERO + Duration::from_millis(2500);
    let text = rs
        .list("list set ip t s", ListOptions::default(), now)
        .unwrap();
    assert!(
        text.contains("1.1.1.1 expires 7s500ms, 2.2.2.2 timeout 1h expires 1m27s500ms"),
        "{text}"
    );
    assert!(
        !text.contains("3.3.3.3"),
        "1s timeout, truncated to kernel ticks, has passed: {text}"
    );
    // Re-adding an expired key works; an unexpired one is a no-op.
    rs.apply("add element ip t s { 3.3.3.3 }", now).unwrap();
    assert!(rs
        .table(Family::Ip, "t")
        .unwrap()
        .set("s")
        .unwrap()
        .contains(&[ip("3.3.3.3")], now));
}

#[test]
fn interval_and_anonymous_sets_match_ranges() {
    let rs = load(
        "add table ip t\nadd chain ip t c\nadd set ip t nets { type ipv4_addr ; flags interval ; }\n\
         add element ip t nets { 10.0.0.0/8, 192.168.1.0/24 }\n\
         add rule ip t c ip saddr != { 203.0.113.0/25, 192.168.0.0/24 } drop\n",
    );
    let t = rs.table(Family::Ip, "t").unwrap();
    let nets = t.set("nets").unwrap();
    assert!(nets.contains(&[ip("10.1.2.3")], Instant::ZERO));
    assert!(!nets.contains(&[ip("11.0.0.1")], Instant::ZERO));
    let Stmt::Match(Match {
        right: Rhs::Set(s), ..
    }) = &t.chain("c").unwrap().rules()[0].stmts()[0]
    else {
        panic!("anonymous set");
    };
    assert!(s.contains(&[ip("203.0.113.100")]));
    assert!(!s.contains(&[ip("203.0.113.200")]));
    assert_eq!(s.elements[0], vec![Atom::Prefix(ip("192.168.0.0"), 24)]);
}

#[test]
fn unsupported_syntax_names_line_token_and_hint() {
    let mut rs = load("add table ip t\nadd chain ip t c\n");
    let e = refuse(
        &mut rs,
        "add rule ip t c accept\nadd rule ip t c ip daddr 1.2.3.4 log prefix \"x\" accept\n",
    );
    assert_eq!((e.line, e.column), (2, 34));
    assert_eq!(e.token(), Some("log"));
    assert!(matches!(e.kind, ErrorKind::Unsupported { .. }));
    assert!(e.to_string().contains("hint"), "{e}");
    let e = refuse(&mut rs, "define x = 1\n");
    assert!(matches!(e.kind, ErrorKind::Unsupported { .. }));
    let e = refuse(&mut rs, "add set ip t s { typeof ip saddr ; }\n");
    assert_eq!(e.token(), Some("typeof"));
    let e = refuse(&mut rs, "add rule ip t c tcp dport http accept\n");
    assert_eq!(
        e.token(),
        Some("http"),
        "no service-name lookups through the host"
    );
}

#[test]
fn bad_input_is_a_typed_error_at_its_place() {
    let mut rs = load("add table ip t\nadd chain ip t c\n");
    let e = refuse(&mut rs, "add rule ip t c tcp dport 70000 accept");
    assert_eq!((e.line, e.column, e.token()), (1, 27, Some("70000")));
    let e = refuse(&mut rs, "add rule ip t c ip daddr 1.2.3.256 accept");
    assert!(matches!(e.kind, ErrorKind::BadValue { .. }));
    let e = refuse(&mut rs, "add rule ip t c comment \"unterminated");
    assert!(matches!(e.kind, ErrorKind::UnterminatedString { .. }));
    let e = refuse(&mut rs, "add rule ip t c jump nowhere");
    assert!(matches!(e.kind, ErrorKind::NotFound { what: "chain", .. }));
    let e = refuse(
        &mut rs,
        "add rule ip t c meta l4proto tcp udp dport 53 accept",
    );
    assert!(matches!(e.kind, ErrorKind::ConflictingProtocols { .. }));
    let e = refuse(&mut rs, "add chain ip t c\ndelete chain ip t nope");
    assert_eq!(e.line, 2);
}

#[test]
fn a_failed_transaction_changes_nothing() {
    let mut rs = load(KUBE);
    let e = refuse(
        &mut rs,
        "flush map ip kube-proxy service-ips\nadd element ip kube-proxy cluster-ips { 172.30.0.42 }\n\
         delete chain ip kube-proxy endpoint-A\n",
    );
    assert!(matches!(e.kind, ErrorKind::Busy { uses: 2, .. }), "{e}");
    let t = rs.table(Family::Ip, "kube-proxy").unwrap();
    assert!(!t
        .set("cluster-ips")
        .unwrap()
        .contains(&[ip("172.30.0.42")], Instant::ZERO));
    assert_eq!(t.set("service-ips").unwrap().len(Instant::ZERO), 2);
}

#[test]
fn commit_checks_refuse_loops_and_misplaced_nat() {
    let mut rs = load(KUBE);
    let e = refuse(&mut rs, "add rule ip kube-proxy endpoint-B jump service-X");
    assert!(matches!(e.kind, ErrorKind::Loop { .. }), "{e}");
    let e = refuse(
        &mut rs,
        "add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }\n\
         add rule ip kube-proxy filter-input jump endpoint-B\n",
    );
    assert!(matches!(e.kind, ErrorKind::KernelRefused { .. }), "{e}");
    assert_eq!(e.line, 2);
}

#[test]
fn listings_of_missing_objects_are_errors() {
    let rs = load(KUBE);
    let e = rs
        .list(
            "list chain ip kube-proxy nope",
            ListOptions::default(),
            Instant::ZERO,
        )
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::NotFound { .. }));
    assert!(rs
        .list(
            "list table ip6 kube-proxy",
            ListOptions::default(),
            Instant::ZERO
        )
        .is_err());
    let text = rs
        .list("list tables", ListOptions::default(), Instant::ZERO)
        .unwrap();
    assert_eq!(text, "table ip kube-proxy\n");
}

#[test]
fn the_same_transactions_give_the_same_listing() {
    let a = load(KUBE).list_ruleset(Instant::ZERO);
    let b = load(KUBE).list_ruleset(Instant::ZERO);
    assert_eq!(a, b);
    assert!(a.contains("numgen random mod 2 vmap { 0 : goto endpoint-A, 1 : goto endpoint-B }"));
}
