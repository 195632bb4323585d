//! Commit-time checks: what the kernel verifies for every base chain before
//! a transaction takes effect.
//!
//! Models: from each base chain, every chain reachable through `jump`,
//! `goto`, anonymous verdict maps and named verdict maps is walked; a chain
//! that can reach itself is a loop (ELOOP, "Too many links"); more than 15
//! nested jumps are refused (EMLINK, "Too many links"); statements must suit
//! the base chain they run under — `dnat` needs a nat chain on prerouting
//! or output, `snat` a nat chain on postrouting or input, `masquerade` a
//! nat chain on postrouting, `reject` any hook but postrouting
//! (EOPNOTSUPP). Chains no base chain reaches are not checked, as in the
//! kernel; tables the transaction did not touch are not walked again.
//!
//! Must never: change the ruleset; it only reads.
//!
//! Error contract: the first violation as an [`NftError`], placed at the
//! latest rule of this transaction on the offending path (the one that made
//! it reachable or invalid).

use std::collections::BTreeMap;

use super::apply::TxLog;
use super::chain::{BaseChain, ChainType, Hook};
use super::error::{ErrorKind, NftError};
use super::lexer::Token;
use super::ruleset::Ruleset;
use super::set::MapData;
use super::stmt::{MapRef, NatKind, Stmt};
use super::table::Table;

/// The kernel's jump stack: a chain may sit at most this many jumps below
/// its base chain (`NFT_JUMP_STACK_SIZE` − 1).
const MAX_DEPTH: usize = 15;

/// Check every table the transaction touched.
pub(crate) fn validate(rs: &Ruleset, log: &TxLog) -> Result<(), NftError> {
    for t in rs.tables.values() {
        if !log.touched.contains(&t.handle) {
            continue;
        }
        let g = Graph::build(t);
        for (i, c) in g.chains.iter().enumerate() {
            if let Some(b) = c.base {
                let mut walk = Walk {
                    t,
                    g: &g,
                    log,
                    base: b,
                    base_name: g.chains[i].name,
                    state: vec![Mark::Unseen; g.chains.len()],
                    path: Vec::new(),
                };
                walk.visit(i, 0)?;
            }
        }
    }
    Ok(())
}

/// A statement's needs: what it does that depends on the base chain.
#[derive(Clone, Copy)]
enum Need {
    Dnat,
    Snat,
    Masquerade,
    Reject,
}

/// One edge or need of a chain, in rule order, with the rule's handle.
enum Step<'a> {
    Jump(usize),
    Need(Need, &'a Stmt),
}

struct Node<'a> {
    name: &'a str,
    base: Option<BaseChain>,
    steps: Vec<(u64, Step<'a>)>,
}

/// The table's chains as an integer graph.
struct Graph<'a> {
    chains: Vec<Node<'a>>,
}

impl<'a> Graph<'a> {
    fn build(t: &'a Table) -> Graph<'a> {
        let index: BTreeMap<&str, usize> = t
            .chains
            .values()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let map_targets = |m: &str| -> Vec<usize> {
            t.set(m)
                .map(|set| {
                    set.elements
                        .values()
                        .filter_map(|e| match &e.data {
                            Some(MapData::Verdict(v)) => {
                                v.chain().and_then(|c| index.get(c).copied())
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let chains = t
            .chains
            .values()
            .map(|c| {
                let mut steps = Vec::new();
                for r in &c.rules {
                    for s in &r.stmts {
                        let need = match s {
                            Stmt::Nat(n) if n.kind == NatKind::Dnat => Some(Need::Dnat),
                            Stmt::Nat(_) => Some(Need::Snat),
                            Stmt::Masquerade(_) => Some(Need::Masquerade),
                            Stmt::Reject(_) => Some(Need::Reject),
                            _ => None,
                        };
                        if let Some(n) = need {
                            steps.push((r.handle, Step::Need(n, s)));
                        }
                        let targets: Vec<usize> = match s {
                            Stmt::Vmap {
                                map: MapRef::Named(m),
                                ..
                            } => map_targets(m),
                            other => other
                                .chain_refs()
                                .into_iter()
                                .filter_map(|c| index.get(c).copied())
                                .collect(),
                        };
                        steps.extend(targets.into_iter().map(|j| (r.handle, Step::Jump(j))));
                    }
                }
                Node {
                    name: &c.name,
                    base: c.base,
                    steps,
                }
            })
            .collect();
        Graph { chains }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unseen,
    OnStack,
    /// Checked when reached at this depth (deeper visits check again).
    Done(usize),
}

struct Walk<'a> {
    t: &'a Table,
    g: &'a Graph<'a>,
    log: &'a TxLog,
    base: BaseChain,
    base_name: &'a str,
    state: Vec<Mark>,
    /// Handles of the rules on the current path.
    path: Vec<u64>,
}

impl Walk<'_> {
    fn fail(&self, extra: Option<u64>, kind: ErrorKind) -> NftError {
        let place: Option<&Token> = self
            .path
            .iter()
            .chain(extra.iter())
            .filter_map(|h| self.log.added_rules.get(&(self.t.handle, *h)))
            .max_by_key(|t| (t.line, t.col));
        match place {
            Some(t) => t.err(kind),
            None => kind.at(0, 0),
        }
    }

    fn visit(&mut self, i: usize, depth: usize) -> Result<(), NftError> {
        let name = self.g.chains[i].name;
        if depth > MAX_DEPTH {
            return Err(self.fail(
                None,
                ErrorKind::TooDeep {
                    token: name.to_string(),
                    from: self.base_name.to_string(),
                },
            ));
        }
        match self.state[i] {
            Mark::Done(d) if d <= depth => return Ok(()),
            Mark::OnStack => {
                return Err(self.fail(
                    None,
                    ErrorKind::Loop {
                        token: name.to_string(),
                        from: self.base_name.to_string(),
                    },
                ))
            }
            _ => {}
        }
        self.state[i] = Mark::OnStack;
        for (handle, step) in &self.g.chains[i].steps {
            match step {
                Step::Need(need, text) => {
                    if let Err(reason) = allowed(*need, &self.base) {
                        return Err(self.fail(
                            Some(*handle),
                            ErrorKind::KernelRefused {
                                token: text.to_string(),
                                reason,
                            },
                        ));
                    }
                }
                Step::Jump(j) => {
                    self.path.push(*handle);
                    self.visit(*j, depth + 1)?;
                    self.path.pop();
                }
            }
        }
        self.state[i] = Mark::Done(depth);
        Ok(())
    }
}

/// Whether a statement with this need may run under base chain `b`.
fn allowed(need: Need, b: &BaseChain) -> Result<(), String> {
    let nat = |hooks: &[Hook], what: &str| {
        if b.chain_type != ChainType::Nat {
            Err(format!(
                "{what} needs a nat chain; it is reached from a {} chain",
                b.chain_type.name()
            ))
        } else if !hooks.contains(&b.hook) {
            Err(format!("{what} is not valid in the {} hook", b.hook.name()))
        } else {
            Ok(())
        }
    };
    match need {
        Need::Dnat => nat(&[Hook::Prerouting, Hook::Output], "dnat"),
        Need::Snat => nat(&[Hook::Postrouting, Hook::Input], "snat"),
        Need::Masquerade => nat(&[Hook::Postrouting], "masquerade"),
        Need::Reject if b.hook == Hook::Postrouting => {
            Err("reject is not valid in the postrouting hook".into())
        }
        Need::Reject => Ok(()),
    }
}
