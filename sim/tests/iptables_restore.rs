//! Restore semantics and refusals. Every refused payload here was also
//! refused by iptables-restore 1.8.9 (both variants unless noted) in a
//! throwaway network namespace; every error must leave the ruleset unchanged.

use std::net::IpAddr;

use sim::netfilter::{
    ErrorKind, Family, KernelObjects, Match, Policy, PortRange, RestoreError, RestoreMode,
    RestoreOptions, Ruleset, StatisticMode, TableId, Target, Variant,
};

const BASE: &str = "\
*filter
:X - [0:0]
:Y - [0:0]
-A INPUT -j ACCEPT
-A INPUT -j DROP
-A X -j Y
-A Y -j RETURN
-A Y -j ACCEPT
COMMIT
";

fn base(variant: Variant) -> Ruleset {
    let mut rs = Ruleset::new(Family::Ipv4, variant);
    rs.restore(BASE, RestoreMode::Flush).expect("base payload");
    rs
}

/// The one helper for refusals: apply `payload` (noflush) on top of BASE in
/// both variants, require an error, and require the ruleset unchanged.
fn refused(payload: &str) -> RestoreError {
    let mut first = None;
    for variant in [Variant::Nft, Variant::Legacy] {
        let mut rs = base(variant);
        let before = rs.clone();
        let err = rs
            .restore(payload, RestoreMode::NoFlush)
            .expect_err(&format!("{variant:?} accepted:\n{payload}"));
        assert_eq!(
            rs, before,
            "{variant:?}: failed restore changed the ruleset"
        );
        assert_eq!(rs.save(), before.save());
        first.get_or_insert(err);
    }
    first.expect("two variants ran")
}

fn rule_line(rule: &str) -> String {
    format!("*filter\n{rule}\nCOMMIT\n")
}

#[test]
fn unknown_matches_options_and_targets_name_line_and_token() {
    let e = refused("*filter\n-A X -m foo\nCOMMIT\n");
    assert_eq!((e.line, e.token()), (2, Some("foo")));
    assert!(matches!(e.kind, ErrorKind::UnknownMatch { .. }));
    assert!(e.to_string().contains("hint"), "{e}");

    let e = refused("*filter\n# comment\n\n-A X -j ACCEPT --foo\nCOMMIT\n");
    assert_eq!((e.line, e.token()), (4, Some("--foo")));
    assert!(matches!(e.kind, ErrorKind::UnknownOption { .. }));

    let e = refused(&rule_line("-A X -j FOO"));
    assert_eq!(e.token(), Some("FOO"));
    assert!(matches!(e.kind, ErrorKind::UnknownTarget { .. }));
    // Port options without -p.
    let e = refused(&rule_line("-A X --dport 80"));
    assert!(e.to_string().contains("-p tcp"), "{e}");
}

/// Where this model is deliberately stricter than iptables-restore 1.8.9,
/// which accepts each of these.
#[test]
fn deliberate_divergences_are_errors_with_hints() {
    // getopt abbreviations; targets and tables the model does not implement.
    refused(&rule_line("-A X -p tcp --dp 80"));
    let e = refused(&rule_line("-A X -j CONNMARK --set-mark 1"));
    assert!(matches!(e.kind, ErrorKind::UnknownTarget { .. }), "{e}");
    refused("*security\nCOMMIT\n");
    // The real tool swallows the newline into the comment.
    let e = refused(&rule_line("-A X -m comment --comment \"unterminated"));
    assert!(matches!(e.kind, ErrorKind::UnterminatedQuote { .. }));
    // The real tool commits *nat and then fails on *filter; here nothing
    // changes (a restore is atomic across tables).
    refused("*nat\n:KUBE-OK - [0:0]\nCOMMIT\n*filter\n-A NOPE -j ACCEPT\nCOMMIT\n");
    // Hostnames, inet_aton shorthands, address lists.
    refused(&rule_line("-A X -s localhost"));
    refused(&rule_line("-A X -s 10.0.0"));
    refused(&rule_line("-A X -s 10.0.0.1,10.0.0.2"));
}

