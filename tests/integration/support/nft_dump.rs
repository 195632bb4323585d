//! Comparing nftables dumps the way upstream's tests do
//! (`sortNFTablesTransaction` / `diffNFTablesTransaction` in
//! `pkg/proxy/nftables/helpers_test.go`).
//!
//! Both texts are sorted before comparing: blank and `#` lines are dropped,
//! then lines are stably sorted by object type (table, chain, rule, set, map,
//! element), then by object name; rules of one chain keep their order, other
//! lines of one object sort by their whole text.

use std::cmp::Ordering;

fn object_order(kind: &str) -> i32 {
    match kind {
        "table" => 10,
        "chain" => 9,
        "rule" => 8,
        "set" => 7,
        "map" => 6,
        "element" => 5,
        _ => 0,
    }
}

/// Upstream's `less`; a strict weak order for the object types it knows.
fn less(a: &str, b: &str) -> bool {
    let wa: Vec<&str> = a.split(' ').collect();
    let wb: Vec<&str> = b.split(' ').collect();
    if wa.len() < 5 || wb.len() < 5 {
        return false;
    }
    if wa[1] != wb[1] {
        return object_order(wa[1]) >= object_order(wb[1]);
    }
    if wa[4] != wb[4] {
        return wa[4] < wb[4];
    }
    if wa[1] == "rule" {
        return false;
    }
    a < b
}

/// `sortNFTablesTransaction`: the sorted lines joined with `\n` (no final
/// newline).
pub fn sort(tx: &str) -> String {
    let mut lines: Vec<&str> = tx
        .split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_by(|a, b| {
        if less(a, b) {
            Ordering::Less
        } else if less(b, a) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
    lines.join("\n")
}

/// `diffNFTablesTransaction`: `None` when equal after sorting, else both
/// sorted texts.
pub fn diff(expected: &str, result: &str) -> Option<(String, String)> {
    let (e, r) = (sort(expected), sort(result));
    if e == r {
        None
    } else {
        Some((e, r))
    }
}
