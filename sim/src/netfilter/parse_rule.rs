//! The rule grammar: turning the arguments of `-A/-I/-D/-R CHAIN ...` into a
//! [`Rule`].
//!
//! Models: iptables' command-line rule parsing — generic options (`-s -d -p
//! -i -o`, long forms too, `--opt=value`), `!` before the option it negates,
//! `-m` loading a match whose options follow it, options claimed by the
//! earliest loaded module that knows them (its latest instance), the implicit
//! protocol match (`-p tcp --dport 80` loads `-m tcp`), `-j`/`-g` with target
//! options, and `-c PKTS BYTES`.
//!
//! Must never: skip a token. Every argument is consumed by an option or is
//! an error. Unlike getopt, abbreviated long options (`--dp`) are refused;
//! the `!` after an option (`-s ! x`), which iptables 1.8.9 also refuses, is
//! refused with a hint.
//!
//! Error contract: [`ErrorKind`] naming the offending token.

use super::addr::{Cidr, Family, Interface, Negatable};
use super::error::ErrorKind;
use super::ext_common::Opt;
use super::ext_match::{finalize as finalize_match, Ctx, MatchKind};
use super::ext_target::{finalize as finalize_target, TargetKind};
use super::l4::Protocol;
use super::quoting::Token;
use super::rule::Rule;
use super::ruleset::{Counters, TableId};
use super::targets::Target;

/// A parsed rule and the counters given with `-c`, if any.
#[derive(Debug, Clone)]
pub(crate) struct ParsedRule {
    pub rule: Rule,
    pub counters: Option<Counters>,
}

struct Loaded {
    kind: MatchKind,
    opts: Vec<Opt>,
}

/// Parse rule arguments for a rule in `table`.
pub(crate) fn parse_rule(
    tokens: &[Token],
    table: TableId,
    family: Family,
) -> Result<ParsedRule, ErrorKind> {
    let mut rule = Rule::default();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut counters = None;
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut target: Option<(TargetKind, Vec<Opt>, bool)> = None;
    let mut negate: Option<&str> = None;
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        i += 1;
        if tok.text == "!" && !tok.quoted {
            if negate.is_some() {
                return Err(ErrorKind::conflict("!", "multiple `!` flags"));
            }
            negate = Some("!");
            continue;
        }
        let (name, inline) = match tok.text.split_once('=') {
            Some((n, v)) if tok.text.starts_with("--") => (n, Some(v.to_string())),
            _ => (tok.text.as_str(), None),
        };
        if !name.starts_with('-') || name == "-" {
            return Err(ErrorKind::Unexpected {
                token: tok.text.clone(),
                reason: "bad argument",
                hint: "every value must follow its option; quote values with spaces",
            });
        }
        let negated = negate.take().is_some();
        let value = |i: &mut usize| -> Result<String, ErrorKind> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = tokens.get(*i).ok_or_else(|| ErrorKind::MissingValue {
                token: name.to_string(),
            })?;
            *i += 1;
            if v.text == "!" && !v.quoted {
                return Err(ErrorKind::conflict(
                    "!",
                    format!("`{name} ! value` is not accepted by iptables 1.8.9; hint: write `! {name} value`"),
                ));
            }
            Ok(v.text.clone())
        };
        match name {
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let src = matches!(name, "-s" | "--source" | "--src");
                let flag = if src { "-s" } else { "-d" };
                let slot = if src {
                    &mut rule.source
                } else {
                    &mut rule.destination
                };
                once(&mut seen, flag)?;
                let v = value(&mut i)?;
                if v.contains(',') {
                    return Err(ErrorKind::bad_value(
                        flag,
                        &v,
                        "address lists are not supported; hint: write one rule per address",
                    ));
                }
                let cidr = Cidr::parse(flag, &v, family)?;
                // The kernel stores 0/0 as "no address"; iptables-save omits it.
                if cidr.prefix() != 0 || negated {
                    *slot = Some(Negatable::new(cidr, negated));
                }
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let input = matches!(name, "-i" | "--in-interface");
                let flag = if input { "-i" } else { "-o" };
                let slot = if input {
                    &mut rule.in_interface
                } else {
                    &mut rule.out_interface
                };
                once(&mut seen, flag)?;
                let v = value(&mut i)?;
                let iface = Interface::parse(flag, &v)?;
                if v != "+" || negated {
                    *slot = Some(Negatable::new(iface, negated));
                }
            }
            "-p" | "--protocol" => {
                once(&mut seen, "-p")?;
                let v = value(&mut i)?;
                match Protocol::parse(&v)? {
                    Some(p) => rule.protocol = Some(Negatable::new(p, negated)),
                    None if negated => {
                        return Err(ErrorKind::refused(
                            "all",
                            "`! -p all` matches nothing; hint: drop the rule",
                        ))
                    }
                    None => {}
                }
            }
            "-m" | "--match" => {
                if negated {
                    return Err(ErrorKind::conflict("-m", "unexpected `!` before -m"));
                }
                let v = value(&mut i)?;
                let kind = MatchKind::from_name(&v).ok_or(ErrorKind::UnknownMatch { token: v })?;
                loaded.push(Loaded {
                    kind,
                    opts: Vec::new(),
                });
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let goto = matches!(name, "-g" | "--goto");
                if negated {
                    return Err(ErrorKind::conflict(name, "cannot have `!` before -j/-g"));
                }
                if target.is_some() {
                    return Err(ErrorKind::conflict(name, "multiple -j/-g flags"));
                }
                let v = value(&mut i)?;
                let kind = TargetKind::from_name(&v)?;
                if goto && !matches!(kind, TargetKind::Chain(_)) {
                    return Err(ErrorKind::bad_value("-g", &v, "goto needs a user chain"));
                }
                target = Some((kind, Vec::new(), goto));
            }
            "-c" | "--set-counters" => {
                if negated {
                    return Err(ErrorKind::conflict("-c", "cannot be negated"));
                }
                once(&mut seen, "-c")?;
                let p = value(&mut i)?;
                let b = tokens
                    .get(i)
                    .map(|t| t.text.clone())
                    .ok_or(ErrorKind::MissingValue {
                        token: "-c".to_string(),
                    })?;
                i += 1;
                counters = Some(Counters::parse_pair("-c", &p, &b)?);
            }
            "-t" | "--table" => {
                return Err(ErrorKind::Unexpected {
                    token: name.to_string(),
                    reason: "-t cannot be used in iptables-restore",
                    hint: "put the rule in a `*table` block instead",
                })
            }
            "-f" | "--fragment" => {
                return Err(ErrorKind::UnknownOption {
                    token: name.to_string(),
                    hint: "fragment matching is not supported by this model",
                })
            }
            _ => {
                let opt_name = name.to_string();
                let slot = claim(
                    &mut loaded,
                    target.as_mut(),
                    rule.protocol.as_ref(),
                    &opt_name,
                )?;
                let (spec, opts) = slot;
                if negated && !spec.negatable {
                    return Err(ErrorKind::conflict(
                        &opt_name,
                        "this option cannot be negated",
                    ));
                }
                if opts.iter().any(|o| std::ptr::eq(o.spec, spec)) {
                    return Err(ErrorKind::conflict(
                        &opt_name,
                        "option can only be used once",
                    ));
                }
                let mut values = Vec::new();
                for k in 0..spec.arity {
                    if k == 0 {
                        values.push(value(&mut i)?);
                    } else {
                        let v = tokens.get(i).ok_or_else(|| ErrorKind::MissingValue {
                            token: opt_name.clone(),
                        })?;
                        i += 1;
                        values.push(v.text.clone());
                    }
                }
                if spec.arity == 0 && inline.is_some() {
                    return Err(ErrorKind::bad_value(
                        &opt_name,
                        tok.text.as_str(),
                        "this option takes no value",
                    ));
                }
                opts.push(Opt {
                    spec,
                    negated,
                    values,
                });
            }
        }
    }
    if negate.is_some() {
        return Err(ErrorKind::conflict(
            "!",
            "`!` at the end of the rule negates nothing",
        ));
    }
    let ctx = Ctx {
        family,
        protocol: rule.protocol,
    };
    for l in &loaded {
        rule.matches.push(finalize_match(l.kind, &l.opts, &ctx)?);
    }
    if let Some((kind, opts, goto)) = target {
        let t = match kind {
            TargetKind::Chain(c) if goto => Target::Goto(c),
            kind => finalize_target(kind, &opts, family, rule.protocol.as_ref())?,
        };
        if let Err(hint) = t.table_allowed(table) {
            return Err(ErrorKind::WrongTable {
                token: t.name().to_string(),
                table: table.name(),
                hint,
            });
        }
        rule.target = Some(t);
    }
    Ok(ParsedRule { rule, counters })
}

