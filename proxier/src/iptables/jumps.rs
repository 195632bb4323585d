//! The jump rules from the built-in chains into kube-proxy's chains
//! (upstream's `iptablesJumpChains` and `iptablesKubeletJumpChains`).
//!
//! These live in chains kube-proxy does not own (INPUT, FORWARD, …), so they
//! cannot go in the restore payload; full syncs ensure them one by one with
//! `ensure_chain` + `ensure_rule(Prepend, …)`, in this order. Arguments are
//! argv tokens: a comment is one token, without quotes.

use super::names::*;
use crate::dataplane::{DataplaneError, Iptables, RulePosition, Table};

/// One jump: from `src` in `table` to `dst`, with optional extra matches.
pub struct Jump {
    pub table: Table,
    pub dst: &'static str,
    pub src: &'static str,
    pub comment: &'static str,
    pub extra: &'static [&'static str],
}

const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];

pub const JUMPS: &[Jump] = &[
    Jump {
        table: Table::Filter,
        dst: KUBE_EXTERNAL_SERVICES,
        src: "INPUT",
        comment: "kubernetes externally-visible service portals",
        extra: NEW,
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_EXTERNAL_SERVICES,
        src: "FORWARD",
        comment: "kubernetes externally-visible service portals",
        extra: NEW,
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_NODEPORTS,
        src: "INPUT",
        comment: "kubernetes health check service ports",
        extra: &[],
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_SERVICES,
        src: "FORWARD",
        comment: "kubernetes service portals",
        extra: NEW,
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_SERVICES,
        src: "OUTPUT",
        comment: "kubernetes service portals",
        extra: NEW,
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_FORWARD,
        src: "FORWARD",
        comment: "kubernetes forwarding rules",
        extra: &[],
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_PROXY_FIREWALL,
        src: "INPUT",
        comment: "kubernetes load balancer firewall",
        extra: NEW,
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_PROXY_FIREWALL,
        src: "OUTPUT",
        comment: "kubernetes load balancer firewall",
        extra: NEW,
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_PROXY_FIREWALL,
        src: "FORWARD",
        comment: "kubernetes load balancer firewall",
        extra: NEW,
    },
    Jump {
        table: Table::Nat,
        dst: KUBE_SERVICES,
        src: "OUTPUT",
        comment: "kubernetes service portals",
        extra: &[],
    },
    Jump {
        table: Table::Nat,
        dst: KUBE_SERVICES,
        src: "PREROUTING",
        comment: "kubernetes service portals",
        extra: &[],
    },
    Jump {
        table: Table::Nat,
        dst: KUBE_POSTROUTING,
        src: "POSTROUTING",
        comment: "kubernetes postrouting rules",
        extra: &[],
    },
    // Duplicates of kubelet's own jumps to its firewall chain.
    Jump {
        table: Table::Filter,
        dst: KUBE_FIREWALL,
        src: "INPUT",
        comment: "",
        extra: &[],
    },
    Jump {
        table: Table::Filter,
        dst: KUBE_FIREWALL,
        src: "OUTPUT",
        comment: "",
        extra: &[],
    },
];

impl Jump {
    /// The rule's argv: extra matches, the comment, the jump.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = self.extra.iter().map(|s| s.to_string()).collect();
        if !self.comment.is_empty() {
            args.extend(["-m", "comment", "--comment", self.comment].map(String::from));
        }
        args.extend(["-j", self.dst].map(String::from));
        args
    }
}

/// Ensures every jump chain and rule, in upstream's order.
pub fn ensure(ipt: &mut dyn Iptables) -> Result<(), DataplaneError> {
    for jump in JUMPS {
        ipt.ensure_chain(jump.table, jump.dst)?;
        ipt.ensure_rule(RulePosition::Prepend, jump.table, jump.src, &jump.args())?;
    }
    Ok(())
}
