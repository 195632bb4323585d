//! `kpsim apply` and `kpsim cleanup`: the proxier against the real kernel.
//!
//! [`apply`] is [`crate::oneshot::render`] with the host (or a named network
//! namespace) instead of a simulated node: it resolves the node the same way
//! ([`resolve_node`]) and starts the same kube-proxy host
//! ([`KubeProxy`]) over a [`HostKernel`]: the other modes' leftovers are
//! removed as upstream's start-up does, every object is delivered as
//! kube-proxy's informers do, one full sync runs, and the report says what
//! was written and how long it took. [`cleanup`] is upstream's
//! `kube-proxy --cleanup`.
//!
//! **Wall clock:** read here only to say how long an apply took
//! ([`wall_clock_now`]); nothing it measures feeds back into what is
//! written.
//!
//! **Error contract:** [`ApplyError`] says whether the input or the kernel
//! was the problem; a kernel refusal keeps the
//! [`DataplaneError`] (with the payload line, when the tool named one).

use std::time::{Duration, Instant};

use proxier::clock::Timestamp;
use proxier::config::Mode;
use proxier::dataplane::DataplaneError;
use proxier::k8s::IpFamily;
use proxier::kernel::cleanup::{self as kcleanup, CleanupReport};
use proxier::kernel::ipvs::cleanup as ipvs_cleanup;
use proxier::kernel::{Detection, HostKernel, KernelOptions, KernelWrite};
use proxier::node::NodeInfo;

use crate::oneshot::{family_for, resolve_node, service_cidrs, RenderRequest};
use crate::scenario::kube_proxy::KubeProxy;

/// Why an apply or cleanup did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The manifests or flags do not say which node (see `resolve_node`).
    #[error("{0}")]
    Input(String),
    /// The kernel (or a tool) refused or failed.
    #[error("{during}: {error}")]
    Kernel {
        during: &'static str,
        error: DataplaneError,
    },
}

impl ApplyError {
    /// The kernel's error, if that is what this is.
    pub fn dataplane(&self) -> Option<&DataplaneError> {
        match self {
            ApplyError::Kernel { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn kernel(during: &'static str) -> impl FnOnce(DataplaneError) -> ApplyError {
    move |error| ApplyError::Kernel { during, error }
}

/// What one apply did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub mode: Mode,
    pub node: NodeInfo,
    pub family: IpFamily,
    pub netns: Option<String>,
    /// The iptables variant and why it was chosen (iptables mode).
    pub iptables: Option<Detection>,
    pub full: bool,
    pub services: usize,
    pub endpoints: usize,
    /// Every write, in order: restores, transactions, rule commands,
    /// sysctls, nfacct counters.
    pub writes: Vec<KernelWrite>,
    /// Start of the proxier to the end of its first sync.
    pub sync_time: Duration,
    /// The whole apply, including iptables variant detection.
    pub total_time: Duration,
}

impl ApplyReport {
    /// A few lines for a terminal: what was written, and the time.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} mode, node {} ({}), {}{} services, {} endpoints\n",
            self.mode.name(),
            self.node.name,
            self.family.api_name(),
            match &self.netns {
                Some(ns) => format!("netns {ns}, "),
                None => String::new(),
            },
            self.services,
            self.endpoints
        );
        if let Some(d) = &self.iptables {
            s.push_str(&format!("{}: {}\n", d.variant, d.reason));
        }
        for w in &self.writes {
            let size = w
                .input
                .as_ref()
                .map(|i| format!(" <<< {} lines", i.lines().count()))
                .unwrap_or_default();
            let outcome = match &w.outcome {
                Ok(()) => String::new(),
                Err(e) => format!("  FAILED: {e}"),
            };
            s.push_str(&format!("  {}{size}{outcome}\n", w.command));
        }
        s.push_str(&format!(
            "sync took {:.3} s ({:.3} s in all)\n",
            self.sync_time.as_secs_f64(),
            self.total_time.as_secs_f64()
        ));
        s
    }
}

/// The wall clock, for reporting durations only.
#[allow(clippy::disallowed_methods)] // kpsim apply reports how long it took; see the module doc.
fn wall_clock_now() -> Instant {
    Instant::now()
}

/// Runs `f` and returns what it returned and how long it took by the wall
/// clock (for apply-speed measurements: `examples/apply_speed.rs`).
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = wall_clock_now();
    let out = f();
    (out, start.elapsed())
}

/// One full sync of `req`'s manifests into the kernel of `netns` (the
/// caller's own namespace for `None`).
pub fn apply(req: &RenderRequest, netns: Option<&str>) -> Result<ApplyReport, ApplyError> {
    apply_with(
        req,
        &KernelOptions {
            netns: netns.map(str::to_string),
            ..KernelOptions::default()
        },
    )
}