fn once(seen: &mut Vec<&'static str>, flag: &'static str) -> Result<(), ErrorKind> {
    if seen.contains(&flag) {
        return Err(ErrorKind::conflict(flag, format!("multiple {flag} flags")));
    }
    seen.push(flag);
    Ok(())
}

type Claimed<'a> = (&'static super::ext_common::OptSpec, &'a mut Vec<Opt>);

/// Find the module that takes option `name`: the target first, then the
/// earliest-loaded match kind that knows it (its latest instance), then the
/// protocol's implicit match.
fn claim<'a>(
    loaded: &'a mut Vec<Loaded>,
    target: Option<&'a mut (TargetKind, Vec<Opt>, bool)>,
    protocol: Option<&Negatable<Protocol>>,
    name: &str,
) -> Result<Claimed<'a>, ErrorKind> {
    if let Some((kind, opts, _)) = target {
        if let Some(spec) = kind.option(name) {
            return Ok((spec, opts));
        }
    }
    let kind = loaded
        .iter()
        .map(|l| l.kind)
        .find(|k| k.option(name).is_some())
        .or_else(|| {
            let k = MatchKind::for_protocol(protocol?.value)?;
            let fresh = !loaded.iter().any(|l| l.kind == k);
            (fresh && k.option(name).is_some()).then(|| {
                loaded.push(Loaded {
                    kind: k,
                    opts: Vec::new(),
                });
                k
            })
        });
    let Some(kind) = kind else {
        let hint = if matches!(
            name,
            "--dport" | "--sport" | "--destination-port" | "--source-port"
        ) {
            "port options need `-p tcp`, `-p udp` or `-p sctp` before them"
        } else {
            "no loaded module takes this option; options follow their `-m NAME` or `-j TARGET` (abbreviations are not accepted)"
        };
        return Err(ErrorKind::UnknownOption {
            token: name.to_string(),
            hint,
        });
    };
    let spec = kind.option(name).ok_or_else(|| ErrorKind::UnknownOption {
        token: name.to_string(),
        hint: "internal: module lost its option",
    })?;
    let last = loaded
        .iter_mut()
        .rev()
        .find(|l| l.kind == kind)
        .ok_or_else(|| ErrorKind::UnknownOption {
            token: name.to_string(),
            hint: "internal: module not loaded",
        })?;
    Ok((spec, &mut last.opts))
}
