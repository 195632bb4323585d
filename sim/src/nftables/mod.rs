//! The nftables model: what `nft -f` loads into the kernel and what
//! `nft list` prints back, for kube-proxy's nftables mode and anything else
//! written the same way.
//!
//! Models: tables of the `ip`, `ip6` and `inet` families ([`Ruleset`],
//! [`Table`]); base chains with type, hook, priority and policy, and
//! regular chains ([`Chain`]); rules as typed statements and expressions an
//! evaluator can walk ([`Rule`], [`Stmt`], [`Expr`], [`Match`]) — payload,
//! meta, ct, fib and numgen expressions, concatenations, anonymous sets and
//! verdict maps, counters, verdicts, NAT, reject, mark setting and dynamic
//! set updates; named sets and maps ([`Set`]) with flags, timeouts and
//! elements that expire on virtual time; transactions applied atomically
//! with the kernel's semantics ([`Ruleset::apply`]); and listings
//! byte-identical to nftables 1.0.6 ([`Ruleset::list`]).
//!
//! One lookup in a named set or map ([`Set::get`], [`Set::verdict`]) is the
//! constant-time step the project counts for nftables' O(1) dispatch.
//!
//! Must never: know about Kubernetes, read the wall clock, resolve names
//! through the host, skip input it does not understand, or change the
//! ruleset when a transaction fails.
//!
//! Error contract: every refusal is an [`NftError`] (line, column and an
//! [`ErrorKind`] naming the token, with a hint). Nothing here panics on input.
//!
//! Module map: `lexer` → `script` (commands, table blocks) with `decl`
//! (chain specs, set bodies, element lists) and `rule_parse` (statements)
//! with `expr_parse` (expressions; `value`, `names`, `duration` for
//! literals) → `normalize` (the rewrites nft applies before listing) →
//! `apply` and `apply_set` (transaction semantics) →
//! `validate` (commit-time checks); `ruleset`, `table`, `chain`, `set`,
//! `stmt`, `expr` hold state and the query API; `list` prints; [`eval`]
//! (with `eval_expr`, `eval_trace`) walks a packet through a base chain.

mod apply;
mod apply_set;
mod chain;
mod decl;
mod duration;
mod error;
pub mod eval;
mod eval_expr;
mod eval_trace;
mod expr;
mod expr_parse;
mod lexer;
mod list;
mod names;
mod normalize;
mod rule_parse;
mod ruleset;
mod script;
mod set;
mod stmt;
mod table;
mod types;
mod validate;
mod value;

pub use chain::{BaseChain, Chain, ChainType, Hook, Policy};
pub use duration::KERNEL_TICK_MS;
pub use error::{ErrorKind, NftError};
pub use expr::{
    AnonSet, BinOp, CtKey, Expr, FibKey, L4Header, Match, MetaKey, PayloadField, PortField, RelOp,
    Rhs,
};
pub use list::ListOptions;
pub use ruleset::Ruleset;
pub use set::{Element, MapData, Set, SetFlags};
pub use stmt::{
    AnonMap, MapRef, MarkSet, Nat, NatFlags, NatKind, Reject, Rule, SetOp, SetUpdate, Stmt,
};
pub use table::Table;
pub use types::{DataType, Family, KeyType, Verdict};
pub use value::{Atom, Value};
