//! Apply speed (issue 6): a full sync of N generated services into a
//! throwaway network namespace, with `kpsim apply`, next to the plain tool
//! applying the same payload — `iptables-restore --noflush --counters`
//! (what upstream runs) or `nft -f`.
//!
//! ```text
//! sudo cargo run --release --example apply_speed -- [--sizes 1000,10000,30000]
//!     [--modes legacy,nft,nftables] [--timeout SECONDS]
//! ```
//!
//! Per mode and size, each in fresh namespaces: `kpsim apply` (first full
//! sync), `kpsim re-apply` (a second full sync onto those rules, as after a
//! restart), and the plain tool on kpsim's payload, killed after the
//! timeout. When the plain restore finishes, the kube-proxy chains of both
//! namespaces are compared (`same state`). nftables rows run kpsim only if
//! the plain `nft -f` finished: kpsim writes the same transaction. Needs
//! root, iproute2, iptables, nftables and nfacct.

use proxier::provider::Provider;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kpsim::generate::{cluster, Shape};
use kpsim::kernel_apply::{apply_with, timed};
use kpsim::oneshot::RenderRequest;
use proxier::clock::Timestamp;
use proxier::config::{Config, Mode};
use proxier::dataplane::recording::RecordingKernel;
use proxier::k8s::IpFamily;
use proxier::kernel::exec::find_tool;
use proxier::kernel::iptables::IptablesTool;
use proxier::kernel::{IptablesVariant, KernelOptions, OwnedNetns};
use proxier::nftables;

fn request(services: usize, mode: Mode) -> RenderRequest {
    RenderRequest {
        config: Config {
            mode,
            cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()],
            ..Config::default()
        },
        manifests: cluster(&Shape {
            services,
            endpoints_per_service: 1,
            nodes: 10,
            seed: 1,
        }),
        node: Some("node-0".into()),
        node_ips: vec!["192.168.0.10".parse().unwrap()],
        family: Some(IpFamily::V4),
    }
}