#[test]
fn malformed_values_are_refused() {
    for rule in [
        "-A X -s 10.0.0.300",
        "-A X -s 10.0.0.1/33",
        "-A X -s host.invalid",
        "-A X -s ! 10.0.0.1",
        "-A X -p tcp -m tcp --dport 90:80",
        "-A X -p tcp -m tcp --dport 65536",
        "-A X -p tcp -m tcp --dport ! 80",
        "-A X -m mark --mark zz",
        "-A X -m conntrack --ctstate FOO",
        "-A X -m statistic --mode random --probability 1.5",
        "-A X -m statistic --mode random",
        "-A X -m statistic --mode nth --every 3",
        "-A X -m recent --rcheck --reap --name foo",
        "-A X -m recent --rcheck --set",
        "-A X -m comment",
        "-A X -m addrtype",
        "-A X -m multiport --dports 80",
        "-A X -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
        "-A X -p tcp -m multiport --dports 80:90,100 --sports 1",
        "-A X -m tcp --dport 80",
        "-A X -j ACCEPT -j DROP",
        "-A X -s 1.1.1.1 -s 1.1.1.2",
        "-A X ! -j ACCEPT",
        "-A X ! -m mark --mark 1",
        "-A X -m comment --comment x -m mark --mark 1 --comment y",
        "-A X -j",
        "-A X -o 0123456789abcdef",
        "-A X -m comment --comment \"a\"b",
        "-A X -j REJECT --reject-with bogus",
        "-A X -j REJECT --reject-with tcp-reset",
        "-A X -m nfacct ! --nfacct-name foo",
        "-A X -t nat -j ACCEPT",
    ] {
        let e = refused(&rule_line(rule));
        assert_eq!(e.line, 2, "{rule}: {e}");
    }
}

#[test]
fn payload_structure_errors() {
    let e = refused("*filter\n:X - [0:0]\n-A X -j ACCEPT\n");
    assert!(matches!(e.kind, ErrorKind::MissingCommit { .. }));
    assert_eq!(e.line, 4);
    refused("*filter\n:X - [0:0]\n  \nCOMMIT\n");
    refused("*filter\n*nat\nCOMMIT\n");
    refused("-A INPUT -j ACCEPT\n");
    refused("*filter\nCOMMIT   \n");
    refused("*filter\n-A X -j ACCEPT # trailing\nCOMMIT\n");
    refused("*filter\n:Z\nCOMMIT\n");
    refused("*filter\n:FORWARD RETURN [0:0]\nCOMMIT\n");
    refused("*filter\n:a-very-long-chain-name-123456 - [0:0]\nCOMMIT\n");
    refused("*filter\n:!X - [0:0]\nCOMMIT\n");
}

