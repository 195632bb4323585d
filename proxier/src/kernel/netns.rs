//! Named network namespaces (`ip netns`): entering one for in-process work,
//! and owning a throwaway one.
//!
//! Tools run inside a namespace through `ip netns exec NAME` (see
//! [`super::exec`]). In-process work that is bound to a namespace — opening a
//! netlink socket, reading `/proc/sys/net/…` — runs through [`in_netns`]: a
//! short-lived thread joins the namespace with `setns(2)` (which affects only
//! the calling thread), does the work and ends, so the caller's threads never
//! change namespace. A netlink socket keeps the namespace it was created in.
//!
//! [`OwnedNetns`] creates a namespace with a unique name, brings its loopback
//! up, and deletes it when dropped — also when a test panics.
//!
//! **Error contract:** a namespace that does not exist, or that cannot be
//! entered, is a [`DataplaneError`] naming it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::exec::Runner;
use crate::dataplane::DataplaneError;

/// Where `ip netns add NAME` puts the namespace's handle.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Checks that `name` is a namespace `ip netns` knows.
pub fn check_exists(name: &str) -> Result<(), DataplaneError> {
    if name.is_empty() || name.contains('/') || !netns_path(name).exists() {
        return Err(DataplaneError::new(
            format!("ip netns exec {name}"),
            format!(
                "network namespace {name:?} does not exist (create it with `ip netns add {name}`)"
            ),
        ));
    }
    Ok(())
}

/// Runs `f` inside the named namespace (or directly, for `None`) and
/// returns its result.
pub fn in_netns<T, F>(netns: Option<&str>, f: F) -> Result<T, DataplaneError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let Some(name) = netns else {
        return Ok(f());
    };
    check_exists(name)?;
    let handle = File::open(netns_path(name)).map_err(|e| {
        DataplaneError::new(format!("setns {name}"), format!("cannot open handle: {e}"))
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `handle` is an open namespace file for the whole call;
            // setns(2) changes only this thread's namespace, and this thread
            // ends right after `f`.
            let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(DataplaneError::new(
                    format!("setns {name}"),
                    std::io::Error::last_os_error().to_string(),
                ));
            }
            Ok(f())
        })
        .join()
        .expect("namespace worker thread panicked")
    })
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace this process created; deleted on drop.
#[derive(Debug)]
pub struct OwnedNetns {
    name: String,
}

impl OwnedNetns {
    /// Creates `PREFIX-PID-N` (unique within this process, and across
    /// processes by the pid) with its loopback up.
    pub fn create_unique(prefix: &str) -> Result<Self, DataplaneError> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self::create(&format!("{prefix}-{}-{n}", std::process::id()))
    }

    /// Creates the namespace `name` with its loopback up; fails if it
    /// exists already (it is someone else's).
    pub fn create(name: &str) -> Result<Self, DataplaneError> {
        if netns_path(name).exists() {
            return Err(DataplaneError::new(
                format!("ip netns add {name}"),
                "a namespace with this name exists already",
            ));
        }
        Runner::new(None).check("ip", &["netns", "add", name], None)?;
        let ns = OwnedNetns {
            name: name.to_string(),
        };
        ns.runner()
            .check("ip", &["link", "set", "lo", "up"], None)?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A runner for tools inside this namespace.
    pub fn runner(&self) -> Runner {
        Runner::new(Some(self.name.clone()))
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        // Best effort: a drop cannot report, and the namespace may be gone.
        let _ = Runner::new(None).run("ip", &["netns", "delete", &self.name], None);
    }
}