/// Runs `tool args < stdin` in `ns`; `None` if it was killed at `timeout`.
fn run_with_timeout(
    ns: &OwnedNetns,
    tool: &str,
    args: &[&str],
    stdin: &str,
    timeout: Duration,
) -> Option<Duration> {
    let path = find_tool(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
    let (result, took) = timed(|| {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the tool");
        let pid = child.id() as i32;
        let mut pipe = child.stdin.take().unwrap();
        let text = stdin.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(timeout) {
            Ok(out) => {
                let out = out.expect("waiting for the tool");
                assert!(
                    out.status.success(),
                    "{tool} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                true
            }
            Err(_) => {
                // SAFETY: kill(2) on our own child's pid; it has not been
                // reaped (the waiting thread is still blocked on it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = rx.recv();
                false
            }
        }
    });
    result.then_some(took)
}

/// The kube-proxy chains (not built-in, not the canary) of nat and filter,
/// with their rules: what the payload alone decides.
fn kube_view(save: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut view: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut table = String::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if table != "nat" && table != "filter" {
            continue;
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut w = decl.split_whitespace();
            let (name, policy) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            if policy == "-" && name != "KUBE-PROXY-CANARY" {
                view.entry((table.clone(), name.to_string())).or_default();
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or("");
            if let Some(rules) = view.get_mut(&(table.clone(), chain.to_string())) {
                rules.push(line.to_string());
            }
        }
    }
    view
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

struct Row {
    mode: String,
    services: usize,
    lines: usize,
    apply: String,
    reapply: String,
    plain: String,
    same: String,
}

fn iptables_row(variant: IptablesVariant, services: usize, timeout: Duration) -> Row {
    let req = request(services, Mode::Iptables);
    let ns = OwnedNetns::create_unique("kpsim-speed").unwrap();
    let opts = KernelOptions {
        netns: Some(ns.name().to_string()),
        iptables_variant: Some(variant),
        ..KernelOptions::default()
    };
    let first = apply_with(&req, &opts).unwrap_or_else(|e| panic!("apply: {e}"));
    let payload = first
        .writes
        .iter()
        .rev()
        .find_map(|w| w.input.clone().filter(|i| i.starts_with("*filter")))
        .expect("a restore payload");
    let save = variant.tool(IpFamily::V4, IptablesTool::Save);
    let applied = kube_view(&ns.runner().check(&save, &[], None).unwrap());
    let second = apply_with(&req, &opts).unwrap_or_else(|e| panic!("re-apply: {e}"));

    let plain_ns = OwnedNetns::create_unique("kpsim-speed").unwrap();
    for counter in [
        proxier::iptables::NFACCT_CT_STATE_INVALID_DROPPED,
        proxier::iptables::NFACCT_LOCALHOST_NODEPORT_ACCEPTED,
    ] {
        let _ = plain_ns.runner().check("nfacct", &["add", counter], None);
    }
    let restore = variant.tool(IpFamily::V4, IptablesTool::Restore);
    let wait: &[&str] = match variant {
        IptablesVariant::Legacy => &["-w", "5", "-W", "100000"],
        IptablesVariant::Nft => &["-w", "5"],
    };
    let args: Vec<&str> = wait
        .iter()
        .copied()
        .chain(["--noflush", "--counters"])
        .collect();
    let plain = run_with_timeout(&plain_ns, &restore, &args, &payload, timeout);
    let same = match plain {
        Some(_) => {
            let plain = kube_view(&plain_ns.runner().check(&save, &[], None).unwrap());
            if applied == plain { "yes" } else { "NO" }.to_string()
        }
        None => "n/a".into(),
    };
    let fast = first.writes.iter().any(|w| w.command.contains("merged"));
    Row {
        mode: format!("iptables-{}", variant.name()),
        services,
        lines: payload.lines().count(),
        apply: format!(
            "{}{}",
            secs(first.total_time),
            if fast { " (merged)" } else { "" }
        ),
        reapply: secs(second.total_time),
        plain: plain.map_or(format!("> {} s (killed)", timeout.as_secs()), secs),
        same,
    }
}

fn nftables_row(services: usize, timeout: Duration) -> Row {
    let req = request(services, Mode::Nftables);
    // The transaction kpsim writes, rendered without a kernel.
    let node = kpsim::oneshot::resolve_node(&req).unwrap();
    let options = nftables::Options::from_config(&req.config, IpFamily::V4, &node);
    let mut p = nftables::Proxier::new(IpFamily::V4, node, options);
    for s in &req.manifests.services {
        p.on_service(&s.name, Some(s));
    }
    for s in &req.manifests.endpoint_slices {
        p.on_endpoint_slice(&s.name, Some(s));
    }
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    let mut recording = RecordingKernel::default();
    p.sync(Timestamp::ZERO, &mut recording).expect("rendering");
    let transaction = recording.nftables.transactions.join("");

    let plain_ns = OwnedNetns::create_unique("kpsim-speed").unwrap();
    let plain = run_with_timeout(&plain_ns, "nft", &["-f", "-"], &transaction, timeout);
    let mut row = Row {
        mode: "nftables".into(),
        services,
        lines: transaction.lines().count(),
        apply: "not run".into(),
        reapply: "not run".into(),
        plain: plain.map_or(format!("> {} s (killed)", timeout.as_secs()), secs),
        same: "n/a".into(),
    };
    if plain.is_some() {
        let ns = OwnedNetns::create_unique("kpsim-speed").unwrap();
        let opts = KernelOptions {
            netns: Some(ns.name().to_string()),
            ..KernelOptions::default()
        };
        let first = apply_with(&req, &opts).unwrap_or_else(|e| panic!("apply: {e}"));
        let list = |ns: &OwnedNetns| {
            ns.runner()
                .check("nft", &["list", "table", "ip", "kube-proxy"], None)
                .unwrap()
        };
        // Compared before the re-apply: a restarted proxier re-creates its
        // base chains, which moves them in the listing.
        row.same = if list(&ns) == list(&plain_ns) {
            "yes"
        } else {
            "NO"
        }
        .into();
        let second = apply_with(&req, &opts).unwrap_or_else(|e| panic!("re-apply: {e}"));
        row.apply = secs(first.total_time);
        row.reapply = secs(second.total_time);
    }
    row
}

fn main() {
    let mut sizes = vec![1_000, 10_000, 30_000];
    let mut modes = vec!["legacy".to_string(), "nft".into(), "nftables".into()];
    let mut timeout = Duration::from_secs(60);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--sizes" => {
                sizes = value
                    .split(',')
                    .map(|s| s.parse().expect("a number"))
                    .collect()
            }
            "--modes" => modes = value.split(',').map(str::to_string).collect(),
            "--timeout" => timeout = Duration::from_secs(value.parse().expect("seconds")),
            other => panic!("unknown flag {other}"),
        }
    }
    println!("| mode | services | payload lines | kpsim apply | kpsim re-apply | plain restore of the payload | same state |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for mode in &modes {
        for &n in &sizes {
            let row = match mode.as_str() {
                "nftables" => nftables_row(n, timeout),
                v => iptables_row(
                    IptablesVariant::parse(v).expect("legacy, nft or nftables"),
                    n,
                    timeout,
                ),
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.mode, row.services, row.lines, row.apply, row.reapply, row.plain, row.same
            );
        }
    }
}
