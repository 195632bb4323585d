//! [`Iptables`] against the host's iptables tools (upstream's
//! `pkg/util/iptables` runner).
//!
//! One [`KernelIptables`] per family, bound to a variant
//! ([`IptablesVariant`], chosen by [`detect`]) whose binaries it runs:
//! `iptables-{legacy,nft}-restore -w 5 [-W 100000] --noflush --counters`
//! with the payload on stdin, `…-save -t TABLE`, and the rule commands
//! (`-N`, `-C`, `-I`/`-A`, `-D`, `-X`) with upstream's argument order
//! (`OP CHAIN -t TABLE ARGS…`) and wait flags. `-W` is passed to legacy only:
//! iptables-nft ignores it and warns.
//!
//! A restore is one tool invocation, and a refusal is reported with the
//! payload line the tool named and that line's text. The tools commit table
//! by table, so a payload with several tables is made all-or-nothing by
//! [`rollback`]. Large `--noflush` payloads on iptables-nft go through
//! [`merge`] instead (see there for why and for what it costs);
//! [`RestoreStrategy::Plain`] turns that off.
//!
//! **Invariants:** never splits a payload into several restores; on error
//! nothing of the payload stays applied; never reads the wall clock.

pub mod detect;
pub mod merge;
pub mod restore_error;
pub mod rollback;

pub use detect::{detect, Detection, IptablesTool, IptablesVariant};

use super::exec::{Journal, KernelWrite, Runner};
use crate::dataplane::{DataplaneError, Iptables, RestoreFlags, RulePosition, Table};
use crate::k8s::IpFamily;

/// A `--noflush` payload declaring at least this many chains is applied as
/// a merged flush-mode restore on iptables-nft. Below it the plain restore
/// is fast (≈ 0.3 s for 2,300 chains) and keeps upstream's exact behaviour.
pub const FAST_PATH_MIN_CHAINS: usize = 1000;

/// Upstream's `iptablesNotFoundStrings`: how each variant says that a
/// chain, rule or target is missing.
const NOT_FOUND: &[&str] = &[
    "No chain/target/match by that name",
    "No such file or directory",
    "does a matching rule exist",
    "does not exist",
];

/// Whether a tool's complaint means "not found" (upstream's
/// `IsNotFoundError`).
pub fn is_not_found(complaint: &str) -> bool {
    NOT_FOUND.iter().any(|s| complaint.contains(s))
}

/// How `restore_all` applies a `--noflush` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreStrategy {
    /// Plain `--noflush`, except large payloads on iptables-nft, which are
    /// merged into a flush-mode restore reaching the same state.
    #[default]
    Auto,
    /// Always the plain `--noflush` restore (upstream's behaviour).
    Plain,
}

/// Upstream's `RandomFullyMinVersion`.
const RANDOM_FULLY_MIN: (u32, u32, u32) = (1, 6, 2);
/// Upstream's `WaitRestoreMinVersion` (`iptables-restore -w`).
const WAIT_RESTORE_MIN: (u32, u32, u32) = (1, 6, 2);
/// Upstream's `WaitIntervalMinVersion` (`-W`).
const WAIT_INTERVAL_MIN: (u32, u32, u32) = (1, 6, 1);
/// Upstream assumes this version when `--version` fails (`MinCheckVersion`).
const ASSUMED_VERSION: (u32, u32, u32) = (1, 4, 11);

/// One family's iptables on the host (or in a namespace).
#[derive(Debug, Clone)]
pub struct KernelIptables {
    runner: Runner,
    family: IpFamily,
    variant: IptablesVariant,
    version: (u32, u32, u32),
    strategy: RestoreStrategy,
    journal: Journal,
}

impl KernelIptables {
    /// Binds to `variant`'s tools, reading their version once.
    pub fn new(
        runner: Runner,
        family: IpFamily,
        variant: IptablesVariant,
        strategy: RestoreStrategy,
        journal: Journal,
    ) -> Self {
        let tool = variant.tool(family, IptablesTool::Command);
        let version = runner
            .check(&tool, &["--version"], None)
            .ok()
            .and_then(|out| detect::parse_version(&out))
            .unwrap_or(ASSUMED_VERSION);
        KernelIptables {
            runner,
            family,
            variant,
            version,
            strategy,
            journal,
        }
    }