/// [`apply`] with every kernel option (a forced iptables variant, the
/// restore strategy).
pub fn apply_with(req: &RenderRequest, options: &KernelOptions) -> Result<ApplyReport, ApplyError> {
    let start = wall_clock_now();
    let node = resolve_node(req).map_err(|e| ApplyError::Input(format!("{e:#}")))?;
    let family = family_for(req, &node);
    let mode = req.config.mode;
    let mut host = HostKernel::new(options.clone()).map_err(kernel("opening the kernel"))?;
    if mode == Mode::Ipvs {
        // Say plainly what is missing before anything is written.
        host.ipvs.probe().map_err(kernel("checking for IPVS"))?;
    }
    host.take_writes();
    let sync_start = wall_clock_now();
    // The same kube-proxy host `kpsim rules` and the scenarios use:
    // start-up cleanup of the other modes (upstream's `platformCleanup`),
    // the mode's proxier, the informers' initial lists, the first sync.
    let mut kp =
        KubeProxy::new(&req.config, mode, family, node.clone(), &mut host).map_err(|e| {
            match e.downcast::<DataplaneError>() {
                Ok(e) => kernel("starting the proxier")(e),
                Err(e) => ApplyError::Input(format!("{e:#}")),
            }
        })?;
    kp.start(
        &req.manifests.services,
        &req.manifests.endpoint_slices,
        &service_cidrs(&req.manifests),
        Timestamp::ZERO,
        &mut host,
    );
    let summary = match kp.syncs.last().map(|r| r.summary.clone()) {
        Some(Ok(summary)) => summary,
        Some(Err(e)) => return Err(kernel("syncing rules")(e)),
        None => return Err(ApplyError::Input("the proxier did not sync".into())),
    };
    // Upstream logs what a sync tolerated (a refused virtual server or set
    // entry) and goes on; a one-shot apply reports it as the failure it is.
    if let Some(e) = summary.warnings.first() {
        return Err(kernel("syncing rules")(e.clone()));
    }
    let (full, services, endpoints) = (summary.full, summary.services, summary.endpoints);
    let sync_time = sync_start.elapsed();
    Ok(ApplyReport {
        mode,
        node,
        family,
        netns: options.netns.clone(),
        iptables: (mode == Mode::Iptables).then(|| host.detection().clone()),
        full,
        services,
        endpoints,
        writes: host.take_writes(),
        sync_time,
        total_time: start.elapsed(),
    })
}

/// What `kpsim cleanup` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupScope {
    /// Everything every mode leaves (`kube-proxy --cleanup`).
    All,
    /// One mode's leftovers.
    Mode(Mode),
}

/// What a cleanup did.
#[derive(Debug, Clone)]
pub struct CleanupOutcome {
    /// The iptables variant cleaned, and why (when iptables was cleaned).
    pub iptables: Option<Detection>,
    pub report: CleanupReport,
    /// Parts of upstream's cleanup that could not run here (IPVS on a
    /// kernel without it).
    pub not_done: Vec<String>,
}

/// Upstream's `kube-proxy --cleanup` (for [`CleanupScope::All`]), or one
/// mode's part of it, in `netns` (the caller's own namespace for `None`).
/// Failures of single steps are in the outcome's report; the cleanup goes
/// on after them, as upstream's does.
pub fn cleanup(scope: CleanupScope, netns: Option<&str>) -> Result<CleanupOutcome, ApplyError> {
    let (iptables, nft, ipvs) = match scope {
        CleanupScope::All => (true, true, true),
        CleanupScope::Mode(Mode::Iptables) => (true, false, false),
        CleanupScope::Mode(Mode::Nftables) => (false, true, false),
        CleanupScope::Mode(Mode::Ipvs) => (false, false, true),
    };
    let mut host = HostKernel::new(KernelOptions {
        netns: netns.map(str::to_string),
        ..KernelOptions::default()
    })
    .map_err(kernel("opening the kernel"))?;
    let mut report = CleanupReport::default();
    if iptables {
        for family in [IpFamily::V4, IpFamily::V6] {
            kcleanup::iptables_leftovers(host.kernel_iptables(family), &mut report);
        }
    }
    if nft {
        kcleanup::nftables_leftovers(&mut host.nftables, &mut report);
    }
    let mut not_done = Vec::new();
    if ipvs {
        // Upstream's IPVS CleanupLeftovers. Without IPVS in the kernel
        // there are no virtual servers to flush; the rest still runs.
        match host.ipvs.probe() {
            Ok(()) => ipvs_cleanup::virtual_servers(&mut host.ipvs, &mut report),
            Err(e) => not_done.push(format!("IPVS virtual servers: {}", e.message)),
        }
        ipvs_cleanup::dummy_device(&mut host.addresses, &mut report);
        for family in [IpFamily::V4, IpFamily::V6] {
            ipvs_cleanup::iptables(host.kernel_iptables(family), &mut report);
        }
        if proxier::kernel::exec::find_tool("ipset").is_some() {
            ipvs_cleanup::ipsets(&mut host.ipset, &mut report);
        } else {
            not_done.push("ipsets: `ipset` is not installed (Debian package `ipset`)".into());
        }
    }
    Ok(CleanupOutcome {
        iptables: (iptables || ipvs).then(|| host.detection().clone()),
        report,
        not_done,
    })
}
