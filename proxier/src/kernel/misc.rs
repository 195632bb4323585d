//! [`Nfacct`] through the `nfacct` tool and [`Sysctl`] through `/proc/sys`,
//! each inside the target namespace (nfacct objects and most `net.*`
//! sysctls are per namespace).
//!
//! `/proc/sys/net/…` shows the namespace of the thread that opens it, so
//! reads and writes run through [`super::netns::in_netns`].
//!
//! **Error contract:** every failure names the counter or key and says what
//! the tool or the kernel said.

use super::exec::{Journal, KernelWrite, Runner};
use super::netns::in_netns;
use crate::dataplane::{DataplaneError, Nfacct, Sysctl};

/// nfacct counters via `nfacct get` / `nfacct add` (Debian package `nfacct`).
#[derive(Debug, Clone)]
pub struct KernelNfacct {
    runner: Runner,
    journal: Journal,
}

impl KernelNfacct {
    pub fn new(runner: Runner, journal: Journal) -> Self {
        KernelNfacct { runner, journal }
    }
}

impl Nfacct for KernelNfacct {
    fn ensure(&mut self, name: &str) -> Result<(), DataplaneError> {
        // `nfacct add` of an existing counter fails with EBUSY; ask first,
        // as upstream's Ensure does.
        if self.runner.run("nfacct", &["get", name], None)?.success() {
            return Ok(());
        }
        let result = self
            .runner
            .check("nfacct", &["add", name], None)
            .map(|_| ());
        self.journal.record(KernelWrite {
            command: self.runner.describe("nfacct", &["add", name]),
            input: None,
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });
        result
    }
}

/// `/proc/sys` of the host (or a namespace).
#[derive(Debug, Clone)]
pub struct KernelSysctl {
    netns: Option<String>,
    journal: Journal,
}

impl KernelSysctl {
    pub fn new(netns: Option<String>, journal: Journal) -> Self {
        KernelSysctl { netns, journal }
    }

    fn path(name: &str) -> Result<String, DataplaneError> {
        if name.split('/').any(|p| p.is_empty() || p == "..") {
            return Err(DataplaneError::new(
                format!("sysctl {name}"),
                "not a sysctl key (use slashes: net/ipv4/conf/all/route_localnet)",
            ));
        }
        Ok(format!("/proc/sys/{name}"))
    }
}

impl Sysctl for KernelSysctl {
    fn get(&self, name: &str) -> Result<i64, DataplaneError> {
        let path = Self::path(name)?;
        let text = in_netns(self.netns.as_deref(), || std::fs::read_to_string(&path))?
            .map_err(|e| DataplaneError::new(format!("sysctl {name}"), format!("{path}: {e}")))?;
        text.trim().parse().map_err(|_| {
            DataplaneError::new(
                format!("sysctl {name}"),
                format!("{path} holds {:?}, not a number", text.trim()),
            )
        })
    }

    fn set(&mut self, name: &str, value: i64) -> Result<(), DataplaneError> {
        let path = Self::path(name)?;
        let result = in_netns(self.netns.as_deref(), || {
            std::fs::write(&path, format!("{value}\n"))
        })?
        .map_err(|e| {
            DataplaneError::new(format!("sysctl -w {name}={value}"), format!("{path}: {e}"))
        });
        self.journal.record(KernelWrite {
            command: format!("sysctl -w {}={value}", name.replace('/', ".")),
            input: None,
            outcome: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        });
        result
    }
}
