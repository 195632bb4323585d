//! The iptables ruleset model: what `iptables-restore` loads into the kernel
//! and what `iptables-save` prints back, for one address family.
//!
//! Models: the four tables raw/mangle/nat/filter with built-in and user
//! chains ([`Ruleset`], [`Table`], [`Chain`]); rules as typed values
//! ([`Rule`], [`Match`], [`Target`]) with addresses as [`Cidr`] and ports as
//! [`PortRange`] so an evaluator can walk chains and test packets;
//! `iptables-restore` input with the kernel's flush/noflush semantics,
//! applied atomically ([`Ruleset::restore`]); and `iptables-save` output,
//! byte-identical to iptables 1.8.9 for the selected [`Variant`] (nf_tables
//! or legacy) minus the dated comment lines ([`Ruleset::save`]).
//!
//! Must never: know about Kubernetes, read the wall clock, resolve names
//! through the host (DNS, `/etc/services`), skip input it does not
//! understand, or change the ruleset when a restore fails.
//!
//! Error contract: every refusal is a [`RestoreError`] (line number plus an
//! [`ErrorKind`] naming the token and a hint). Nothing here panics on input.
//!
//! Module map: `quoting` (tokenizer and save quoting) → `script` (payload
//! lines to commands) → `parse_rule` with `ext_match`/`match_values`/
//! `ext_target` (rule options) → `apply` (restore semantics) → `validate` (commit-time checks);
//! `ruleset` holds state and the query API; `save` prints. [`eval`] walks
//! chains for a packet (`eval_match` decides matches, `eval_recent` holds
//! the `recent` tables, `eval_choice` the random decisions and the
//! explore-every-branch mode, `eval_trace` the rule-by-rule trace).

mod addr;
mod apply;
mod error;
pub mod eval;
mod eval_choice;
mod eval_match;
mod eval_recent;
mod eval_trace;
mod ext_common;
mod ext_ipvs;
mod ext_match;
mod ext_target;
mod l4;
mod match_state;
mod match_values;
mod matches;
mod parse_rule;
mod quoting;
mod rule;
mod ruleset;
mod save;
mod script;
mod targets;
mod validate;

pub use addr::{Cidr, Family, Interface, Negatable};
pub use apply::{KernelObjects, RestoreMode, RestoreOptions};
pub use error::{ErrorKind, RestoreError};
pub use ext_ipvs::{IpvsConnFacts, IpvsMatch, IpvsMethod, PhysdevMatch};
pub use l4::{PortRange, Protocol};
pub use matches::{
    AddrTypeMatch, AddrTypes, CtStates, IcmpKind, IcmpMatch, MarkMatch, Match, Multiport,
    PortMatch, PortSide, Recent, RecentAction, RecentSide, SetDir, SetMatch, Statistic,
    StatisticMode, TcpFlags, TcpMatch,
};
pub use rule::Rule;
pub use ruleset::{Chain, Counters, Hook, Policy, Ruleset, Table, TableId, Variant};
pub use save::SaveOptions;
pub use targets::{Log, MarkTarget, Masquerade, Nat, RejectWith, Target};