#[test]
fn kernel_refusals_are_errors() {
    // -X: referenced, missing, built-in, not empty (even after flushing its parent).
    assert!(matches!(
        refused("*filter\n-F Y\n-X Y\nCOMMIT\n").kind,
        ErrorKind::ChainInUse { .. }
    ));
    assert!(matches!(
        refused("*filter\n-X Z\nCOMMIT\n").kind,
        ErrorKind::NoSuchChain { .. }
    ));
    assert!(matches!(
        refused("*filter\n-X INPUT\nCOMMIT\n").kind,
        ErrorKind::BuiltinChain { .. }
    ));
    assert!(matches!(
        refused("*filter\n:X - [0:0]\n-X Y\nCOMMIT\n").kind,
        ErrorKind::ChainNotEmpty { .. }
    ));
    refused("*filter\n-X\nCOMMIT\n");
    refused("*filter\n-N X\nCOMMIT\n");
    // Jumps: forward references, built-in chains.
    refused("*filter\n-A INPUT -j Z\n:Z - [0:0]\nCOMMIT\n");
    refused("*filter\n-A INPUT -j FORWARD\nCOMMIT\n");
    // Rule numbers and rule specs.
    refused("*filter\n-I INPUT 5 -j LOG\nCOMMIT\n");
    refused("*filter\n-D INPUT 3\nCOMMIT\n");
    refused("*filter\n-R Y 3 -j DROP\nCOMMIT\n");
    refused("*filter\n-D INPUT -j LOG\nCOMMIT\n");
    refused("*filter\n-P X DROP\nCOMMIT\n");
    // Loops reachable from a built-in chain; wrong tables and hooks.
    assert!(matches!(
        refused("*filter\n-F Y\n-I INPUT -j X\n-A Y -j X\nCOMMIT\n").kind,
        ErrorKind::Loop { .. }
    ));
    refused("*nat\n:Q - [0:0]\n-A PREROUTING -p tcp -j ACCEPT\n-A PREROUTING -j Q\n-A Q -j MASQUERADE\nCOMMIT\n");
    refused(
        "*nat\n:Q - [0:0]\n:R - [0:0]\n-A PREROUTING -j R\n-A R -g Q\n-A Q -j MASQUERADE\nCOMMIT\n",
    );
    refused("*nat\n:Q - [0:0]\n-A PREROUTING -j Q\n-A Q -j MASQUERADE\nCOMMIT\n");
    refused("*nat\n:Q - [0:0]\n-A POSTROUTING -j Q\n-A Q -p tcp -j DNAT --to-destination 1.1.1.1:80\nCOMMIT\n");
    refused("*mangle\n-A INPUT -j REJECT\nCOMMIT\n");
    refused("*filter\n-A X -j DNAT --to-destination 1.1.1.1\nCOMMIT\n");
    refused("*nat\n-A PREROUTING -j DROP\nCOMMIT\n");
    refused("*nat\n-A PREROUTING -j DNAT --to-destination 10.1.0.1:80\nCOMMIT\n");
    refused("*filter\n-A INPUT -m addrtype --dst-type LOCAL --limit-iface-out\nCOMMIT\n");
}

#[test]
fn unreachable_chains_are_not_hook_checked() {
    // The kernel accepts loops and NAT targets in chains nothing reaches.
    let mut rs = Ruleset::new(Family::Ipv4, Variant::Nft);
    rs.restore(
        "*filter\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\nCOMMIT\n*nat\n:M - [0:0]\n-A M -j MASQUERADE\nCOMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
    assert_eq!(rs.rule_count(), 3);
}

#[test]
fn variant_differences() {
    // Legacy x_tables treats rules after an unconditional ACCEPT/DROP/RETURN
    // as unreachable, so it does not check them; nf_tables does.
    for payload in [
        "*filter\n-F Y\n-A INPUT -j X\n-A Y -j X\nCOMMIT\n",
        "*nat\n:Q - [0:0]\n-A PREROUTING -j ACCEPT\n-A PREROUTING -j Q\n-A Q -j MASQUERADE\nCOMMIT\n",
        "*nat\n:Q - [0:0]\n:R - [0:0]\n-A PREROUTING -j R\n-A R -j RETURN\n-A R -j Q\n-A Q -j MASQUERADE\nCOMMIT\n",
    ] {
        assert!(base(Variant::Legacy).restore(payload, RestoreMode::NoFlush).is_ok(), "{payload}");
        assert!(base(Variant::Nft).restore(payload, RestoreMode::NoFlush).is_err(), "{payload}");
    }
    // Legacy refuses a policy on a user chain; nft ignores it.
    let mut nft = base(Variant::Nft);
    nft.restore("*filter\n:Q DROP [0:0]\nCOMMIT\n", RestoreMode::NoFlush)
        .unwrap();
    assert!(nft.chain(TableId::Filter, "Q").is_some());
    let mut legacy = base(Variant::Legacy);
    let e = legacy
        .restore("*filter\n:Q DROP [0:0]\nCOMMIT\n", RestoreMode::NoFlush)
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::PolicyOnUserChain { .. }));
    // nft refuses a negated /0; legacy keeps it.
    let neg_any = "*filter\n-A X ! -d 0.0.0.0/0\nCOMMIT\n";
    assert!(base(Variant::Nft)
        .restore(neg_any, RestoreMode::NoFlush)
        .is_err());
    let mut legacy = base(Variant::Legacy);
    legacy.restore(neg_any, RestoreMode::NoFlush).unwrap();
    assert!(legacy.save().contains("-A X ! -d 0.0.0.0/0\n"));
}

