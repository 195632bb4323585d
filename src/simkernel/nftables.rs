//! The proxier's [`Nftables`] trait over a simulated node's nftables.
//!
//! `run` is `nft -f`: the node applies the transaction at the kernel's
//! virtual time, all of it or nothing (base chains it creates are hooked at
//! once); a refusal names the transaction line the model points at, with
//! that line's text, as the real backend does. `list_table` and
//! `list_ruleset` are the model's listings, byte-identical to nftables
//! 1.0.6; a table that does not exist is `Ok(None)`.
//!
//! **Invariant:** this module translates; it never decides anything a
//! kernel would not.

use proxier::dataplane::{DataplaneError, Nftables};
use sim::nftables::Family;

use super::SimKernel;

impl Nftables for SimKernel<'_> {
    fn run(&mut self, transaction: &str) -> Result<(), DataplaneError> {
        self.side.last_nft_transaction = Some(transaction.to_string());
        self.node
            .nft_apply(transaction, self.now)
            .map_err(|e| DataplaneError {
                operation: "nft -f -".into(),
                message: match transaction.lines().nth(e.line.saturating_sub(1)) {
                    Some(text) if e.line > 0 => {
                        format!("line {} `{text}` was refused: {}", e.line, e.kind)
                    }
                    _ => e.to_string(),
                },
                line: (e.line > 0).then_some(e.line),
            })
    }

    fn list_table(&mut self, family: &str, table: &str) -> Result<Option<String>, DataplaneError> {
        let fam = Family::from_name(family).ok_or_else(|| {
            DataplaneError::new(
                "nft list table",
                format!("family {family:?} is not one of ip, ip6, inet"),
            )
        })?;
        if self.node.nftables().table(fam, table).is_none() {
            return Ok(None);
        }
        self.node
            .nft_list(&format!("list table {family} {table}"), self.now)
            .map(Some)
            .map_err(|e| DataplaneError::new("nft list table", e.to_string()))
    }

    fn list_ruleset(&mut self) -> Result<String, DataplaneError> {
        Ok(self.node.nftables().list_ruleset(self.now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simkernel::KernelSide;
    use proxier::dataplane::Kernel;
    use sim::netfilter::Variant;
    use sim::node::Node;
    use sim::time::Instant;

    #[test]
    fn transactions_load_into_the_node_and_list_back() {
        let mut node = Node::new("n", 1, Variant::Nft);
        let mut side = KernelSide::default();
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        let nft = k.nftables();
        assert_eq!(nft.list_table("ip", "kube-proxy").unwrap(), None);
        nft.run("add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\nadd chain ip kube-proxy services\n")
            .unwrap();
        let listing = nft.list_table("ip", "kube-proxy").unwrap().unwrap();
        assert_eq!(
            listing,
            "table ip kube-proxy {\n\tcomment \"rules for kube-proxy\"\n\tchain services {\n\t}\n}\n"
        );
        assert_eq!(nft.list_ruleset().unwrap(), listing);
    }

    #[test]
    fn a_refused_transaction_names_its_line_and_changes_nothing() {
        let mut node = Node::new("n", 1, Variant::Nft);
        let mut side = KernelSide::default();
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        let err = k
            .nftables()
            .run("add table ip t\nadd chain ip t c\nadd rule ip t c bogus\n")
            .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(
            err.message.contains("`add rule ip t c bogus`"),
            "{}",
            err.message
        );
        assert_eq!(k.nftables().list_ruleset().unwrap(), "");
    }
}
