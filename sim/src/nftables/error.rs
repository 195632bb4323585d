//! Errors of the nftables model: every refusal, from a token the parser does
//! not know to a kernel refusal at commit, as one typed value.
//!
//! Models: the place ([`NftError::line`], [`NftError::column`], 1-based, of
//! the token at fault) and an [`ErrorKind`] naming the token, with the errno
//! text the real `nft` prints where the kernel refused (`No such file or
//! directory`, `File exists`, `Device or resource busy`, `Operation not
//! supported`, `Too many links`) and a hint saying how to fix the input.
//!
//! Must never: carry a message without the token it is about (where there is
//! one), or be produced by a panic.
//!
//! Error contract: this module only defines values; it cannot fail.

use thiserror::Error;

/// A refused transaction or listing request: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct NftError {
    /// 1-based line of the offending token (0 when there is no input text).
    pub line: usize,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl NftError {
    /// The token this error is about, if any.
    pub fn token(&self) -> Option<&str> {
        self.kind.token()
    }
}

/// Why a transaction or request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// A `"` without its closing `"` on the same line.
    #[error("unterminated string `{token}`; hint: strings are quoted with \"...\" on one line and cannot contain `\"`")]
    UnterminatedString { token: String },
    /// A token where the grammar wants something else.
    #[error("syntax error at `{token}`: expected {expected}")]
    Unexpected {
        token: String,
        expected: &'static str,
    },
    /// The input ended inside a command.
    #[error("syntax error: unexpected end of input, expected {expected}")]
    UnexpectedEnd { expected: &'static str },
    /// Syntax real nft accepts that this model does not implement.
    #[error("`{token}` is not supported by the simulator; hint: {hint}")]
    Unsupported { token: String, hint: &'static str },
    /// A value that does not parse as its type or is out of range.
    #[error("bad {what} `{token}`: {reason}")]
    BadValue {
        what: &'static str,
        token: String,
        reason: String,
    },
    /// An expression and a value, set or map of different types.
    #[error("datatype mismatch at `{token}`: expected {expected}, got {found}")]
    TypeMismatch {
        token: String,
        expected: String,
        found: String,
    },
    /// Two protocol (or family) matches that cannot both hold.
    #[error("conflicting protocols specified at `{token}`: {reason}")]
    ConflictingProtocols { token: String, reason: String },
    /// A statement or expression used where nft or the kernel does not allow it.
    #[error("`{token}` is not allowed here: {reason}")]
    Invalid { token: String, reason: String },
    /// A table, chain, set, map, rule handle or element that does not exist.
    #[error("{what} `{token}` does not exist (No such file or directory); hint: {hint}")]
    NotFound {
        what: &'static str,
        token: String,
        hint: &'static str,
    },
    /// `create` of an existing object, or `add` of an incompatible one.
    #[error("{what} `{token}` already exists (File exists); hint: {hint}")]
    Exists {
        what: &'static str,
        token: String,
        hint: &'static str,
    },
    /// Deleting a chain or set that rules or map elements still refer to.
    #[error("{what} `{token}` is still referenced {uses} time(s) (Device or resource busy); hint: remove the rules and map elements that refer to it first")]
    Busy {
        what: &'static str,
        token: String,
        uses: usize,
    },
    /// The kernel refuses the request (EOPNOTSUPP).
    #[error("`{token}`: {reason} (Operation not supported)")]
    KernelRefused { token: String, reason: String },
    /// A jump loop reachable from a base chain (ELOOP).
    #[error("chain `{token}` can reach itself from base chain `{from}` (Too many links); hint: break the cycle of jumps")]
    Loop { token: String, from: String },
    /// More than 15 nested jumps below a base chain (EMLINK).
    #[error("chain `{token}` is more than 15 jumps below base chain `{from}` (Too many links); hint: flatten the jumps")]
    TooDeep { token: String, from: String },
    /// Overlapping intervals in a set without `auto-merge`.
    #[error("conflicting intervals specified at `{token}`; hint: remove the overlap or declare the set with `auto-merge`")]
    ConflictingIntervals { token: String },
    /// More elements than the set's `size`.
    #[error("set `{token}` is full ({size} elements) (Too many open files in system)")]
    SetFull { token: String, size: u32 },
}

impl ErrorKind {
    /// The token this error is about, if any.
    pub fn token(&self) -> Option<&str> {
        use ErrorKind::*;
        match self {
            UnterminatedString { token }
            | Unexpected { token, .. }
            | Unsupported { token, .. }
            | BadValue { token, .. }
            | TypeMismatch { token, .. }
            | ConflictingProtocols { token, .. }
            | Invalid { token, .. }
            | NotFound { token, .. }
            | Exists { token, .. }
            | Busy { token, .. }
            | KernelRefused { token, .. }
            | Loop { token, .. }
            | TooDeep { token, .. }
            | ConflictingIntervals { token }
            | SetFull { token, .. } => Some(token),
            UnexpectedEnd { .. } => None,
        }
    }

    /// Attach a place.
    pub(crate) fn at(self, line: usize, column: usize) -> NftError {
        NftError {
            line,
            column,
            kind: self,
        }
    }

    pub(crate) fn bad(what: &'static str, token: &str, reason: impl Into<String>) -> Self {
        ErrorKind::BadValue {
            what,
            token: token.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unexpected(token: &str, expected: &'static str) -> Self {
        ErrorKind::Unexpected {
            token: token.to_string(),
            expected,
        }
    }

    pub(crate) fn unsupported(token: &str, hint: &'static str) -> Self {
        ErrorKind::Unsupported {
            token: token.to_string(),
            hint,
        }
    }

    pub(crate) fn invalid(token: &str, reason: impl Into<String>) -> Self {
        ErrorKind::Invalid {
            token: token.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, token: &str, hint: &'static str) -> Self {
        ErrorKind::NotFound {
            what,
            token: token.to_string(),
            hint,
        }
    }
}
