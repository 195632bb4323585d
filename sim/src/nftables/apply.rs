//! Transaction semantics: what each command does to the ruleset, with the
//! kernel's rules for what succeeds.
//!
//! Models (each checked against nft 1.0.6 on Linux 6.x):
//! - `add` of an existing table, chain, set or element is a no-op (comments
//!   and timeouts are not updated; a base chain's policy is); `create` of
//!   one fails (File exists);
//! - `add chain` with another type, hook or priority than the existing base
//!   chain fails (Operation not supported), a base spec for an existing
//!   regular chain fails (File exists); a nat chain cannot use the forward
//!   hook;
//! - `add set` of an existing name needs the same kind, types and flags
//!   (else File exists); sets and maps share one namespace, and `delete set`
//!   deletes a map too;
//! - `add element` of an existing key with another value fails (File
//!   exists); `delete` of anything missing fails (No such file or
//!   directory); `destroy` is `delete` that ignores missing objects;
//! - a chain that rules or map elements jump or go to, and a set that rules
//!   use, cannot be deleted (Device or resource busy); rules and elements
//!   may name only existing chains (never base chains) and sets of the
//!   right type;
//! - a rule's `update @set` gives the set size 65535 when it had none, and
//!   the `dynamic` flag when the set was created in the same transaction;
//! - handles: rules, chains and sets draw from their table's counter
//!   (anonymous sets of a rule first), tables from the namespace's.
//!
//! Commit-time checks follow in [`super::validate`].
//!
//! Must never: leave a half-applied transaction visible — it works on a
//! copy that the caller discards on error.
//!
//! Error contract: the first failing command's [`NftError`], placed at the
//! token that names its object (or the element at fault).

use std::collections::{BTreeMap, BTreeSet};

use super::apply_set::{element_cmd, set_cmd};
use super::chain::{BaseChain, Chain, ChainType, Hook, Policy};
use super::decl::{parse_elements, BaseSpec};
use super::error::{ErrorKind, NftError};
use super::expr::{Match, Rhs};
use super::lexer::Token;
use super::normalize::check_key_type;
use super::rule_parse::ParsedRule;
use super::ruleset::Ruleset;
use super::script::{Command, Object, Position, Verb};
use super::stmt::{MapRef, Rule, Stmt};
use super::table::Table;
use super::types::DataType;
use crate::time::Instant;

/// What the commit-time checks need to know about this transaction.
#[derive(Debug, Default)]
pub(crate) struct TxLog {
    /// Rules added by this transaction: (table handle, rule handle) → place.
    pub added_rules: BTreeMap<(u64, u64), Token>,
    /// Sets created by this transaction: (table handle, set name).
    pub(crate) created_sets: BTreeSet<(u64, String)>,
    /// Tables the transaction changed (by handle): only these are checked.
    pub touched: BTreeSet<u64>,
}

/// Apply `commands` to `rs` in order, then run the commit-time checks.
pub(crate) fn apply(
    rs: &mut Ruleset,
    commands: Vec<Command>,
    now: Instant,
) -> Result<(), NftError> {
    let mut log = TxLog::default();
    for cmd in commands {
        let at = cmd.at.clone();
        run(rs, cmd, now, &mut log).map_err(|e| match e {
            Placed::At(k) => at.err(k),
            Placed::Done(e) => e,
        })?;
    }
    super::validate::validate(rs, &log)
}

/// An error that may still need a place.
pub(crate) enum Placed {
    At(ErrorKind),
    Done(NftError),
}

impl From<ErrorKind> for Placed {
    fn from(k: ErrorKind) -> Self {
        Placed::At(k)
    }
}

impl From<NftError> for Placed {
    fn from(e: NftError) -> Self {
        Placed::Done(e)
    }
}

fn no_table(cmd: &Command) -> ErrorKind {
    ErrorKind::not_found(
        "table",
        &format!("{} {}", cmd.family, cmd.table),
        "add the table first",
    )
}

fn run(rs: &mut Ruleset, cmd: Command, now: Instant, log: &mut TxLog) -> Result<(), Placed> {
    if let Object::Ruleset = cmd.object {
        rs.tables.clear();
        rs.table_names.clear();
        return Ok(());
    }
    if let Object::Table { comment } = &cmd.object {
        return table_cmd(rs, &cmd, comment.clone());
    }
    let Some(t) = rs.table_mut(cmd.family, &cmd.table) else {
        return Err(no_table(&cmd).into());
    };
    log.touched.insert(t.handle);
    match cmd.object {
        Object::Chain {
            name,
            base,
            comment,
        } => chain_cmd(t, cmd.verb, cmd.handle, &name, base, comment),
        Object::Rule {
            chain,
            position,
            rule,
        } => rule_cmd(t, cmd.verb, &chain, position, rule, &cmd.at, log),
        Object::Set { name, is_map, decl } => {
            set_cmd(t, cmd.verb, cmd.handle, &name, is_map, decl, now, log)
        }
        Object::Element { set, raw, close } => {
            let s = t.set(&set).ok_or_else(|| {
                ErrorKind::not_found("set", &set, "add the set or map before its elements")
            })?;
            let elems = parse_elements(&raw, &s.key.clone(), s.data, &close)?;
            element_cmd(t, cmd.verb, &set, elems, now)
        }
        Object::Table { .. } | Object::Ruleset => Ok(()),
    }
}

