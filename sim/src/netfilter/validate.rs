//! The checks the kernel makes when a table is committed: which hooks reach
//! each chain, jump loops, and targets or options used from a hook that does
//! not allow them.
//!
//! Models: x_tables' `mark_source_chains` and nf_tables' chain validation —
//! a chain reachable from a built-in chain inherits that chain's hook;
//! chains nothing reaches are not checked (the kernel accepts a loop or a
//! `MASQUERADE` in an unreferenced chain). The legacy variant also stops
//! following a chain at an unconditional ACCEPT, DROP or RETURN (the rules
//! after it are dead code to `mark_source_chains`); nf_tables does not.
//!
//! Must never: recurse (a deep jump chain must not overflow the stack) or
//! depend on map iteration order for which error it reports.
//!
//! Error contract: the first problem found, in table order (built-in chains
//! in hook order, then rule order), as an [`ErrorKind`].

use std::collections::{BTreeMap, BTreeSet};

use super::error::ErrorKind;
use super::matches::Match;
use super::rule::Rule;
use super::ruleset::{Chain, Hook, Table, Variant};
use super::targets::Target;

const ALL_HOOKS: [Hook; 5] = [
    Hook::Prerouting,
    Hook::Input,
    Hook::Forward,
    Hook::Output,
    Hook::Postrouting,
];

/// Check a table as the kernel does at commit.
pub(crate) fn validate_table(table: &Table, variant: Variant) -> Result<(), ErrorKind> {
    let hooks = reach(table, variant)?;
    for chain in table.chains() {
        let mask = hooks.get(chain.name()).copied().unwrap_or(0);
        if mask == 0 {
            continue;
        }
        for rule in chain.rules() {
            if let Some(t) = &rule.target {
                if let Some(allowed) = t.allowed_hooks() {
                    if let Some(bad) = ALL_HOOKS
                        .iter()
                        .find(|h| mask & h.bit() != 0 && !allowed.contains(h))
                    {
                        return Err(ErrorKind::WrongHook {
                            token: t.name().to_string(),
                            chain: chain.name().to_string(),
                            hook: bad.name(),
                            hint: match t.name() {
                                "DNAT" => "DNAT belongs under PREROUTING or OUTPUT",
                                "SNAT" => "SNAT belongs under POSTROUTING or INPUT",
                                "MASQUERADE" => "MASQUERADE belongs under POSTROUTING",
                                _ => "REJECT belongs under INPUT, FORWARD or OUTPUT",
                            },
                        });
                    }
                }
            }
            for m in &rule.matches {
                if let Match::AddrType(a) = m {
                    let (bad_in, bad_out) = (
                        Hook::Output.bit() | Hook::Postrouting.bit(),
                        Hook::Prerouting.bit() | Hook::Input.bit(),
                    );
                    if (a.limit_iface_in && mask & bad_in != 0)
                        || (a.limit_iface_out && mask & bad_out != 0)
                    {
                        let opt = if a.limit_iface_in {
                            "--limit-iface-in"
                        } else {
                            "--limit-iface-out"
                        };
                        return Err(ErrorKind::WrongHook {
                            token: opt.to_string(),
                            chain: chain.name().to_string(),
                            hook: ALL_HOOKS
                                .iter()
                                .find(|h| mask & h.bit() & (bad_in | bad_out) != 0)
                                .map_or("?", |h| h.name()),
                            hint: "--limit-iface-in is for PREROUTING/INPUT/FORWARD, --limit-iface-out for FORWARD/OUTPUT/POSTROUTING",
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// The hook mask of every chain reachable from a built-in chain; an error
/// if a reachable chain can reach itself.
fn reach(table: &Table, variant: Variant) -> Result<BTreeMap<&str, u8>, ErrorKind> {
    let mut hooks: BTreeMap<&str, u8> = BTreeMap::new();
    for root in table.builtin_chains() {
        let Some(hook) = root.hook() else { continue };
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut on_path: BTreeSet<&str> = BTreeSet::from([root.name()]);
        let mut stack: Vec<(&Chain, usize)> = vec![(root, 0)];
        *hooks.entry(root.name()).or_insert(0) |= hook.bit();
        while let Some(frame) = stack.last_mut() {
            let (chain, idx) = *frame;
            if idx >= chain.len() {
                on_path.remove(chain.name());
                done.insert(chain.name());
                stack.pop();
                continue;
            }
            frame.1 += 1;
            let rule = &chain.rules()[idx];
            if variant == Variant::Legacy && ends_chain(rule) {
                frame.1 = chain.len();
                continue;
            }
            let Some(target) = rule.jump_chain() else {
                continue;
            };
            if on_path.contains(target) {
                return Err(ErrorKind::Loop {
                    token: target.to_string(),
                    from: root.name().to_string(),
                });
            }
            if done.contains(target) {
                continue;
            }
            let Some(next) = table.chain(target) else {
                continue;
            };
            *hooks.entry(next.name()).or_insert(0) |= hook.bit();
            on_path.insert(next.name());
            stack.push((next, 0));
        }
    }
    Ok(hooks)
}

/// An unconditional standard verdict: x_tables treats what follows as
/// unreachable.
fn ends_chain(rule: &Rule) -> bool {
    let unconditional = rule.source.is_none()
        && rule.destination.is_none()
        && rule.in_interface.is_none()
        && rule.out_interface.is_none()
        && rule.protocol.is_none()
        && rule.matches.is_empty();
    unconditional
        && matches!(
            rule.target,
            Some(Target::Accept | Target::Drop | Target::Return)
        )
}
