//! ipsets: restore, test, refusals, and `ipset list`/`ipset save` output.
//! The expected listings are what ipset v7.17 printed on Linux 6.18 for
//! the same commands, minus `Size in memory` and `initval` (memory layout
//! and a random seed) and with members sorted (the kernel prints hash
//! order).

use sim::node::IpSets;

const COMMANDS: &str = "\
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 10.96.0.1,tcp:443
add KUBE-CLUSTER-IP 10.96.0.10,udp:53
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536
add KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 30080
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536
add KUBE-LOAD-BALANCER-SOURCE-CIDR 1.2.3.4,tcp:80,203.0.113.0/25
create KUBE-X hash:net family inet
add KUBE-X 10.0.0.0/8
add KUBE-X 192.168.1.1
create KUBE-Y hash:ip family inet6
add KUBE-Y fd00::1
";

fn sets() -> IpSets {
    let mut s = IpSets::default();
    s.restore(COMMANDS, false).unwrap();
    s
}

#[test]
fn list_matches_ipset_7_17() {
    let out = sets().list(Some("KUBE-CLUSTER-IP"), &|_| 0);
    assert_eq!(
        out,
        "Name: KUBE-CLUSTER-IP\nType: hash:ip,port\nRevision: 7\nHeader: family inet hashsize 1024 maxelem 65536 bucketsize 12\nReferences: 0\nNumber of entries: 2\nMembers:\n10.96.0.1,tcp:443\n10.96.0.10,udp:53\n"
    );
    let out = sets().list(Some("KUBE-NODE-PORT-TCP"), &|_| 2);
    assert_eq!(
        out,
        "Name: KUBE-NODE-PORT-TCP\nType: bitmap:port\nRevision: 3\nHeader: range 0-65535\nReferences: 2\nNumber of entries: 1\nMembers:\n30080\n"
    );
    let save = sets().save();
    for line in [
        "add KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5",
        "add KUBE-LOAD-BALANCER-SOURCE-CIDR 1.2.3.4,tcp:80,203.0.113.0/25",
        "add KUBE-X 192.168.1.1",
        "add KUBE-X 10.0.0.0/8",
        "create KUBE-Y hash:ip family inet6 hashsize 1024 maxelem 65536 bucketsize 12",
        "add KUBE-Y fd00::1",
    ] {
        assert!(
            save.lines().any(|l| l == line),
            "missing `{line}` in\n{save}"
        );
    }
}

#[test]
fn test_follows_each_type() {
    let s = sets();
    assert!(
        s.test("KUBE-CLUSTER-IP", "10.96.0.1,443").unwrap(),
        "tcp is the default"
    );
    assert!(!s.test("KUBE-CLUSTER-IP", "10.96.0.1,udp:443").unwrap());
    assert!(s.test("KUBE-X", "10.9.8.7").unwrap(), "hash:net contains");
    assert!(!s.test("KUBE-X", "11.0.0.1").unwrap());
    assert!(s
        .test(
            "KUBE-LOAD-BALANCER-SOURCE-CIDR",
            "1.2.3.4,tcp:80,203.0.113.77"
        )
        .unwrap());
    assert!(!s
        .test(
            "KUBE-LOAD-BALANCER-SOURCE-CIDR",
            "1.2.3.4,tcp:80,203.0.113.200"
        )
        .unwrap());
    assert!(s.test("KUBE-NODE-PORT-TCP", "30080").unwrap());
}

#[test]
fn refusals_leave_the_sets_unchanged() {
    let mut s = sets();
    let before = s.clone();
    for bad in [
        "add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n",
        "add KUBE-Y 10.0.0.1\n",
        "add KUBE-CLUSTER-IP 10.96.0.1\n",
        "add NOPE 1.1.1.1\n",
        "create KUBE-X hash:net family inet\n",
        "create Z hash:mac\n",
        "bogus\n",
    ] {
        let e = s.restore(&format!("add KUBE-X 172.16.0.0/12\n{bad}"), false);
        assert!(e.is_err(), "accepted {bad}");
        assert_eq!(s, before, "{bad}");
    }
    // -exist makes re-adding and re-creating harmless.
    s.restore(
        "create KUBE-X hash:net family inet\nadd KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n",
        true,
    )
    .unwrap();
    assert_eq!(s, before);
    let mut small = IpSets::default();
    small
        .restore(
            "create S hash:ip family inet maxelem 1\nadd S 1.1.1.1\n",
            false,
        )
        .unwrap();
    let e = small.add("S", "1.1.1.2", false).unwrap_err();
    assert!(e.to_string().contains("Hash is full"), "{e}");
}
