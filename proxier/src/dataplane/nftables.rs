//! The nftables interface, as upstream's nftables proxier uses it (through
//! the `knftables` library): one `nft -f` transaction per sync, and
//! listings to learn what exists.
//!
//! Transactions travel as `nft` script text: the same bytes go to the
//! kernel's `nft -f -` and to the simulator's nftables parser.

use super::DataplaneError;

pub trait Nftables {
    /// Runs one transaction atomically (`nft -f -`): all of it or nothing.
    fn run(&mut self, transaction: &str) -> Result<(), DataplaneError>;

    /// `nft list table FAMILY NAME` output, or `None` if the table does not
    /// exist.
    fn list_table(&mut self, family: &str, table: &str) -> Result<Option<String>, DataplaneError>;

    /// `nft list ruleset` output.
    fn list_ruleset(&mut self) -> Result<String, DataplaneError>;
}
