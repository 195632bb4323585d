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

    /// Deletes a table if it exists; returns whether it existed. (The host
    /// overrides this with one `nft delete table`, without listing a table
    /// that may hold tens of megabytes of rules.)
    fn delete_table(&mut self, family: &str, table: &str) -> Result<bool, DataplaneError> {
        if self.list_table(family, table)?.is_none() {
            return Ok(false);
        }
        self.run(&format!("delete table {family} {table}\n"))?;
        Ok(true)
    }
}
