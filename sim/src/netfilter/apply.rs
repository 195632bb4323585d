//! Restore semantics: applying a parsed payload to a ruleset the way the
//! kernel and iptables-restore 1.8.9 do, all or nothing.
//!
//! Models: flush mode (each `*table` block first empties its table — the nft
//! variant deletes the table, resetting policies; the legacy variant keeps
//! the table and its policies) and `--noflush` mode (tables and chains not
//! named stay as they are; `:CHAIN` creates a user chain or flushes an
//! existing one; `:BUILTIN POLICY` sets the policy without flushing); every
//! command's preconditions (chains exist, `-X` only on empty unreferenced
//! user chains, rule numbers in range, jumps only to existing user chains);
//! and the checks the kernel makes when the new tables are committed.
//!
//! Must never: leave a ruleset half-applied. The payload is parsed and
//! validated completely and applied to a copy; the copy replaces the ruleset
//! only on success.
//!
//! Error contract: [`RestoreError`] with the line of the failing command (or
//! of the table's COMMIT for commit-time checks such as loops and hooks).

use super::addr::Family;
use super::error::{ErrorKind, RestoreError};
use super::matches::Match;
use super::ruleset::{Counters, Ruleset, Table, TableId, Variant};
use super::script::{parse_script, Command};
use super::targets::Target;
use super::validate::validate_table;

/// Whether a restore replaces the tables it names or edits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreMode {
    /// `iptables-restore`: every table named in the payload is replaced.
    Flush,
    /// `iptables-restore --noflush`: only what the payload says changes
    /// (this is what kube-proxy uses).
    #[default]
    NoFlush,
}

/// Kernel objects that rules can refer to by name, outside iptables.
pub trait KernelObjects {
    /// The family of the ipset called `name`, if it exists.
    fn ipset_family(&self, name: &str) -> Option<Family>;
    /// Whether the ipset called `name` matches packets of either family
    /// (`bitmap:port` sets have none).
    fn ipset_any_family(&self, _name: &str) -> bool {
        false
    }
    /// Whether an nfacct object called `name` exists.
    fn nfacct_exists(&self, name: &str) -> bool;
}

/// Options of [`Ruleset::restore_with`].
#[derive(Clone, Copy, Default)]
pub struct RestoreOptions<'a> {
    /// Flush or noflush.
    pub mode: RestoreMode,
    /// `--counters`: take `[packets:bytes]` and `-c` values instead of zero.
    pub counters: bool,
    /// When set, `-m set` and `-m nfacct` must name existing objects (as the
    /// kernel requires); when `None` such names are not checked.
    pub objects: Option<&'a dyn KernelObjects>,
}

impl Ruleset {
    /// Apply an `iptables-restore` payload; on error nothing changes.
    pub fn restore(&mut self, text: &str, mode: RestoreMode) -> Result<(), RestoreError> {
        self.restore_with(
            text,
            &RestoreOptions {
                mode,
                ..RestoreOptions::default()
            },
        )
    }

    /// Apply a payload with options; on error nothing changes.
    pub fn restore_with(
        &mut self,
        text: &str,
        opts: &RestoreOptions<'_>,
    ) -> Result<(), RestoreError> {
        let blocks = parse_script(text, self.family(), self.variant())?;
        let mut next = self.clone();
        let mut commits: Vec<(TableId, usize)> = Vec::new();
        for block in &blocks {
            let t = block.table;
            match (next.variant(), opts.mode) {
                (Variant::Legacy, RestoreMode::Flush) => {
                    next.instantiate(t);
                    let table = next.table_mut(t);
                    let names: Vec<String> = table.chains().map(|c| c.name().to_string()).collect();
                    for n in &names {
                        table.flush_chain(n);
                    }
                    for n in table.user_names() {
                        table.delete_user(&n);
                    }
                }
                (Variant::Legacy, RestoreMode::NoFlush) => next.instantiate(t),
                (Variant::Nft, RestoreMode::Flush) => next.delete_table(t),
                (Variant::Nft, RestoreMode::NoFlush) => {}
            }
            for (line, cmd) in &block.commands {
                next.instantiate(t);
                exec(&mut next, t, cmd, opts).map_err(|k| k.at(*line))?;
                if let (Command::Zero(chain), Variant::Nft) = (cmd, next.variant()) {
                    nft_zero_quirk(self, &mut next, t, chain.as_deref());
                }
            }
            commits.retain(|(id, _)| *id != t);
            commits.push((t, block.commit_line));
        }
        for (t, line) in commits {
            if let Some(table) = next.table(t) {
                validate_table(table, next.variant()).map_err(|k| k.at(line))?;
            }
        }
        *self = next;
        Ok(())
    }
}

