//! Tracing a packet through the fake's nftables state the way upstream's
//! test tracer does (`nftablesTracer` / `tracePacket` in
//! `pkg/proxy/nftables/helpers_test.go`).
//!
//! It recognises only the rule shapes kube-proxy writes (address, port and
//! set/map matches, `fib … type local`, jumps, verdicts, `dnat`, `numgen`
//! verdict maps), follows *every* endpoint of a `numgen` map so that a flow's
//! output lists all possible backends, and treats `jump mark-for-masquerade`
//! as "this packet is masqueraded". The packet goes through
//! `filter-prerouting-pre-dnat`, then `nat-prerouting`, then (with the DNAT
//! destination) `filter-forward` and `filter-input`. A rule it cannot read is
//! reported as an error, never skipped silently.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::nft_fake::Table;

pub struct Trace {
    pub matches: Vec<String>,
    pub output: String,
    pub masq: bool,
    pub errors: Vec<String>,
}

struct Tracer<'a> {
    table: &'a Table,
    node_ips: BTreeSet<String>,
    matches: Vec<String>,
    outputs: Vec<String>,
    masq: bool,
    errors: Vec<String>,
}

/// `ip daddr ` / `ip6 daddr ` (upstream's `ip6*`).
fn strip_family<'r>(rule: &'r str, field: &str) -> Option<&'r str> {
    for fam in ["ip ", "ip6 "] {
        if let Some(rest) = rule.strip_prefix(fam).and_then(|r| r.strip_prefix(field)) {
            return Some(rest);
        }
    }
    None
}

fn first_word(s: &str) -> (&str, &str) {
    s.split_once(' ').unwrap_or((s, ""))
}

