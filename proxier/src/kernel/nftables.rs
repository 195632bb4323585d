//! [`Nftables`] against the host's `nft` (what upstream reaches through
//! knftables): one `nft -f -` per transaction, `nft list table` /
//! `nft list ruleset` for listings.
//!
//! `nft -f` applies a whole file as one kernel transaction: all of it or
//! nothing. A refusal names the transaction line nft pointed at
//! (`/dev/stdin:LINE:COLS: Error: …`) and carries that line's text.
//!
//! **Error contract:** a missing `nft` names the `nftables` package; a table
//! that does not exist is `Ok(None)` from [`Nftables::list_table`] and
//! `Ok(false)` from [`Nftables::delete_table`], not an error.

use super::exec::{Journal, KernelWrite, Runner};
use crate::dataplane::{DataplaneError, Nftables};

/// The first `/dev/stdin:LINE:` location in nft's message.
pub fn failed_line(message: &str) -> Option<usize> {
    message.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("/dev/stdin:")?;
        rest.split(':').next()?.parse().ok()
    })
}

fn is_not_found(complaint: &str) -> bool {
    complaint.contains("No such file or directory")
}

/// `nft` on the host (or in a namespace).
#[derive(Debug, Clone)]
pub struct KernelNftables {
    runner: Runner,
    journal: Journal,
}

impl KernelNftables {
    pub fn new(runner: Runner, journal: Journal) -> Self {
        KernelNftables { runner, journal }
    }
}

impl Nftables for KernelNftables {
    /// One `nft delete table FAMILY NAME`.
    fn delete_table(&mut self, family: &str, table: &str) -> Result<bool, DataplaneError> {
        let args = ["delete", "table", family, table];
        let out = self.runner.run("nft", &args, None)?;
        let command = self.runner.describe("nft", &args);
        if out.success() {
            self.journal.record(KernelWrite {
                command,
                input: None,
                outcome: Ok(()),
            });
            return Ok(true);
        }
        if is_not_found(&out.complaint()) {
            return Ok(false);
        }
        Err(DataplaneError::new(command, out.complaint()))
    }

    fn run(&mut self, transaction: &str) -> Result<(), DataplaneError> {
        let args = ["-f", "-"];
        let command = self.runner.describe("nft", &args);
        let out = self.runner.run("nft", &args, Some(transaction))?;
        let result = if out.success() {
            Ok(())
        } else {
            let complaint = out.complaint();
            let line = failed_line(&complaint);
            let message = match line.and_then(|n| transaction.lines().nth(n - 1)) {
                Some(text) => format!(
                    "line {} `{text}` was refused: {complaint}",
                    line.unwrap_or_default()
                ),
                None => complaint,
            };
            Err(DataplaneError {
                operation: command.clone(),
                message,
                line,
            })
        };
        self.journal.record(KernelWrite {
            command,
            input: Some(transaction.to_string()),
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });
        result
    }

    fn list_table(&mut self, family: &str, table: &str) -> Result<Option<String>, DataplaneError> {
        let args = ["list", "table", family, table];
        let out = self.runner.run("nft", &args, None)?;
        if out.success() {
            Ok(Some(out.stdout))
        } else if is_not_found(&out.complaint()) {
            Ok(None)
        } else {
            Err(DataplaneError::new(
                self.runner.describe("nft", &args),
                out.complaint(),
            ))
        }
    }

    fn list_ruleset(&mut self) -> Result<String, DataplaneError> {
        self.runner.check("nft", &["list", "ruleset"], None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_nft_points_at() {
        let msg = "/dev/stdin:3:31-31: Error: syntax error, unexpected newline\nadd rule ip kube-proxy x bogus\n    ^\n";
        assert_eq!(failed_line(msg), Some(3));
        assert_eq!(failed_line("Error: No such file or directory"), None);
    }
}