fn table_cmd(rs: &mut Ruleset, cmd: &Command, comment: Option<String>) -> Result<(), Placed> {
    let key = (cmd.family, cmd.table.clone());
    let existing = match cmd.handle {
        Some(h) => rs
            .tables
            .get(&h)
            .filter(|t| t.family == cmd.family)
            .map(|t| t.handle),
        None => rs.table_names.get(&key).copied(),
    };
    match (cmd.verb, existing) {
        (Verb::Add, Some(_)) => Ok(()),
        (Verb::Add | Verb::Create, None) => {
            let h = rs.next_table_handle;
            rs.next_table_handle += 1;
            rs.tables
                .insert(h, Table::new(cmd.family, &cmd.table, h, comment));
            rs.table_names.insert(key, h);
            Ok(())
        }
        (Verb::Create, Some(_)) => Err(ErrorKind::Exists {
            what: "table",
            token: cmd.table.clone(),
            hint: "use `add table` to accept an existing table",
        }
        .into()),
        (Verb::Delete | Verb::Destroy, Some(h)) => {
            if let Some(t) = rs.tables.remove(&h) {
                rs.table_names.remove(&(t.family, t.name));
            }
            Ok(())
        }
        (Verb::Destroy, None) => Ok(()),
        (Verb::Flush, Some(h)) => {
            if let Some(t) = rs.tables.get_mut(&h) {
                let names: Vec<String> = t.chain_names.keys().cloned().collect();
                for n in names {
                    t.flush_chain(&n);
                }
            }
            Ok(())
        }
        (Verb::Delete | Verb::Flush, None) => Err(no_table(cmd).into()),
        (Verb::Insert | Verb::Replace, _) => {
            Err(ErrorKind::invalid("table", "tables are added, created, deleted or flushed").into())
        }
    }
}

fn chain_cmd(
    t: &mut Table,
    verb: Verb,
    handle: Option<u64>,
    name: &str,
    spec: Option<BaseSpec>,
    comment: Option<String>,
) -> Result<(), Placed> {
    let name = match handle {
        Some(h) => match t.chains.get(&h) {
            Some(c) => c.name.clone(),
            None if verb == Verb::Destroy => return Ok(()),
            None => {
                return Err(ErrorKind::not_found(
                    "chain handle",
                    &h.to_string(),
                    "list with -a to see handles",
                )
                .into())
            }
        },
        None => name.to_string(),
    };
    let exists = t.chain(&name).map(|c| c.base);
    match verb {
        Verb::Add | Verb::Create => {
            if let Some(s) = &spec {
                if s.chain_type == ChainType::Nat && s.hook == Hook::Forward {
                    return Err(ErrorKind::KernelRefused {
                        token: name,
                        reason: "nat chains cannot use the forward hook".into(),
                    }
                    .into());
                }
                if s.chain_type == ChainType::Nat && s.priority <= -200 {
                    return Err(ErrorKind::KernelRefused {
                        token: name,
                        reason: "nat chains need a priority above -200 (conntrack)".into(),
                    }
                    .into());
                }
            }
            match (exists, verb) {
                (Some(_), Verb::Create) => Err(ErrorKind::Exists {
                    what: "chain",
                    token: name,
                    hint: "use `add chain` to accept an existing chain",
                }
                .into()),
                (Some(None), _) if spec.is_some() => Err(ErrorKind::Exists {
                    what: "chain",
                    token: name,
                    hint:
                        "a regular chain of this name exists; delete it before adding a base chain",
                }
                .into()),
                (Some(Some(b)), _) => {
                    if let Some(s) = spec {
                        if (s.chain_type, s.hook, s.priority) != (b.chain_type, b.hook, b.priority)
                        {
                            return Err(ErrorKind::KernelRefused {
                                token: name,
                                reason: "cannot change the type, hook or priority of an existing base chain; delete it first".into(),
                            }
                            .into());
                        }
                        if let (Some(p), Some(c)) = (s.policy, t.chain_mut(&name)) {
                            if let Some(base) = &mut c.base {
                                base.policy = p;
                            }
                        }
                    }
                    Ok(())
                }
                (Some(None), _) => Ok(()),
                (None, _) => {
                    let handle = t.take_handle();
                    t.insert_chain(Chain {
                        name,
                        handle,
                        base: spec.map(|s| BaseChain {
                            chain_type: s.chain_type,
                            hook: s.hook,
                            priority: s.priority,
                            policy: s.policy.unwrap_or(Policy::Accept),
                        }),
                        comment,
                        rules: Vec::new(),
                    });
                    Ok(())
                }
            }
        }
        Verb::Delete | Verb::Destroy => {
            if exists.is_none() {
                return if verb == Verb::Destroy {
                    Ok(())
                } else {
                    Err(
                        ErrorKind::not_found("chain", &name, "delete only chains that exist")
                            .into(),
                    )
                };
            }
            let uses = t.chain_uses(&name);
            if uses > 0 {
                return Err(ErrorKind::Busy {
                    what: "chain",
                    token: name,
                    uses,
                }
                .into());
            }
            t.remove_chain(&name);
            Ok(())
        }
        Verb::Flush => {
            if exists.is_none() {
                return Err(
                    ErrorKind::not_found("chain", &name, "flush only chains that exist").into(),
                );
            }
            t.flush_chain(&name);
            Ok(())
        }
        Verb::Insert | Verb::Replace => {
            Err(ErrorKind::invalid("chain", "chains are added, created, deleted or flushed").into())
        }
    }
}