fn exec(
    rs: &mut Ruleset,
    t: TableId,
    cmd: &Command,
    opts: &RestoreOptions<'_>,
) -> Result<(), ErrorKind> {
    let family = rs.family();
    let variant = rs.variant();
    let table = rs.table_mut(t);
    let counters = |c: &Option<Counters>| {
        if opts.counters {
            c.unwrap_or_default()
        } else {
            Counters::default()
        }
    };
    match cmd {
        Command::Declare {
            chain,
            policy,
            counters: c,
        } => {
            if table.is_builtin_name(chain) {
                if let Some(p) = policy {
                    let c = opts.counters.then_some(*c);
                    if let Some(ch) = table.chain_mut(chain) {
                        ch.set_policy(*p, c);
                    }
                }
                return Ok(());
            }
            if let (Some(p), Variant::Legacy) = (policy, variant) {
                return Err(ErrorKind::PolicyOnUserChain {
                    token: chain.clone(),
                    policy: p.name().to_string(),
                });
            }
            if table.chain(chain).is_some() {
                table.flush_chain(chain);
            } else {
                table.create_user(chain);
            }
        }
        Command::Append {
            chain,
            rule,
            counters: c,
        } => {
            let len = existing(table, chain)?.len();
            check_rule(table, rule, family, opts)?;
            table.insert_rule(chain, len, rule.clone(), counters(c));
        }
        Command::Insert {
            chain,
            index,
            rule,
            counters: c,
        } => {
            let len = existing(table, chain)?.len();
            if *index > len + 1 {
                return Err(ErrorKind::RuleIndex {
                    token: chain.clone(),
                    index: *index,
                    len,
                });
            }
            check_rule(table, rule, family, opts)?;
            table.insert_rule(chain, index - 1, rule.clone(), counters(c));
        }
        Command::Replace {
            chain,
            index,
            rule,
            counters: c,
        } => {
            in_range(table, chain, *index)?;
            check_rule(table, rule, family, opts)?;
            table.remove_rule(chain, index - 1);
            table.insert_rule(chain, index - 1, rule.clone(), counters(c));
        }
        Command::DeleteAt { chain, index } => {
            in_range(table, chain, *index)?;
            table.remove_rule(chain, index - 1);
        }
        Command::Delete { chain, rule } => {
            let pos = existing(table, chain)?
                .rules()
                .iter()
                .position(|r| r == rule);
            match pos {
                Some(i) => table.remove_rule(chain, i),
                None => {
                    return Err(ErrorKind::NoMatchingRule {
                        token: chain.clone(),
                    })
                }
            }
        }
        Command::NewChain(name) => {
            if table.chain(name).is_some() {
                return Err(ErrorKind::ChainExists {
                    token: name.clone(),
                });
            }
            table.create_user(name);
        }
        Command::DeleteChain(Some(name)) => delete_chain(table, name)?,
        Command::DeleteChain(None) => {
            for name in table.user_names() {
                delete_chain(table, &name)?;
            }
        }
        Command::Flush(Some(name)) => {
            existing(table, name)?;
            table.flush_chain(name);
        }
        Command::Flush(None) => {
            let names: Vec<String> = table.chains().map(|c| c.name().to_string()).collect();
            for n in &names {
                table.flush_chain(n);
            }
        }
        Command::Zero(Some(name)) => {
            existing(table, name)?;
            if let Some(c) = table.chain_mut(name) {
                c.zero();
            }
        }
        Command::Zero(None) => table.chains_mut().for_each(|c| c.zero()),
        Command::SetPolicy { chain, policy } => {
            existing(table, chain)?;
            if !table.is_builtin_name(chain) {
                return Err(ErrorKind::refused(
                    chain,
                    "-P only works on built-in chains",
                ));
            }
            if let Some(c) = table.chain_mut(chain) {
                c.set_policy(*policy, None);
            }
        }
        Command::Rename { old, new } => {
            existing(table, old)?;
            if table.is_builtin_name(old) {
                return Err(ErrorKind::BuiltinChain {
                    token: old.clone(),
                    reason: "built-in chains cannot be renamed",
                });
            }
            if table.chain(new).is_some() {
                return Err(ErrorKind::ChainExists { token: new.clone() });
            }
            table.rename_user(old, new);
        }
    }
    Ok(())
}

