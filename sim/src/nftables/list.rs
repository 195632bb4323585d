//! The printer: what `nft list …` prints, byte for byte as nftables 1.0.6.
//!
//! Models: `list ruleset`, `list table`, `list chain`, `list set`,
//! `list map`, `list chains`, `list sets`, `list maps`, `list tables`, with
//! `-a` handles ([`ListOptions::handles`]). Layout: tabs for indentation;
//! tables in creation order; in a table, the comment, then sets and maps,
//! then chains, each in creation order and separated by blank lines; set
//! declarations as `type`, `size`, `flags` (shown when `constant`,
//! `dynamic` or `interval` is set, or `timeout` is set without a default
//! timeout), `timeout`, `gc-interval`, `auto-merge`, `comment`,
//! `elements`; elements sorted as nft sorts them and wrapped after 2
//! (IPv4 addresses, conntrack flags) or 5 (ports, protocols, marks,
//! integers) per line, one per line otherwise; `counter packets N bytes M`.
//!
//! Expiry, deterministically: an element's `expires` is its expiry minus
//! the `now` passed in, printed in nft's time format. The real tool counts
//! down on the wall clock (`expires 2h59m59s996ms` a few milliseconds after
//! the add); the simulator at the same virtual instant as the add prints
//! the full timeout (`expires 3h`). Tests comparing with captures mask the
//! `expires` values on both sides.
//!
//! Must never: print differently for the same state and `now`.
//!
//! Error contract: [`list`] returns [`ErrorKind::NotFound`] for a missing
//! object and [`ErrorKind::Unexpected`] for a request it cannot parse.

use std::fmt::Write;

use super::chain::Chain;
use super::duration;
use super::error::{ErrorKind, NftError};
use super::lexer::{tokenize, Cursor};
use super::ruleset::Ruleset;
use super::set::Set;
use super::table::Table;
use super::types::Family;
use crate::time::Instant;

/// Options of `nft list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOptions {
    /// `-a`: print object handles as `# handle N`.
    pub handles: bool,
}

fn handle(opts: ListOptions, h: u64) -> String {
    if opts.handles {
        format!(" # handle {h}")
    } else {
        String::new()
    }
}

/// `nft list ruleset`.
pub(crate) fn ruleset(rs: &Ruleset, opts: ListOptions, now: Instant) -> String {
    rs.tables().map(|t| table(t, opts, now)).collect()
}

/// `nft list table …`.
pub(crate) fn table(t: &Table, opts: ListOptions, now: Instant) -> String {
    let mut out = table_open(t, opts);
    let mut delim = "";
    for s in t.sets() {
        out.push_str(delim);
        out.push_str(&set_block(s, opts, now));
        delim = "\n";
    }
    for c in t.chains() {
        out.push_str(delim);
        out.push_str(&chain_block(c, opts, true));
        delim = "\n";
    }
    out.push_str("}\n");
    out
}

fn table_open(t: &Table, opts: ListOptions) -> String {
    let mut out = format!(
        "table {} {} {{{}\n",
        t.family,
        t.name,
        handle(opts, t.handle)
    );
    if let Some(c) = &t.comment {
        let _ = writeln!(out, "\tcomment \"{c}\"");
    }
    out
}

fn table_head(t: &Table) -> String {
    format!("table {} {} {{\n", t.family, t.name)
}

/// A chain block; `rules`: with its rules (else the declaration only).
fn chain_block(c: &Chain, opts: ListOptions, rules: bool) -> String {
    let mut out = format!("\tchain {} {{{}\n", c.name, handle(opts, c.handle));
    if let Some(cm) = &c.comment {
        let _ = writeln!(out, "\t\tcomment \"{cm}\"");
    }
    if let Some(b) = &c.base {
        let _ = writeln!(out, "\t\t{b}");
    }
    if rules {
        for r in &c.rules {
            let _ = writeln!(out, "\t\t{r}{}", handle(opts, r.handle));
        }
    }
    out.push_str("\t}\n");
    out
}

