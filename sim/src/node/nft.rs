//! nftables on a node: its ruleset, and the order in which the kernel runs
//! everything registered at a hook — iptables tables and nftables base
//! chains side by side, as on a node in the middle of a mode switch.
//!
//! Models: the kernel runs a hook's entries in ascending priority, equal
//! priorities in registration order. iptables tables sit at their fixed
//! priorities (raw −300, mangle −150, filter 0); nftables base chains at
//! theirs. Conntrack (−200) and the NAT core (−100 for prerouting and
//! output, 100 for input and postrouting) are the path's own steps: at an
//! equal priority they run first, as modules loaded at boot. NAT-type
//! chains — the iptables nat table and nftables `type nat` chains — do not
//! run at their own priority but inside the NAT core, ordered among
//! themselves by priority, for a connection's first packet only
//! (`nf_nat_inet_fn`). Registration order is kept in a
//! [`HookRegistry`]: an iptables table registers when it is created, a
//! base chain when a transaction creates it.
//!
//! Must never: scan every chain of a ruleset per packet — base chains are
//! indexed when a transaction commits ([`Node::nft_apply`]).
//!
//! Error contract: [`Node::nft_apply`] and [`Node::nft_list`] return the
//! model's [`NftError`] (line, column, what); the ruleset is unchanged by a
//! refused transaction.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::RangeBounds;

use super::{Interfaces, Node};
use crate::netfilter::{Family, Hook, Ruleset as IptRuleset, TableId};
use crate::nftables::eval::FibLookup;
use crate::nftables::{
    ChainType, Family as NftFamily, Hook as NftHook, ListOptions, NftError, Ruleset as NftRuleset,
};
use crate::time::Instant;

/// `NF_IP_PRI_CONNTRACK`.
pub(crate) const PRI_CONNTRACK: i32 = -200;
/// `NF_IP_PRI_NAT_DST`: the NAT core in prerouting and output.
pub(crate) const PRI_NAT_DST: i32 = -100;
/// `NF_IP_PRI_NAT_SRC`: the NAT core in input and postrouting.
pub(crate) const PRI_NAT_SRC: i32 = 100;
/// IPVS's first LOCAL_IN hook (`NF_IP_PRI_NAT_SRC - 2`).
pub(crate) const PRI_IPVS_IN: i32 = PRI_NAT_SRC - 2;
/// IPVS's first FORWARD hook (`NF_IP_PRI_NAT_SRC - 1`).
pub(crate) const PRI_IPVS_FWD: i32 = PRI_NAT_SRC - 1;
/// IPVS's first LOCAL_OUT hook (`NF_IP_PRI_NAT_DST + 1`).
pub(crate) const PRI_IPVS_OUT: i32 = PRI_NAT_DST + 1;

impl FibLookup for Interfaces {
    fn fib_type(&self, addr: IpAddr) -> u32 {
        u32::try_from(self.addr_type(addr, None)).unwrap_or(0)
    }
}

/// Who registered an entry at a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Iptables(Family, TableId),
    Nft { table: u64, chain: u64 },
}

/// An nftables base chain, indexed at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NftBase {
    pub family: NftFamily,
    pub table: u64,
    pub chain: u64,
    pub hook: NftHook,
    pub chain_type: ChainType,
    pub priority: i32,
    seq: u64,
}

/// One entry at a hook.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HookEntry<'a> {
    /// An iptables table's built-in chain.
    Iptables(TableId),
    /// An nftables base chain.
    Nft(&'a NftBase),
}

/// Registration order of everything hooked, and the base-chain index.
#[derive(Debug, Clone, Default)]
pub(crate) struct HookRegistry {
    next: u64,
    seq: BTreeMap<Owner, u64>,
    nft: Vec<NftBase>,
}

fn nft_hook(h: Hook) -> NftHook {
    match h {
        Hook::Prerouting => NftHook::Prerouting,
        Hook::Input => NftHook::Input,
        Hook::Forward => NftHook::Forward,
        Hook::Output => NftHook::Output,
        Hook::Postrouting => NftHook::Postrouting,
    }
}

/// The priority an iptables table's chains are registered at (nat: its
/// place inside the NAT core).
fn table_priority(t: TableId, hook: Hook) -> i32 {
    match t {
        TableId::Raw => -300,
        TableId::Mangle => -150,
        TableId::Filter => 0,
        TableId::Nat => match hook {
            Hook::Prerouting | Hook::Output => PRI_NAT_DST,
            Hook::Input | Hook::Forward | Hook::Postrouting => PRI_NAT_SRC,
        },
    }
}