/// Check a rule's references, and apply `update @set` side effects.
fn resolve_rule(t: &mut Table, rule: &ParsedRule, log: &TxLog) -> Result<(), ErrorKind> {
    for s in &rule.stmts {
        for c in s.chain_refs() {
            check_target(t, c)?;
        }
        let Some(name) = s.set_refs() else { continue };
        let set = t.set(name).ok_or_else(|| {
            ErrorKind::not_found("set", name, "add the set or map before rules that use it")
        })?;
        match s {
            Stmt::Match(Match {
                left,
                right: Rhs::Named(_),
                ..
            }) => {
                // A map works as a set here: the match tests its keys.
                check_key_type(&left.key_type(), &set.key, name)?;
            }
            Stmt::Vmap {
                key,
                map: MapRef::Named(_),
            } => {
                if set.data != Some(DataType::Verdict) {
                    return Err(ErrorKind::invalid(name, "is not a verdict map"));
                }
                check_key_type(&key.key_type(), &set.key, name)?;
            }
            Stmt::SetUpdate(u) => {
                if set.is_map {
                    return Err(ErrorKind::invalid(name, "is a map; update sets, not maps"));
                }
                check_key_type(&u.key.key_type(), &set.key, name)?;
                let created = log.created_sets.contains(&(t.handle, name.to_string()));
                if let Some(set) = t.set_mut(name) {
                    if set.size == 0 {
                        set.size = 65535;
                    }
                    if created {
                        set.flags.dynamic = true;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn check_target(t: &Table, chain: &str) -> Result<(), ErrorKind> {
    match t.chain(chain) {
        None => Err(ErrorKind::not_found(
            "chain",
            chain,
            "add the chain before jumping to it",
        )),
        Some(c) if c.base.is_some() => Err(ErrorKind::KernelRefused {
            token: chain.to_string(),
            reason: "cannot jump or go to a base chain".into(),
        }),
        Some(_) => Ok(()),
    }
}

fn rule_cmd(
    t: &mut Table,
    verb: Verb,
    chain: &str,
    position: Option<Position>,
    rule: Option<ParsedRule>,
    at: &Token,
    log: &mut TxLog,
) -> Result<(), Placed> {
    let Some(c) = t.chain(chain) else {
        return Err(ErrorKind::not_found("chain", chain, "add the chain before its rules").into());
    };
    let find_handle = |h: u64| {
        c.rules.iter().position(|r| r.handle == h).ok_or_else(|| {
            ErrorKind::not_found("rule handle", &h.to_string(), "list with -a to see handles")
        })
    };
    let len = c.rules.len();
    let index = match (verb, position) {
        (_, Some(Position::Handle(h))) => Some(find_handle(h)?),
        (_, Some(Position::Index(i))) => {
            let i = usize::try_from(i).unwrap_or(usize::MAX);
            if i >= len {
                return Err(ErrorKind::not_found(
                    "rule index",
                    &i.to_string(),
                    "index counts the chain's rules from 0",
                )
                .into());
            }
            Some(i)
        }
        (_, None) => None,
    };
    if matches!(verb, Verb::Delete | Verb::Destroy) {
        if let Some(i) = index {
            t.remove_rule(chain, i);
        }
        return Ok(());
    }
    let Some(rule) = rule else { return Ok(()) };
    resolve_rule(t, &rule, log)?;
    t.next_handle += rule.anon_sets;
    let (insert_at, handle) = match (verb, index) {
        (Verb::Replace, Some(i)) => {
            let old = t
                .remove_rule(chain, i)
                .map(|r| r.handle)
                .unwrap_or_default();
            (i, old)
        }
        (Verb::Insert, Some(i)) => (i, t.take_handle()),
        (Verb::Insert, None) => (0, t.take_handle()),
        (_, Some(i)) => (i + 1, t.take_handle()),
        (_, None) => (len, t.take_handle()),
    };
    log.added_rules.insert((t.handle, handle), at.clone());
    t.insert_rule(
        chain,
        insert_at,
        Rule {
            stmts: rule.stmts,
            comment: rule.comment,
            handle,
            anon_sets: rule.anon_sets,
        },
    );
    Ok(())
}