    pub fn variant(&self) -> IptablesVariant {
        self.variant
    }

    /// `major.minor.patch` of the tools.
    pub fn version(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    pub fn tool(&self, tool: IptablesTool) -> String {
        self.variant.tool(self.family, tool)
    }

    fn wait_flags(&self) -> &'static [&'static str] {
        match self.variant {
            IptablesVariant::Nft => &["-w", "5"],
            IptablesVariant::Legacy if self.version >= WAIT_INTERVAL_MIN => {
                &["-w", "5", "-W", "100000"]
            }
            IptablesVariant::Legacy if self.version >= (1, 4, 22) => &["-w", "5"],
            IptablesVariant::Legacy => &["-w"],
        }
    }

    fn restore_wait_flags(&self) -> &'static [&'static str] {
        if self.version < WAIT_RESTORE_MIN {
            return &[];
        }
        match self.variant {
            IptablesVariant::Nft => &["-w", "5"],
            IptablesVariant::Legacy => &["-w", "5", "-W", "100000"],
        }
    }

    /// Runs `iptables [wait] OP CHAIN -t TABLE ARGS…`.
    fn command(
        &self,
        op: &str,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<(Vec<String>, super::exec::Output), DataplaneError> {
        let mut argv: Vec<String> = self.wait_flags().iter().map(|s| s.to_string()).collect();
        argv.extend([op, chain, "-t", table.name()].map(String::from));
        argv.extend(args.iter().cloned());
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self
            .runner
            .run(&self.tool(IptablesTool::Command), &refs, None)?;
        Ok((argv, out))
    }

    fn describe(&self, argv: &[String]) -> String {
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.runner
            .describe(&self.tool(IptablesTool::Command), &refs)
    }

    fn record(&self, command: String, input: Option<&str>, error: Option<&DataplaneError>) {
        self.journal.record(KernelWrite {
            command,
            input: input.map(str::to_string),
            outcome: error.map_or(Ok(()), |e| Err(e.to_string())),
        });
    }

    /// `-C`: whether the rule exists. Exit status 1, or a complaint that
    /// something is not found (a missing chain makes iptables-nft exit 2),
    /// means it does not — upstream's `checkRule` plus `IsNotFoundError`.
    pub fn check_rule(
        &self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        let (argv, out) = self.command("-C", table, chain, args)?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ if is_not_found(&out.complaint()) => Ok(false),
            _ => Err(DataplaneError::new(self.describe(&argv), out.complaint())),
        }
    }

    /// Upstream's `DeleteRule`: deletes the rule if it exists; returns
    /// whether it did.
    pub fn delete_rule(
        &mut self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        if !self.check_rule(table, chain, args)? {
            return Ok(false);
        }
        let (argv, out) = self.command("-D", table, chain, args)?;
        let result = if out.success() {
            Ok(())
        } else {
            Err(DataplaneError::new(self.describe(&argv), out.complaint()))
        };
        self.record(self.describe(&argv), None, result.as_ref().err());
        result.map(|()| true)
    }

    /// Upstream's `DeleteChain` (`-X`): an error if it does not exist or is
    /// still referenced.
    pub fn delete_chain(&mut self, table: Table, chain: &str) -> Result<(), DataplaneError> {
        let (argv, out) = self.command("-X", table, chain, &[])?;
        let result = if out.success() {
            Ok(())
        } else {
            Err(DataplaneError::new(self.describe(&argv), out.complaint()))
        };
        self.record(self.describe(&argv), None, result.as_ref().err());
        result
    }

    /// `iptables-save -c`: every table, with counters.
    pub fn save_all_with_counters(&self) -> Result<String, DataplaneError> {
        self.runner
            .check(&self.tool(IptablesTool::Save), &["-c"], None)
    }

    /// `iptables-restore` in one invocation; `text` is what the tool gets,
    /// `payload` and `line_map` what errors are reported against.
    fn run_restore(
        &self,
        flags: RestoreFlags,
        text: &str,
        payload: &str,
        line_map: Option<&[Option<usize>]>,
    ) -> Result<String, Failure> {
        let mut argv: Vec<&str> = self.restore_wait_flags().to_vec();
        if flags.noflush {
            argv.push("--noflush");
        }
        if flags.counters {
            argv.push("--counters");
        }
        let tool = self.tool(IptablesTool::Restore);
        let command = self.runner.describe(&tool, &argv);
        let out = self
            .runner
            .run(&tool, &argv, Some(text))
            .map_err(Failure::NotRun)?;
        if out.success() {
            Ok(command)
        } else {
            Err(Failure::Refused(restore_error::restore_error(
                command,
                &out.complaint(),
                text,
                payload,
                line_map,
            )))
        }
    }

    /// The plain upstream restore, whatever the size (no rollback: a
    /// multi-table payload may stay partly applied; see [`rollback`]).
    pub fn restore_plain(
        &mut self,
        payload: &str,
        flags: RestoreFlags,
    ) -> Result<(), DataplaneError> {
        self.plain(payload, flags).map_err(Failure::into_error)
    }

    fn plain(&mut self, payload: &str, flags: RestoreFlags) -> Result<(), Failure> {
        let result = self.run_restore(flags, payload, payload, None);
        let command = match &result {
            Ok(c) => c.clone(),
            Err(e) => e.error().operation.clone(),
        };
        let result = result.map(|_| ());
        self.record(
            command,
            Some(payload),
            result.as_ref().err().map(Failure::error),
        );
        result
    }

    /// The merged flush-mode restore; `Ok(None)` if the payload or the
    /// current tables are outside what [`merge`] models.
    fn merged(&mut self, payload: &str) -> Result<Option<()>, Failure> {
        let saved = self.save_all_with_counters().map_err(Failure::NotRun)?;
        let merged = match merge::merge(&saved, payload) {
            Ok(m) => m,
            Err(merge::Unsupported(_)) => return Ok(None),
        };
        let flags = RestoreFlags {
            noflush: false,
            counters: true,
        };
        let result = self.run_restore(flags, &merged.text, payload, Some(&merged.line_map));
        let command = match &result {
            Ok(c) => c.clone(),
            Err(e) => e.error().operation.clone(),
        };
        let command = format!(
            "{command} (the --noflush payload merged into the current {} table{}: iptables-nft's --noflush is quadratic)",
            merged.tables.join(" and "),
            if merged.tables.len() == 1 { "" } else { "s" }
        );
        let result = result.map(|_| ());
        self.record(
            command,
            Some(payload),
            result.as_ref().err().map(Failure::error),
        );
        result.map(Some)
    }
}