/// A set or map block.
pub(crate) fn set_block(s: &Set, opts: ListOptions, now: Instant) -> String {
    let kind = if s.is_map { "map" } else { "set" };
    let mut out = format!("\t{kind} {} {{{}\n", s.name, handle(opts, s.handle));
    let _ = write!(out, "\t\ttype {}", s.key);
    if let Some(d) = s.data {
        let _ = write!(out, " : {d}");
    }
    out.push('\n');
    if s.size > 0 && !s.flags.interval {
        let _ = writeln!(out, "\t\tsize {}", s.size);
    }
    let f = s.flags;
    if f.constant || f.dynamic || f.interval || (f.timeout && s.timeout.is_none()) {
        let names: Vec<&str> = [
            (f.constant, "constant"),
            (f.dynamic, "dynamic"),
            (f.interval, "interval"),
            (f.timeout, "timeout"),
        ]
        .into_iter()
        .filter_map(|(on, n)| on.then_some(n))
        .collect();
        let _ = writeln!(out, "\t\tflags {}", names.join(","));
    }
    if let Some(t) = s.timeout {
        let _ = writeln!(out, "\t\ttimeout {}", duration::format(t));
    }
    if let Some(t) = s.gc_interval {
        let _ = writeln!(out, "\t\tgc-interval {}", duration::format(t));
    }
    if s.auto_merge {
        out.push_str("\t\tauto-merge\n");
    }
    if let Some(c) = &s.comment {
        let _ = writeln!(out, "\t\tcomment \"{c}\"");
    }
    let elems = s.elements(now);
    if !elems.is_empty() {
        out.push_str("\t\telements = { ");
        let per_line = s.key.elements_per_line();
        let mut count = 0;
        for (i, e) in elems.iter().enumerate() {
            if i > 0 {
                let wrap = match per_line {
                    Some(n) => count >= n,
                    None => true,
                };
                if wrap {
                    out.push_str(",\n\t\t\t     ");
                    count = 0;
                } else {
                    out.push_str(", ");
                }
            }
            count += 1;
            out.push_str(&super::set::key_text(&e.key));
            if let Some(t) = e.timeout {
                let _ = write!(out, " timeout {}", duration::format(t));
            }
            if let Some(at) = e.expires_at {
                let left = at.saturating_since(now).as_millis();
                if left > 0 {
                    let _ = write!(out, " expires {}", duration::format(left as u64));
                }
            }
            if let Some(c) = &e.comment {
                let _ = write!(out, " comment \"{c}\"");
            }
            if let Some(d) = &e.data {
                let _ = write!(out, " : {d}");
            }
        }
        out.push_str(" }\n");
    }
    out.push_str("\t}\n");
    out
}

fn not_found(what: &'static str, name: String) -> ErrorKind {
    ErrorKind::not_found(what, &name, "list only objects that exist")
}

/// Run a `list …` request.
pub(crate) fn list(
    rs: &Ruleset,
    request: &str,
    opts: ListOptions,
    now: Instant,
) -> Result<String, NftError> {
    let toks = tokenize(request)?;
    let toks: Vec<_> = toks.into_iter().filter(|t| !t.ends_command()).collect();
    let mut c = Cursor::new(&toks, 1, request.chars().count() + 1);
    c.eat("list");
    let what = c
        .word("ruleset, tables, table, chain, set, map, chains, sets or maps")?
        .clone();
    let words: Vec<String> = std::iter::from_fn(|| c.next().map(|t| t.text.clone())).collect();
    // An optional family, then names.
    let (family, names) = match words.first().and_then(|w| Family::from_name(w)) {
        Some(f)
            if words.len() > usize::from(what.text != "ruleset" && !what.text.ends_with('s')) =>
        {
            (Some(f), &words[1..])
        }
        _ => (None, &words[..]),
    };
    let fam = family.unwrap_or(Family::Ip);
    let find_table = |name: &str| {
        rs.table(fam, name)
            .ok_or_else(|| what.err(not_found("table", format!("{fam} {name}"))))
    };
    let tables = || rs.tables().filter(|t| family.is_none_or(|f| t.family == f));
    let arg = |i: usize| {
        names
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| what.err(ErrorKind::UnexpectedEnd { expected: "a name" }))
    };
    Ok(match what.text.as_str() {
        "ruleset" => tables().map(|t| table(t, opts, now)).collect(),
        "tables" => tables()
            .map(|t| format!("table {} {}\n", t.family, t.name))
            .collect(),
        "table" => table(find_table(arg(0)?)?, opts, now),
        "chain" => {
            let t = find_table(arg(0)?)?;
            let ch = t.chain(arg(1)?).ok_or_else(|| {
                what.err(not_found("chain", arg(1).unwrap_or_default().to_string()))
            })?;
            format!("{}{}}}\n", table_head(t), chain_block(ch, opts, true))
        }
        "set" | "map" => {
            let t = find_table(arg(0)?)?;
            let s = t
                .set(arg(1)?)
                .filter(|s| s.is_map == (what.text == "map"))
                .ok_or_else(|| {
                    what.err(not_found("set", arg(1).unwrap_or_default().to_string()))
                })?;
            format!("{}{}}}\n", table_head(t), set_block(s, opts, now))
        }
        "chains" => tables()
            .map(|t| {
                let body: String = t.chains().map(|c| chain_block(c, opts, false)).collect();
                format!("{}{body}}}\n", table_head(t))
            })
            .collect(),
        "sets" | "maps" => tables()
            .map(|t| {
                let body: String = t
                    .sets()
                    .filter(|s| s.is_map == (what.text == "maps"))
                    .map(|s| set_block(s, opts, now))
                    .collect();
                format!("{}{body}}}\n", table_head(t))
            })
            .collect(),
        other => {
            return Err(what.err(ErrorKind::unexpected(
                other,
                "ruleset, tables, table, chain, set, map, chains, sets or maps",
            )))
        }
    })
}