impl Tracer<'_> {
    fn address_matches(&mut self, ip: &str, want: bool, rule_addr: &str) -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            self.errors.push(format!("bad IP in test case: {ip}"));
            return false;
        };
        let m = if rule_addr.contains('/') {
            match rule_addr.parse::<IpNet>() {
                Ok(net) => net.contains(&ip),
                Err(_) => {
                    self.errors
                        .push(format!("bad CIDR in kube-proxy output: {rule_addr}"));
                    false
                }
            }
        } else {
            match rule_addr.parse::<IpAddr>() {
                Ok(other) => other == ip,
                Err(_) => {
                    self.errors
                        .push(format!("bad IP in kube-proxy output: {rule_addr}"));
                    false
                }
            }
        };
        m == want
    }

    /// `{ a , b }` with `!=` means "matches none"; without, "matches all"
    /// (upstream's `addressMatchesSet`).
    fn address_matches_set(&mut self, ip: &str, want: bool, set: &str) -> bool {
        let set = set.replace(' ', "");
        for addr in set.split(',') {
            if self.address_matches(ip, true, addr) != want {
                return false;
            }
        }
        true
    }

    fn set_has(&self, set: &str, key: &str) -> bool {
        self.table
            .sets
            .get(set)
            .is_some_and(|s| s.elements.iter().any(|e| e.key == key))
    }

    fn map_value(&self, map: &str, key: &str) -> Option<String> {
        self.table
            .maps
            .get(map)?
            .elements
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    }

    /// Runs a chain; returns whether a terminal verdict was reached.
    fn run_chain(&mut self, chain: &str, src: &str, proto: &str, dst: &str, dport: &str) -> bool {
        let Some(ch) = self.table.chains.get(chain) else {
            self.errors.push(format!("unknown chain {chain:?}"));
            return true;
        };
        for full_rule in ch.rules.clone() {
            let mut body = match full_rule.find(" comment \"") {
                Some(i) => full_rule[..i].to_string(),
                None => full_rule.clone(),
            };
            if let Some(rest) = body.strip_prefix("ct state new") {
                body = rest.to_string();
            }
            let mut rule: String = body;
            loop {
                let r = rule.trim_start().to_string();
                if r.is_empty() {
                    break;
                }
                if let Some(rest) = strip_family(&r, "daddr @") {
                    let (set, rest) = first_word(rest);
                    if !self.set_has(set, dst) {
                        break;
                    }
                    rule = rest.to_string();
                } else if let Some(map) = strip_family(&r, "daddr . meta l4proto . th dport vmap @")
                {
                    match self.map_value(map, &format!("{dst} . {proto} . {dport}")) {
                        Some(v) => rule = v,
                        None => break,
                    }
                } else if let Some(map) = r.strip_prefix("meta l4proto . th dport vmap @") {
                    match self.map_value(map, &format!("{proto} . {dport}")) {
                        Some(v) => rule = v,
                        None => break,
                    }
                } else if let Some(rest) = strip_family(&r, "daddr ") {
                    let (neg, rest) = match rest.strip_prefix("!= ") {
                        Some(x) => (true, x),
                        None => (false, rest),
                    };
                    if let Some(inner) = rest.strip_prefix('{') {
                        let (set, after) = inner.split_once('}').unwrap_or((inner, ""));
                        if !self.address_matches_set(dst, !neg, set) {
                            break;
                        }
                        rule = after.to_string();
                    } else {
                        let (addr, after) = first_word(rest);
                        if !self.address_matches(dst, !neg, addr) {
                            break;
                        }
                        rule = after.to_string();
                    }
                } else if let Some(rest) = r.strip_prefix("fib daddr type local") {
                    if !self.node_ips.contains(dst) {
                        break;
                    }
                    rule = rest.to_string();
                } else if let Some((p, rest)) = ["tcp", "udp", "sctp"]
                    .iter()
                    .find_map(|p| r.strip_prefix(&format!("{p} dport ")).map(|x| (*p, x)))
                {
                    let (port, after) = first_word(rest);
                    if p != proto || port != dport {
                        break;
                    }
                    rule = after.to_string();
                } else if let Some(rest) = strip_family(&r, "saddr ") {
                    let (neg, rest) = match rest.strip_prefix("!= ") {
                        Some(x) => (true, x),
                        None => (false, rest),
                    };
                    if let Some(inner) = rest.strip_prefix('{') {
                        let (set, after) = inner.split_once('}').unwrap_or((inner, ""));
                        if !self.address_matches_set(src, !neg, set) {
                            break;
                        }
                        rule = after.to_string();
                    } else if rest.starts_with('@') {
                        // Affinity sets start empty: no recent client.
                        break;
                    } else {
                        let (addr, after) = first_word(rest);
                        if !self.address_matches(src, !neg, addr) {
                            break;
                        }
                        rule = after.to_string();
                    }
                } else if let Some(rest) = r.strip_prefix("fib saddr type local") {
                    if !self.node_ips.contains(src) {
                        break;
                    }
                    rule = rest.to_string();
                } else if r == "jump mark-for-masquerade" {
                    self.matches.push(full_rule.clone());
                    self.masq = true;
                    break;
                } else if let Some(target) = r
                    .strip_prefix("jump ")
                    .map(|t| (false, t))
                    .or(r.strip_prefix("goto ").map(|t| (true, t)))
                    .filter(|(_, t)| !t.contains(' '))
                {
                    let (is_goto, dest) = target;
                    self.matches.push(full_rule.clone());
                    if self.run_chain(dest, src, proto, dst, dport) {
                        return true;
                    }
                    if is_goto {
                        return false;
                    }
                    break;
                } else if r == "drop" || r == "reject" {
                    self.matches.push(full_rule.clone());
                    self.outputs.push(r.to_uppercase());
                    return true;
                } else if r == "return" {
                    self.matches.push(full_rule.clone());
                    return false;
                } else if let Some(ep) = ["tcp", "udp", "sctp"].iter().find_map(|p| {
                    r.strip_prefix(&format!("meta l4proto {p} dnat to "))
                        .filter(|e| !e.contains(' '))
                }) {
                    self.matches.push(full_rule.clone());
                    self.outputs.push(ep.to_string());
                    return true;
                } else if r.starts_with("numgen random mod ") && r.contains(" vmap {") {
                    let inner = &r[r.find('{').unwrap_or(0) + 1..r.rfind('}').unwrap_or(r.len())];
                    for entry in inner.split(',') {
                        if let Some((_, dest)) = entry.trim().split_once(" : goto ") {
                            self.matches.push(full_rule.clone());
                            let _ = self.run_chain(dest.trim(), src, proto, dst, dport);
                        }
                    }
                    return true;
                } else if r.starts_with("update @") {
                    break;
                } else {
                    self.errors.push(format!("unmatched rule: {full_rule}"));
                    break;
                }
            }
        }
        false
    }
}

/// Go's `net.SplitHostPort` host part.
fn host_of(endpoint: &str) -> String {
    if let Some(rest) = endpoint.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    endpoint
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(endpoint)
        .to_string()
}

/// Upstream's `tracePacket`.
pub fn trace_packet(
    table: &Table,
    src: &str,
    proto: &str,
    dst: &str,
    dport: &str,
    node_ips: &[String],
) -> Trace {
    let mut t = Tracer {
        table,
        node_ips: node_ips.iter().cloned().collect(),
        matches: Vec::new(),
        outputs: Vec::new(),
        masq: false,
        errors: Vec::new(),
    };
    let mut dst = dst.to_string();
    let done = t.run_chain("filter-prerouting-pre-dnat", src, proto, &dst, dport);
    if !done {
        t.run_chain("nat-prerouting", src, proto, &dst, dport);
        if let Some(first) = t.outputs.first() {
            dst = host_of(first);
        }
        if !t.run_chain("filter-forward", src, proto, &dst, dport) {
            t.run_chain("filter-input", src, proto, &dst, dport);
        }
    }
    Trace {
        matches: t.matches,
        output: t.outputs.join(", "),
        masq: t.masq,
        errors: t.errors,
    }
}
