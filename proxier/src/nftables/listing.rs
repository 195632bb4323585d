//! Reading back what exists in the `kube-proxy` table from `nft list table`
//! output (what upstream learns with knftables' `List` and `ListElements`).
//!
//! Only the parts the proxier needs are extracted: the names of chains, sets
//! and maps, and the elements of sets and maps as `" . "`-joined key and value
//! text (ports and protocols as `nft` prints them by default: numbers and
//! `tcp`/`udp`/`sctp`). Rule bodies are skipped. Malformed input is an error
//! naming the line; the proxier then behaves as upstream does when a listing
//! fails.

use std::collections::{BTreeMap, BTreeSet};

use super::elements::ListedElements;

/// The objects of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
    pub maps: BTreeSet<String>,
    /// Elements by set or map name.
    pub elements: BTreeMap<String, ListedElements>,
}

/// Counts braces outside double quotes.
fn brace_delta(line: &str) -> i32 {
    let mut quoted = false;
    let mut escaped = false;
    let mut d = 0;
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' if !quoted => d += 1,
            '}' if !quoted => d -= 1,
            _ => {}
        }
    }
    d
}

/// Splits on `sep` outside double quotes.
fn split_unquoted<'a>(text: &'a str, sep: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            quoted = !quoted;
        } else if !quoted && text[i..].starts_with(sep) {
            parts.push(&text[start..i]);
            i += sep.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

/// One element: `KEY [comment "…"] [: VALUE]`.
fn parse_element(text: &str) -> (String, String) {
    let halves = split_unquoted(text, " : ");
    let (key_part, value) = match halves.as_slice() {
        [k, v] => (*k, v.trim().to_string()),
        _ => (text, String::new()),
    };
    let key = match key_part.find(" comment \"") {
        Some(i) => &key_part[..i],
        None => key_part,
    };
    // Drop per-element extras nft may print (`timeout 3h expires 2h`).
    let key = key.split(" timeout ").next().unwrap_or(key);
    (key.trim().to_string(), value)
}

/// Parses `nft list table FAMILY NAME` output.
pub fn parse(text: &str) -> Result<Listing, String> {
    let mut out = Listing::default();
    let mut depth = 0i32;
    // The set or map whose body we are in.
    let mut container: Option<String> = None;
    // Element text being collected, and its brace depth.
    let mut collecting: Option<(String, i32)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some((buf, d)) = collecting.as_mut() {
            buf.push(' ');
            buf.push_str(line);
            *d += brace_delta(line);
            if *d <= 0 {
                let (buf, _) = collecting.take().expect("collecting");
                finish_elements(&mut out, container.as_deref(), &buf);
            }
            continue;
        }
        if depth == 0 {
            if line.is_empty() {
                continue;
            }
            if !line.starts_with("table ") {
                return Err(format!("line {}: expected a table, found {line:?}", i + 1));
            }
        } else if depth == 1 {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("chain"), Some(name)) => {
                    out.chains.insert(name.to_string());
                }
                (Some("set"), Some(name)) => {
                    out.sets.insert(name.to_string());
                    out.elements.entry(name.to_string()).or_default();
                    container = Some(name.to_string());
                }
                (Some("map"), Some(name)) => {
                    out.maps.insert(name.to_string());
                    out.elements.entry(name.to_string()).or_default();
                    container = Some(name.to_string());
                }
                _ => {}
            }
        } else if depth == 2 && container.is_some() {
            if let Some(rest) = line.strip_prefix("elements = ") {
                let d = brace_delta(rest);
                if d <= 0 {
                    finish_elements(&mut out, container.as_deref(), rest);
                } else {
                    collecting = Some((rest.to_string(), d));
                }
                continue;
            }
        }
        depth += brace_delta(line);
        if depth < 0 {
            return Err(format!("line {}: unbalanced '}}'", i + 1));
        }
        if depth <= 1 {
            container = None;
        }
    }
    if depth != 0 || collecting.is_some() {
        return Err("unterminated table".to_string());
    }
    Ok(out)
}

fn finish_elements(out: &mut Listing, container: Option<&str>, text: &str) {
    let inner = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let Some(name) = container else { return };
    let list = out.elements.entry(name.to_string()).or_default();
    for part in split_unquoted(inner, ",") {
        let part = part.split_whitespace().collect::<Vec<_>>().join(" ");
        if !part.is_empty() {
            list.push(parse_element(&part));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nft_list_output() {
        let text = "table ip kube-proxy {\n\
\tcomment \"rules for kube-proxy\"\n\
\tset cluster-ips {\n\
\t\ttype ipv4_addr\n\
\t\tcomment \"Active ClusterIPs\"\n\
\t\telements = { 172.30.0.41, 172.30.0.42 }\n\
\t}\n\
\n\
\tmap no-endpoint-services {\n\
\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\
\t\telements = { 172.30.0.46 . tcp . 80 comment \"ns6/svc6:p80, {x}\" : goto reject-chain,\n\
\t\t\t     1.2.3.4 . udp . 53 : drop }\n\
\t}\n\
\n\
\tmap empty {\n\
\t\ttype inet_proto . inet_service : verdict\n\
\t}\n\
\n\
\tchain service-ULMVA6XW-ns1/svc1/tcp/p80 {\n\
\t\tnumgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }\n\
\t}\n\
\tchain filter-input {\n\
\t\ttype filter hook input priority filter; policy accept;\n\
\t\tct state new jump nodeport-endpoints-check\n\
\t}\n\
}\n";
        let l = parse(text).unwrap();
        assert_eq!(
            l.chains.iter().collect::<Vec<_>>(),
            ["filter-input", "service-ULMVA6XW-ns1/svc1/tcp/p80"]
        );
        assert!(l.sets.contains("cluster-ips"));
        assert_eq!(
            l.elements["cluster-ips"],
            [
                ("172.30.0.41".to_string(), String::new()),
                ("172.30.0.42".to_string(), String::new())
            ]
        );
        assert_eq!(
            l.elements["no-endpoint-services"],
            [
                (
                    "172.30.0.46 . tcp . 80".to_string(),
                    "goto reject-chain".to_string()
                ),
                ("1.2.3.4 . udp . 53".to_string(), "drop".to_string())
            ]
        );
        assert!(l.elements["empty"].is_empty());
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(parse("chain x {\n}\n").is_err());
        assert!(parse("table ip t {\n").is_err());
    }
}