impl HookRegistry {
    fn register(&mut self, owner: Owner) -> u64 {
        if let Some(s) = self.seq.get(&owner) {
            return *s;
        }
        let s = self.next;
        self.next += 1;
        self.seq.insert(owner, s);
        s
    }

    /// Register iptables tables created since the last call.
    pub(crate) fn refresh_iptables(&mut self, iptables: &[IptRuleset; 2]) {
        for rs in iptables {
            for t in TableId::ALL {
                if rs.table(t).is_some() {
                    self.register(Owner::Iptables(rs.family(), t));
                }
            }
        }
    }

    /// Re-index base chains after a transaction: new ones register, gone
    /// ones leave.
    pub(crate) fn refresh_nft(&mut self, rs: &NftRuleset) {
        let mut now = Vec::new();
        for t in rs.tables() {
            for c in t.chains() {
                if let Some(b) = c.base() {
                    now.push((t.handle(), c.handle(), t.family(), *b));
                }
            }
        }
        self.seq
            .retain(|o, _| !matches!(o, Owner::Nft { table, chain } if !now.iter().any(|n| (n.0, n.1) == (*table, *chain))));
        // New chains register in handle order (creation order in a table).
        now.sort_by_key(|n| (n.0, n.1));
        self.nft = now
            .into_iter()
            .map(|(table, chain, family, b)| NftBase {
                family,
                table,
                chain,
                hook: b.hook,
                chain_type: b.chain_type,
                priority: b.priority,
                seq: self.register(Owner::Nft { table, chain }),
            })
            .collect();
    }

    fn seq_of(&self, owner: Owner) -> u64 {
        // Unregistered (changed behind the node's back): after the rest.
        self.seq.get(&owner).copied().unwrap_or(u64::MAX)
    }

    fn entries<'a>(
        &'a self,
        family: Family,
        hook: Hook,
        iptables: &IptRuleset,
        nat: bool,
    ) -> Vec<(i32, u64, HookEntry<'a>)> {
        let v4 = family == Family::Ipv4;
        let mut out: Vec<(i32, u64, HookEntry<'a>)> = TableId::ALL
            .into_iter()
            .filter(|t| (*t == TableId::Nat) == nat && t.hooks().contains(&hook))
            .filter(|t| iptables.table(*t).is_some())
            .map(|t| {
                let seq = self.seq_of(Owner::Iptables(family, t));
                (table_priority(t, hook), seq, HookEntry::Iptables(t))
            })
            .collect();
        let want = if nat {
            ChainType::Nat
        } else {
            ChainType::Filter
        };
        out.extend(
            self.nft
                .iter()
                .filter(|b| b.hook == nft_hook(hook) && b.chain_type == want)
                .filter(|b| crate::nftables::eval::table_sees(b.family, v4))
                .map(|b| (b.priority, b.seq, HookEntry::Nft(b))),
        );
        out.sort_by_key(|(p, s, _)| (*p, *s));
        out
    }

    /// Filter-type entries (iptables raw, mangle, filter; nftables filter
    /// chains) of `hook` for `family` with a priority in `range`, in run
    /// order.
    pub(crate) fn filters<'a>(
        &'a self,
        family: Family,
        hook: Hook,
        iptables: &IptRuleset,
        range: impl RangeBounds<i32>,
    ) -> Vec<HookEntry<'a>> {
        self.entries(family, hook, iptables, false)
            .into_iter()
            .filter(|(p, _, _)| range.contains(p))
            .map(|(_, _, e)| e)
            .collect()
    }

    /// NAT-type entries (the iptables nat table, nftables nat chains) of
    /// `hook` for `family`, in the NAT core's order.
    pub(crate) fn nat<'a>(
        &'a self,
        family: Family,
        hook: Hook,
        iptables: &IptRuleset,
    ) -> Vec<HookEntry<'a>> {
        self.entries(family, hook, iptables, true)
            .into_iter()
            .map(|(_, _, e)| e)
            .collect()
    }
}

impl Node {
    /// The nftables ruleset.
    pub fn nftables(&self) -> &NftRuleset {
        &self.nftables
    }

    /// `nft -f`: run `script` as one transaction at `now`; base chains it
    /// creates are hooked at once.
    pub fn nft_apply(&mut self, script: &str, now: Instant) -> Result<(), NftError> {
        self.nftables.apply(script, now)?;
        self.hooks.refresh_nft(&self.nftables);
        Ok(())
    }

    /// `nft list …` (`list ruleset`, `list table ip kube-proxy`, …) at `now`.
    pub fn nft_list(&self, request: &str, now: Instant) -> Result<String, NftError> {
        self.nftables.list(request, ListOptions::default(), now)
    }
}
