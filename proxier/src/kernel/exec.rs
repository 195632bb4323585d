//! Running the kernel's userspace tools (`iptables-restore`, `nft`,
//! `nfacct`, …) on the host or inside a named network namespace.
//!
//! A [`Runner`] finds a tool on `PATH` (and in the `sbin` directories, which
//! are often missing from a user's `PATH`), runs it — through
//! `ip netns exec NAME` when the runner targets a namespace — feeds it its
//! standard input from a separate thread (payloads can be megabytes), and
//! collects what it printed. A missing tool is an error naming the Debian
//! package that provides it.
//!
//! **Error contract:** [`Runner::run`] fails only when the tool could not be
//! started; [`Runner::check`] also fails on a non-zero exit, with a
//! [`DataplaneError`] whose `operation` is the command line that was run and
//! whose `message` is what the tool said.
//!
//! Every mutating call can be recorded in a shared [`Journal`], which is how
//! `kpsim apply` reports what it wrote.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::dataplane::DataplaneError;

/// Directories searched after `PATH`: tools like `iptables` live in `sbin`.
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The Debian package that ships `tool`.
pub fn debian_package(tool: &str) -> &'static str {
    match tool {
        t if t.starts_with("iptables")
            || t.starts_with("ip6tables")
            || t.starts_with("xtables") =>
        {
            "iptables"
        }
        "nft" => "nftables",
        "conntrack" => "conntrack",
        "nfacct" => "nfacct",
        "ip" => "iproute2",
        "ipset" => "ipset",
        "ipvsadm" => "ipvsadm",
        _ => "(unknown)",
    }
}

/// Finds `tool` on `PATH` or in the usual `sbin` directories.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The error for a tool that is not installed.
pub fn missing_tool(tool: &str) -> DataplaneError {
    DataplaneError::new(
        tool,
        format!(
            "`{tool}` is not installed (Debian package `{}`)",
            debian_package(tool)
        ),
    )
}

/// What a finished tool printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code (`None` if a signal ended it).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// What the tool said: stderr, or stdout if stderr is empty, plus the
    /// exit status.
    pub fn complaint(&self) -> String {
        let said = if self.stderr.trim().is_empty() {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        };
        let status = match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        };
        if said.is_empty() {
            status
        } else {
            format!("{said} ({status})")
        }
    }
}

/// One write to the kernel, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelWrite {
    /// The command (or netlink operation) and how it was applied.
    pub command: String,
    /// The payload given on standard input, if any.
    pub input: Option<String>,
    /// `Err` with the error's text if the kernel refused it.
    pub outcome: Result<(), String>,
}

/// The writes made through one kernel handle, in order; shared by the
/// handle's parts.
#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<KernelWrite>>>);

impl Journal {
    pub fn record(&self, write: KernelWrite) {
        self.0.lock().expect("journal lock poisoned").push(write);
    }

    /// Removes and returns everything recorded so far.
    pub fn take(&self) -> Vec<KernelWrite> {
        std::mem::take(&mut *self.0.lock().expect("journal lock poisoned"))
    }
}

/// Runs tools in one network namespace (or the caller's own).
#[derive(Debug, Clone, Default)]
pub struct Runner {
    netns: Option<String>,
}

fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

impl Runner {
    /// A runner for the caller's namespace (`None`) or the named one.
    pub fn new(netns: Option<String>) -> Self {
        Runner { netns }
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The command line as a user would type it.
    pub fn describe(&self, tool: &str, args: &[&str]) -> String {
        let mut words: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            words.extend(["ip".into(), "netns".into(), "exec".into(), shell_word(ns)]);
        }
        words.push(tool.to_string());
        words.extend(args.iter().map(|a| shell_word(a)));
        words.join(" ")
    }

    /// Runs `tool args` with `stdin`; fails only if it could not start.
    pub fn run(
        &self,
        tool: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Output, DataplaneError> {
        let path = find_tool(tool).ok_or_else(|| missing_tool(tool))?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let ip = find_tool("ip").ok_or_else(|| missing_tool("ip"))?;
                let mut c = Command::new(ip);
                c.args(["netns", "exec", ns]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Tool messages are parsed (line numbers, "No such file"): keep
            // them in English.
            .env("LC_ALL", "C");
        let describe = || self.describe(tool, args);
        let mut child = cmd
            .spawn()
            .map_err(|e| DataplaneError::new(describe(), format!("cannot start: {e}")))?;
        let writer = match (stdin, child.stdin.take()) {
            (Some(text), Some(mut pipe)) => {
                let text = text.to_string();
                // A tool that fails early closes its stdin; the broken pipe
                // is reported through its exit status instead.
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(text.as_bytes());
                }))
            }
            _ => None,
        };
        let out = child
            .wait_with_output()
            .map_err(|e| DataplaneError::new(describe(), format!("waiting for it: {e}")))?;
        if let Some(w) = writer {
            w.join().expect("stdin writer panicked");
        }
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `tool args`; a non-zero exit is an error saying what was run and
    /// what the tool said. Returns stdout.
    pub fn check(
        &self,
        tool: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, DataplaneError> {
        let out = self.run(tool, args, stdin)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(DataplaneError::new(
                self.describe(tool, args),
                out.complaint(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_commands_like_a_shell() {
        let r = Runner::new(Some("kpsim-a".into()));
        assert_eq!(
            r.describe("iptables", &["-C", "INPUT", "--comment", "a b"]),
            "ip netns exec kpsim-a iptables -C INPUT --comment 'a b'"
        );
        assert_eq!(Runner::new(None).describe("nft", &["-f", "-"]), "nft -f -");
    }

    #[test]
    fn a_missing_tool_names_its_package() {
        let err = Runner::new(None)
            .run("iptables-restore-kpsim-missing", &[], None)
            .unwrap_err();
        assert!(err.message.contains("Debian package `iptables`"), "{err}");
        assert_eq!(debian_package("nft"), "nftables");
        assert_eq!(debian_package("conntrack"), "conntrack");
    }

    #[test]
    fn complaint_prefers_stderr_and_names_the_status() {
        let out = Output {
            code: Some(2),
            stdout: "ignored".into(),
            stderr: "bad thing\n".into(),
        };
        assert_eq!(out.complaint(), "bad thing (exit status 2)");
    }
}