/// iptables-nft 1.8.9 implements `-Z` by re-sending the built-in chain with
/// the policy the kernel had when the transaction began, so a `-P` earlier
/// in the same payload is undone (checked on the real tool).
fn nft_zero_quirk(before: &Ruleset, next: &mut Ruleset, t: TableId, chain: Option<&str>) {
    let table = next.table_mut(t);
    let names: Vec<String> = table
        .builtin_chains()
        .map(|c| c.name().to_string())
        .filter(|n| chain.is_none_or(|c| c == n))
        .collect();
    for name in names {
        let policy = before
            .chain(t, &name)
            .and_then(|c| c.policy())
            .unwrap_or_default();
        if let Some(c) = table.chain_mut(&name) {
            c.set_policy(policy, None);
        }
    }
}

fn existing<'t>(table: &'t Table, chain: &str) -> Result<&'t super::ruleset::Chain, ErrorKind> {
    table.chain(chain).ok_or_else(|| ErrorKind::NoSuchChain {
        token: chain.to_string(),
        table: table.id().name(),
    })
}

fn in_range(table: &Table, chain: &str, index: usize) -> Result<(), ErrorKind> {
    let len = existing(table, chain)?.len();
    if index == 0 || index > len {
        return Err(ErrorKind::RuleIndex {
            token: chain.to_string(),
            index,
            len,
        });
    }
    Ok(())
}

fn delete_chain(table: &mut Table, name: &str) -> Result<(), ErrorKind> {
    let chain = existing(table, name)?;
    if chain.is_builtin() {
        return Err(ErrorKind::BuiltinChain {
            token: name.to_string(),
            reason: "built-in chains cannot be deleted",
        });
    }
    if !chain.is_empty() {
        return Err(ErrorKind::ChainNotEmpty {
            token: name.to_string(),
            rules: chain.len(),
        });
    }
    let references = table.references(name);
    if references > 0 {
        return Err(ErrorKind::ChainInUse {
            token: name.to_string(),
            references,
        });
    }
    table.delete_user(name);
    Ok(())
}

/// Checks that depend on the table's current chains and on kernel objects.
fn check_rule(
    table: &Table,
    rule: &super::rule::Rule,
    family: Family,
    opts: &RestoreOptions<'_>,
) -> Result<(), ErrorKind> {
    if let Some(Target::Jump(name) | Target::Goto(name)) = &rule.target {
        match table.chain(name) {
            None => {
                return Err(ErrorKind::UnknownTarget {
                    token: name.clone(),
                })
            }
            Some(c) if c.is_builtin() => {
                return Err(ErrorKind::BuiltinChain {
                    token: name.clone(),
                    reason: "rules cannot jump to a built-in chain",
                })
            }
            Some(_) => {}
        }
    }
    let Some(objects) = opts.objects else {
        return Ok(());
    };
    for m in &rule.matches {
        match m {
            Match::Set(s) => match objects.ipset_family(&s.name) {
                None => {
                    return Err(ErrorKind::MissingObject {
                        what: "ipset",
                        token: s.name.clone(),
                    })
                }
                Some(f) if f != family && !objects.ipset_any_family(&s.name) => {
                    return Err(ErrorKind::refused(
                        &s.name,
                        "the set's address family differs from the rule's",
                    ))
                }
                Some(_) => {}
            },
            Match::Nfacct(n) if !objects.nfacct_exists(n) => {
                return Err(ErrorKind::MissingObject {
                    what: "nfacct object",
                    token: n.clone(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}