/// Why a restore did not happen: the tool did not run, or it refused.
#[derive(Debug)]
enum Failure {
    NotRun(DataplaneError),
    Refused(DataplaneError),
}

impl Failure {
    fn error(&self) -> &DataplaneError {
        match self {
            Failure::NotRun(e) | Failure::Refused(e) => e,
        }
    }

    fn into_error(self) -> DataplaneError {
        match self {
            Failure::NotRun(e) | Failure::Refused(e) => e,
        }
    }
}

impl KernelIptables {
    /// The chains each section names, as they are now (see [`rollback`]).
    fn snapshot(
        &self,
        sections: &[rollback::Section],
    ) -> Result<Vec<Vec<rollback::ChainState>>, DataplaneError> {
        let table = |name: &str| {
            [Table::Raw, Table::Mangle, Table::Nat, Table::Filter]
                .into_iter()
                .find(|t| t.name() == name)
        };
        let mut out = Vec::new();
        for section in sections {
            let Some(t) = table(&section.table) else {
                return Err(DataplaneError::new(
                    self.tool(IptablesTool::Restore),
                    format!("table {:?} is not one kube-proxy uses", section.table),
                ));
            };
            if section.chains.len() > rollback::MAX_LISTED_CHAINS {
                // Many chains: one save of the table beats a listing each.
                let save =
                    self.runner
                        .check(&self.tool(IptablesTool::Save), &["-t", t.name()], None)?;
                out.push(rollback::states_from_save(&section.chains, &save));
                continue;
            }
            let mut chains = Vec::new();
            for chain in &section.chains {
                let (argv, out) = self.command("-S", t, chain, &[])?;
                chains.push(match out.code {
                    Some(0) => rollback::parse_listing(chain, &out.stdout),
                    Some(1) => rollback::ChainState::Absent {
                        name: chain.clone(),
                    },
                    _ => return Err(DataplaneError::new(self.describe(&argv), out.complaint())),
                });
            }
            out.push(chains);
        }
        Ok(out)
    }

