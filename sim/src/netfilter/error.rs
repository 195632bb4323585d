//! Errors of the iptables ruleset model.
//!
//! Models: every way an `iptables-restore` payload can be refused — by the
//! tokenizer, by the option parser of a match or target, or by the kernel's
//! checks when the payload is applied (missing chains, chains in use, loops,
//! targets used in the wrong table or hook).
//!
//! Must never: carry a wall-clock value or anything that differs between two
//! runs over the same input. Messages are plain text, stable, and each names
//! the offending token where there is one and ends with a hint.
//!
//! Error contract: [`ErrorKind`] is what a single rule or command can fail
//! with; [`RestoreError`] adds the 1-based line number of the payload line
//! that failed. A failed restore never changes the ruleset.

use thiserror::Error;

/// A refused `iptables-restore` payload: the line that failed and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct RestoreError {
    /// 1-based line number in the payload.
    pub line: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl RestoreError {
    /// The token the error is about, when there is one.
    pub fn token(&self) -> Option<&str> {
        self.kind.token()
    }
}

/// Why a payload line, a rule or a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// A double quote was opened and never closed on this line.
    #[error("unterminated double quote in `{token}`; hint: close the quote on the same line")]
    UnterminatedQuote { token: String },
    /// A line that is not a table header, chain line, command, comment or COMMIT.
    #[error("unexpected `{token}`: {reason}; hint: {hint}")]
    Unexpected {
        token: String,
        reason: &'static str,
        hint: &'static str,
    },
    /// `*name` names a table this model does not have.
    #[error("unknown table `{token}`; hint: use one of raw, mangle, nat, filter")]
    UnknownTable { token: String },
    /// The payload ended inside a table block.
    #[error("COMMIT expected before the end of the payload (table `{table}` still open); hint: end every `*table` block with COMMIT")]
    MissingCommit { table: String },
    /// `-m NAME` names a match module this model does not know.
    #[error("unknown match `{token}`; hint: supported matches are tcp, udp, sctp, icmp, icmp6, multiport, comment, mark, addrtype, conntrack, state, statistic, recent, set, nfacct")]
    UnknownMatch { token: String },
    /// `-j NAME` is neither a supported target nor an existing user chain.
    #[error("unknown target or chain `{token}`; hint: declare the chain with `:{token} - [0:0]` before the rule that jumps to it, or use a supported target (ACCEPT, DROP, RETURN, REJECT, DNAT, SNAT, MASQUERADE, MARK, LOG)")]
    UnknownTarget { token: String },
    /// An option no loaded module accepts.
    #[error("unknown option `{token}`; hint: {hint}")]
    UnknownOption { token: String, hint: &'static str },
    /// An option needs a value and the line ended.
    #[error("option `{token}` requires a value; hint: write `{token} VALUE`")]
    MissingValue { token: String },
    /// A value that does not parse or is out of range.
    #[error("bad value `{token}` for `{option}`: {reason}")]
    BadValue {
        option: String,
        token: String,
        reason: String,
    },
    /// A module was loaded without an option it requires.
    #[error("`{module}` needs `{option}`; hint: add `{option} VALUE`")]
    MissingOption {
        module: &'static str,
        option: &'static str,
    },
    /// An option given twice, two options that exclude each other, or a `!`
    /// where none is allowed.
    #[error("`{token}` not allowed here: {reason}")]
    Conflict { token: String, reason: String },
    /// A rule that is valid syntax but that the kernel or iptables refuses.
    #[error("rule refused at `{token}`: {reason}")]
    Refused { token: String, reason: String },
    /// A chain name that is too long, starts with `-`/`!`, or clashes with a target.
    #[error("invalid chain name `{token}`: {reason}")]
    InvalidChainName { token: String, reason: &'static str },
    /// A chain that is created but already exists (`-N`).
    #[error("chain `{token}` already exists; hint: use `:{token} - [0:0]` to create-or-flush it")]
    ChainExists { token: String },
    /// A command names a chain that does not exist in the table.
    #[error("no chain `{token}` in table {table}; hint: declare it with `:{token} - [0:0]` first")]
    NoSuchChain { token: String, table: &'static str },
    /// A built-in chain was deleted, renamed, or jumped to.
    #[error("`{token}` is a built-in chain: {reason}")]
    BuiltinChain { token: String, reason: &'static str },
    /// A user chain was given a policy (legacy iptables refuses this).
    #[error("cannot set policy `{policy}` on user chain `{token}`; hint: user chains take `-` as policy")]
    PolicyOnUserChain { token: String, policy: String },
    /// A policy that is not ACCEPT or DROP.
    #[error("bad policy `{token}`; hint: built-in chains take ACCEPT or DROP")]
    BadPolicy { token: String },
    /// `-X` of a chain that still has rules.
    #[error("chain `{token}` is not empty ({rules} rules); hint: flush it first with `:{token} - [0:0]` or `-F {token}`")]
    ChainNotEmpty { token: String, rules: usize },
    /// `-X` of a chain that rules still jump to.
    #[error("chain `{token}` is still referenced by {references} rule(s); hint: remove the jumps to it first")]
    ChainInUse { token: String, references: usize },
    /// A rule number outside the chain.
    #[error("rule number {index} out of range for chain `{token}` with {len} rules")]
    RuleIndex {
        token: String,
        index: usize,
        len: usize,
    },
    /// `-D chain rule-spec` found no identical rule.
    #[error("no rule in chain `{token}` matches the one to delete; hint: the rule must match option for option, as iptables-save prints it")]
    NoMatchingRule { token: String },
    /// A jump loop reachable from a built-in chain.
    #[error("loop: chain `{token}` can reach itself from built-in chain {from}; hint: break the cycle of jumps")]
    Loop { token: String, from: String },
    /// A target used in a hook it does not support (e.g. DNAT from POSTROUTING).
    #[error("target `{token}` in chain `{chain}` is reachable from {hook}, where it is not allowed; hint: {hint}")]
    WrongHook {
        token: String,
        chain: String,
        hook: &'static str,
        hint: &'static str,
    },
    /// A target or option that only works in another table.
    #[error("`{token}` is not allowed in table {table}; hint: {hint}")]
    WrongTable {
        token: String,
        table: &'static str,
        hint: &'static str,
    },
    /// A kernel object a rule refers to (ipset, nfacct object) does not exist.
    #[error("{what} `{token}` does not exist; hint: create it before restoring rules that use it")]
    MissingObject { what: &'static str, token: String },
}

impl ErrorKind {
    /// The token this error is about, if any.
    pub fn token(&self) -> Option<&str> {
        use ErrorKind::*;
        match self {
            UnterminatedQuote { token }
            | Unexpected { token, .. }
            | UnknownTable { token }
            | UnknownMatch { token }
            | UnknownTarget { token }
            | UnknownOption { token, .. }
            | MissingValue { token }
            | BadValue { token, .. }
            | Conflict { token, .. }
            | Refused { token, .. }
            | InvalidChainName { token, .. }
            | ChainExists { token }
            | NoSuchChain { token, .. }
            | BuiltinChain { token, .. }
            | PolicyOnUserChain { token, .. }
            | BadPolicy { token }
            | ChainNotEmpty { token, .. }
            | ChainInUse { token, .. }
            | RuleIndex { token, .. }
            | NoMatchingRule { token }
            | Loop { token, .. }
            | WrongHook { token, .. }
            | WrongTable { token, .. }
            | MissingObject { token, .. } => Some(token),
            MissingCommit { .. } | MissingOption { .. } => None,
        }
    }

    /// Shorthand for [`ErrorKind::BadValue`].
    pub(crate) fn bad_value(option: &str, token: &str, reason: impl Into<String>) -> Self {
        ErrorKind::BadValue {
            option: option.to_string(),
            token: token.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub(crate) fn conflict(token: &str, reason: impl Into<String>) -> Self {
        ErrorKind::Conflict {
            token: token.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ErrorKind::Refused`].
    pub(crate) fn refused(token: &str, reason: impl Into<String>) -> Self {
        ErrorKind::Refused {
            token: token.to_string(),
            reason: reason.into(),
        }
    }

    /// Attach a line number.
    pub(crate) fn at(self, line: usize) -> RestoreError {
        RestoreError { line, kind: self }
    }
}