#[test]
fn noflush_semantics_through_the_query_api() {
    let mut rs = base(Variant::Nft);
    rs.restore(
        "*filter\n:Y - [0:0]\n:INPUT DROP [0:0]\n:NEW - [0:0]\n-A NEW -j X\nCOMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
    let filter = rs.table(TableId::Filter).unwrap();
    // :Y flushed Y; :INPUT set the policy and kept its rules; X untouched.
    assert!(filter.chain("Y").unwrap().is_empty());
    let input = filter.chain("INPUT").unwrap();
    assert_eq!((input.policy(), input.len()), (Some(Policy::Drop), 2));
    assert_eq!(
        filter.chain("X").unwrap().rules()[0].target,
        Some(Target::Jump("Y".into()))
    );
    assert_eq!(filter.references("X"), 1);
    assert_eq!(filter.references("Y"), 1);
    let names: Vec<&str> = filter.chains().map(|c| c.name()).collect();
    assert_eq!(names, ["INPUT", "FORWARD", "OUTPUT", "NEW", "X", "Y"]);
    assert!(rs.table(TableId::Nat).is_none(), "nat was never touched");
    // Flush mode replaces the table (nft: policies back to ACCEPT).
    rs.restore("*filter\n:Z - [0:0]\nCOMMIT\n", RestoreMode::Flush)
        .unwrap();
    let filter = rs.table(TableId::Filter).unwrap();
    assert_eq!(filter.user_chains().count(), 1);
    assert_eq!(
        filter.chain("INPUT").unwrap().policy(),
        Some(Policy::Accept)
    );
}

#[test]
fn rules_are_typed_for_an_evaluator() {
    let mut rs = Ruleset::new(Family::Ipv4, Variant::Nft);
    rs.restore(
        "*nat\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-A - [0:0]\n\
         -A KUBE-SVC-A -m comment --comment \"ns/a:http -> 10.1.0.1:80\" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-A\n\
         -A KUBE-SEP-A -m comment --comment ns/a:http -m tcp -p tcp -d 10.96.0.0/12 --dport 80:90 -j DNAT --to-destination 10.1.0.1:8080\n\
         COMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
    let svc = rs.chain(TableId::Nat, "KUBE-SVC-A").unwrap();
    let r = &svc.rules()[0];
    assert_eq!(r.comment(), Some("ns/a:http -> 10.1.0.1:80"));
    let Match::Statistic(s) = &r.matches[1] else {
        panic!("statistic")
    };
    assert_eq!(
        s.mode,
        StatisticMode::Random {
            threshold: 715827883
        }
    );
    assert!((s.probability().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    let sep = &rs.chain(TableId::Nat, "KUBE-SEP-A").unwrap().rules()[0];
    let dst = sep.destination.unwrap();
    assert!(dst.value.contains("10.100.1.1".parse::<IpAddr>().unwrap()));
    assert!(!dst.value.contains("10.112.0.1".parse::<IpAddr>().unwrap()));
    let Match::Tcp(tcp) = &sep.matches[1] else {
        panic!("tcp")
    };
    assert_eq!(tcp.ports.dport.unwrap().value, PortRange { lo: 80, hi: 90 });
    let Some(Target::Dnat(nat)) = &sep.target else {
        panic!("dnat")
    };
    assert_eq!(nat.ports, Some(PortRange::single(8080)));
    assert_eq!(rs.rule_count(), 2);
}

struct Objects;
impl KernelObjects for Objects {
    fn ipset_family(&self, name: &str) -> Option<Family> {
        match name {
            "KUBE-CLUSTER-IP" => Some(Family::Ipv4),
            "KUBE-6" => Some(Family::Ipv6),
            _ => None,
        }
    }
    fn nfacct_exists(&self, name: &str) -> bool {
        name == "pkts"
    }
}

#[test]
fn kernel_objects_are_checked_when_given() {
    let opts = RestoreOptions {
        mode: RestoreMode::NoFlush,
        counters: false,
        objects: Some(&Objects),
    };
    let mut rs = base(Variant::Nft);
    let ok = "*filter\n-A X -m set --match-set KUBE-CLUSTER-IP dst,dst -m nfacct --nfacct-name pkts\nCOMMIT\n";
    rs.restore_with(ok, &opts).unwrap();
    for bad in [
        "*filter\n-A X -m set --match-set NOPE dst\nCOMMIT\n",
        "*filter\n-A X -m set --match-set KUBE-6 dst\nCOMMIT\n",
        "*filter\n-A X -m nfacct --nfacct-name nope\nCOMMIT\n",
    ] {
        let before = rs.clone();
        assert!(rs.restore_with(bad, &opts).is_err(), "{bad}");
        assert_eq!(rs, before);
    }
    // Without a catalog the names are not checked.
    rs.restore(
        "*filter\n-A X -m set --match-set NOPE dst\nCOMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
}

#[test]
fn counters_are_taken_only_when_asked() {
    let payload = "*filter\n:INPUT ACCEPT [7:700]\n[9:900] -A INPUT -j ACCEPT\n-A INPUT -c 1 2 -j DROP\nCOMMIT\n";
    let mut rs = Ruleset::new(Family::Ipv4, Variant::Nft);
    rs.restore(payload, RestoreMode::Flush).unwrap();
    assert!(rs.save().contains(":INPUT ACCEPT [0:0]\n"));
    let opts = RestoreOptions {
        mode: RestoreMode::Flush,
        counters: true,
        objects: None,
    };
    rs.restore_with(payload, &opts).unwrap();
    let saved = rs.save_with(&sim::netfilter::SaveOptions {
        counters: true,
        table: None,
    });
    // Matches `iptables-restore -c` then `iptables-save -c` on the real tool.
    assert_eq!(
        saved,
        "*filter\n:INPUT ACCEPT [7:700]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n[9:900] -A INPUT -j ACCEPT\n[1:2] -A INPUT -j DROP\nCOMMIT\n"
    );
    assert!(rs.count_rule(TableId::Filter, "INPUT", 1, 60));
    assert_eq!(
        rs.chain(TableId::Filter, "INPUT")
            .unwrap()
            .rule_counters(1)
            .unwrap()
            .bytes,
        62
    );
}

/// Never panic on input: every fixture line cut at every character, in every
/// table, either restores or is refused with an error.
#[test]
fn truncated_lines_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iptables-save");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "restore" || x == "save"))
        .collect();
    names.sort();
    let mut tried = 0;
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let cuts = line.char_indices().map(|(i, _)| i).chain([line.len()]);
            for cut in cuts {
                for table in ["filter", "nat"] {
                    let payload = format!("*{table}\n:X - [0:0]\n{}\nCOMMIT\n", &line[..cut]);
                    let mut rs = Ruleset::new(Family::Ipv4, Variant::Nft);
                    let _ = rs.restore(&payload, RestoreMode::NoFlush);
                    tried += 1;
                }
            }
        }
    }
    assert!(tried > 10_000, "only {tried} payloads tried");
}

#[test]
fn single_rules_parse_and_print_like_iptables_save() {
    use sim::netfilter::Rule;
    let rule = Rule::parse(
        "-m comment --comment \"ns/svc:p cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        TableId::Nat,
        Family::Ipv4,
        Variant::Nft,
    )
    .unwrap();
    assert_eq!(
        rule.to_save_args(Family::Ipv4),
        " ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment \"ns/svc:p cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ"
    );
    assert_eq!(rule.jump_chain(), Some("KUBE-MARK-MASQ"));
    // Two spellings of one kernel rule are equal.
    let a = Rule::parse(
        "-d 10.0.0.1 -j MARK --or-mark 0x4000",
        TableId::Nat,
        Family::Ipv4,
        Variant::Nft,
    )
    .unwrap();
    let b = Rule::parse(
        "--destination 10.0.0.1/32 -j MARK --set-xmark 0x4000/0x4000",
        TableId::Nat,
        Family::Ipv4,
        Variant::Nft,
    )
    .unwrap();
    assert_eq!(a, b);
    // Table restrictions apply: MASQUERADE outside nat is refused.
    assert!(Rule::parse("-j MASQUERADE", TableId::Filter, Family::Ipv4, Variant::Nft).is_err());
}
