//! [`Ipset`] over the `ipset` tool: every write is one `ipset restore`
//! payload (one line per trait call: the trait adds, deletes and creates
//! one thing at a time), read-backs are `ipset list`.
//!
//! `ipset restore` applies its payload as one unit and names the failing
//! line, which is why writes go through it rather than `ipset add` (a later
//! batching trait can hand it many lines at once). `-exist` makes creating
//! an existing set or adding a present entry a no-op, as upstream's runner
//! passes it for `ignore_exist`.
//!
//! **Error contract:** a [`DataplaneError`] naming the command line and
//! what `ipset` said (e.g. "The set with the given name does not exist");
//! a missing tool names its Debian package (`ipset`).

use super::exec::{Journal, KernelWrite, Runner};
use crate::dataplane::{DataplaneError, IpSetSpec, Ipset};

/// The kernel's ipsets through the `ipset` tool.
#[derive(Debug, Clone)]
pub struct KernelIpset {
    runner: Runner,
    journal: Journal,
}

/// The members of one `ipset list SET` output.
pub fn members(listing: &str) -> Vec<String> {
    listing
        .lines()
        .skip_while(|l| !l.starts_with("Members:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.trim().to_string())
        .collect()
}

/// The `X.Y` of `ipset v7.17, protocol version: 7`.
pub fn version_of(output: &str) -> Option<String> {
    let v = output.split_whitespace().find(|w| w.starts_with('v'))?;
    Some(v.trim_start_matches('v').trim_end_matches(',').to_string())
}

impl KernelIpset {
    pub fn new(runner: Runner, journal: Journal) -> Self {
        KernelIpset { runner, journal }
    }

    /// One `ipset restore` of `payload`, recorded.
    fn restore(&self, payload: String, exist: bool) -> Result<(), DataplaneError> {
        let args: &[&str] = if exist {
            &["restore", "-exist"]
        } else {
            &["restore"]
        };
        let result = self.runner.check("ipset", args, Some(&payload)).map(|_| ());
        let result = result.map_err(|e| {
            DataplaneError::new(
                e.operation,
                format!("{} (payload: {})", e.message, payload.trim()),
            )
        });
        self.journal.record(KernelWrite {
            command: self.runner.describe("ipset", args),
            input: Some(payload),
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });
        result
    }
}

impl Ipset for KernelIpset {
    fn flush_set(&mut self, set: &str) -> Result<(), DataplaneError> {
        self.restore(format!("flush {set}\n"), false)
    }

    fn destroy_set(&mut self, set: &str) -> Result<(), DataplaneError> {
        self.restore(format!("destroy {set}\n"), false)
    }

    fn destroy_all_sets(&mut self) -> Result<(), DataplaneError> {
        self.restore("destroy\n".into(), false)
    }

    fn create_set(&mut self, set: &IpSetSpec, ignore_exist: bool) -> Result<(), DataplaneError> {
        self.restore(format!("{}\n", set.create_args().join(" ")), ignore_exist)
    }

    fn add_entry(
        &mut self,
        entry: &str,
        set: &IpSetSpec,
        ignore_exist: bool,
    ) -> Result<(), DataplaneError> {
        self.restore(format!("add {} {entry}\n", set.name), ignore_exist)
    }

    fn del_entry(&mut self, entry: &str, set: &str) -> Result<(), DataplaneError> {
        self.restore(format!("del {set} {entry}\n"), false)
    }

    fn test_entry(&mut self, entry: &str, set: &str) -> Result<bool, DataplaneError> {
        let out = self.runner.run("ipset", &["test", set, entry], None)?;
        if out.success() {
            return Ok(true);
        }
        if out.stderr.contains("is NOT in set") {
            return Ok(false);
        }
        Err(DataplaneError::new(
            self.runner.describe("ipset", &["test", set, entry]),
            out.complaint(),
        ))
    }

    fn list_entries(&mut self, set: &str) -> Result<Vec<String>, DataplaneError> {
        Ok(members(&self.runner.check(
            "ipset",
            &["list", set],
            None,
        )?))
    }

    fn list_sets(&mut self) -> Result<Vec<String>, DataplaneError> {
        let out = self.runner.check("ipset", &["list", "-n"], None)?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    fn get_version(&mut self) -> Result<String, DataplaneError> {
        let out = self.runner.check("ipset", &["--version"], None)?;
        version_of(&out).ok_or_else(|| {
            DataplaneError::new("ipset --version", format!("no version in {:?}", out.trim()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_members_and_version() {
        let listing = "Name: KUBE-CLUSTER-IP\nType: hash:ip,port\nRevision: 7\n\
            Header: family inet hashsize 1024 maxelem 65536 bucketsize 12\n\
            Size in memory: 440\nReferences: 3\nNumber of entries: 2\nMembers:\n\
            10.96.0.10,tcp:80\n10.96.0.53,udp:53\n";
        assert_eq!(members(listing), ["10.96.0.10,tcp:80", "10.96.0.53,udp:53"]);
        assert!(members("Name: X\nMembers:\n").is_empty());
        assert_eq!(
            version_of("ipset v7.17, protocol version: 7\n").as_deref(),
            Some("7.17")
        );
        assert_eq!(version_of("nonsense"), None);
    }
}