    /// After a refused restore: puts back the sections the tool committed
    /// before it stopped, and returns the error (amended if that failed).
    fn roll_back(
        &mut self,
        sections: &[rollback::Section],
        snapshot: &[Vec<rollback::ChainState>],
        failure: Failure,
    ) -> DataplaneError {
        let error = match failure {
            Failure::NotRun(e) => return e,
            Failure::Refused(e) => e,
        };
        let committed = rollback::committed_before(sections, error.line).min(snapshot.len());
        let mut error = error;
        for (section, chains) in sections.iter().zip(snapshot).take(committed) {
            let payload = rollback::rollback_payload(&section.table, chains);
            let flags = RestoreFlags {
                noflush: true,
                counters: false,
            };
            if let Err(e) = self.plain(&payload, flags) {
                let e = e.into_error();
                error.message.push_str(&format!(
                    "; putting the {} table back failed too: {}",
                    section.table, e.message
                ));
            }
        }
        error
    }
}

impl Iptables for KernelIptables {
    fn family(&self) -> IpFamily {
        self.family
    }

    fn delete_rule(
        &mut self,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        KernelIptables::delete_rule(self, table, chain, args)
    }

    fn delete_chain(&mut self, table: Table, chain: &str) -> Result<(), DataplaneError> {
        KernelIptables::delete_chain(self, table, chain)
    }

    fn label(&self) -> String {
        format!("{} ({})", self.variant(), self.family().api_name())
    }

    fn restore_all(&mut self, payload: &str, flags: RestoreFlags) -> Result<(), DataplaneError> {
        let sections = rollback::sections(payload);
        let snapshot = if sections.len() > 1 {
            Some(self.snapshot(&sections[..sections.len() - 1])?)
        } else {
            None
        };
        let fast = self.strategy == RestoreStrategy::Auto
            && self.variant == IptablesVariant::Nft
            && flags.noflush
            && flags.counters
            && merge::declared_chains(payload) >= FAST_PATH_MIN_CHAINS;
        let result = match fast {
            true => match self.merged(payload) {
                Ok(Some(())) => Ok(()),
                Ok(None) => self.plain(payload, flags),
                Err(e) => Err(e),
            },
            false => self.plain(payload, flags),
        };
        match (result, snapshot) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(snapshot)) => Err(self.roll_back(&sections, &snapshot, e)),
            (Err(e), None) => Err(e.into_error()),
        }
    }

    fn save(&mut self, table: Table) -> Result<String, DataplaneError> {
        self.runner
            .check(&self.tool(IptablesTool::Save), &["-t", table.name()], None)
    }

    fn ensure_chain(&mut self, table: Table, chain: &str) -> Result<bool, DataplaneError> {
        let (argv, out) = self.command("-N", table, chain, &[])?;
        if out.success() {
            self.record(self.describe(&argv), None, None);
            return Ok(false);
        }
        if out.code == Some(1) && out.complaint().contains("already exists") {
            return Ok(true);
        }
        Err(DataplaneError::new(self.describe(&argv), out.complaint()))
    }

    fn ensure_rule(
        &mut self,
        position: RulePosition,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<bool, DataplaneError> {
        if self.check_rule(table, chain, args)? {
            return Ok(true);
        }
        let op = match position {
            RulePosition::Prepend => "-I",
            RulePosition::Append => "-A",
        };
        let (argv, out) = self.command(op, table, chain, args)?;
        let result = if out.success() {
            Ok(())
        } else {
            Err(DataplaneError::new(self.describe(&argv), out.complaint()))
        };
        self.record(self.describe(&argv), None, result.as_ref().err());
        result.map(|()| false)
    }

    fn has_random_fully(&self) -> bool {
        self.version >= RANDOM_FULLY_MIN
    }
}
