//! What every kernel test needs: the capability check that skips with one
//! line, a throwaway namespace, the host-rules guard, and the simulator's
//! view of the same input.

use proxier::provider::Provider;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use kpsim::oneshot::{resolve_node, RenderRequest};
use kpsim::simkernel::SimKernel;
use proxier::clock::Timestamp;
use proxier::config::{self, Config};
use proxier::iptables::{Options, Proxier};
use proxier::k8s::{self, IpFamily};
use proxier::kernel::exec::{debian_package, find_tool, Runner};
use proxier::kernel::{IptablesVariant, OwnedNetns};
use sim::netfilter::Variant;

/// Tools every kernel test runs.
pub const BASE_TOOLS: &[&str] = &["ip"];
/// Both iptables variants' tools, IPv4 and IPv6.
pub const IPTABLES_TOOLS: &[&str] = &[
    "iptables-legacy",
    "iptables-legacy-save",
    "iptables-legacy-restore",
    "iptables-nft",
    "iptables-nft-save",
    "iptables-nft-restore",
    "ip6tables-legacy-save",
    "ip6tables-legacy-restore",
    "ip6tables-nft-save",
    "ip6tables-nft-restore",
];

/// `None` (after printing one line saying what is missing) unless we are
/// root and every tool is installed.
pub fn require(test: &str, tools: &[&str]) -> Option<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!("skipping kernel test {test}: needs root (running as uid {euid})");
        return None;
    }
    let missing: Vec<String> = BASE_TOOLS
        .iter()
        .chain(tools)
        .filter(|t| find_tool(t).is_none())
        .map(|t| format!("`{t}` (Debian package {})", debian_package(t)))
        .collect();
    if !missing.is_empty() {
        println!(
            "skipping kernel test {test}: missing {}",
            missing.join(", ")
        );
        return None;
    }
    if let Err(why) = kernel_support(tools) {
        println!("skipping kernel test {test}: {why}");
        return None;
    }
    Some(())
}

/// Whether this kernel lets us make namespaces and has what the tools
/// need (checked once per tool, in a probe namespace).
fn kernel_support(tools: &[&str]) -> Result<(), String> {
    static PROBES: Mutex<BTreeMap<String, Result<(), String>>> = Mutex::new(BTreeMap::new());
    let mut probes = PROBES.lock().unwrap_or_else(|e| e.into_inner());
    let mut wanted: Vec<(&str, &[&str])> = vec![("ip", &["link", "show", "lo"])];
    for (tool, args) in [
        ("iptables-legacy", &["-w", "5", "-t", "nat", "-S"][..]),
        ("iptables-nft", &["-t", "nat", "-S"][..]),
        ("nft", &["list", "ruleset"][..]),
        ("nfacct", &["list"][..]),
    ] {
        if tools.contains(&tool) {
            wanted.push((tool, args));
        }
    }
    let todo: Vec<_> = wanted
        .iter()
        .filter(|(t, _)| !probes.contains_key(*t))
        .collect();
    if !todo.is_empty() {
        match OwnedNetns::create_unique("kpsim-probe") {
            Err(e) => {
                let why = format!("cannot create a network namespace ({e})");
                for (t, _) in &todo {
                    probes.insert(t.to_string(), Err(why.clone()));
                }
            }
            Ok(ns) => {
                for (tool, args) in todo {
                    let result = ns
                        .runner()
                        .check(tool, args, None)
                        .map(|_| ())
                        .map_err(|e| format!("the kernel does not support `{tool}` here ({e})"));
                    probes.insert(tool.to_string(), result);
                }
            }
        }
    }
    wanted.iter().try_for_each(|(t, _)| probes[*t].clone())
}

/// A new namespace for one test; deleted when dropped.
pub fn netns() -> OwnedNetns {
    OwnedNetns::create_unique("kpsim-test").expect("creating a test namespace")
}

/// Drops the lines that change without anyone writing rules: comments with
/// timestamps, and packet counters.
pub fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = if line.starts_with(':') {
            match line.rfind(" [") {
                Some(i) => format!("{} [0:0]", &line[..i]),
                None => line.to_string(),
            }
        } else {
            strip_nft_counters(line)
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn strip_nft_counters(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut kept = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if (words[i] == "packets" || words[i] == "bytes")
            && words.get(i + 1).is_some_and(|w| w.parse::<u64>().is_ok())
        {
            i += 2;
            continue;
        }
        kept.push(words[i]);
        i += 1;
    }
    kept.join(" ")
}

/// The host namespace's rulesets when a test started.
pub struct HostRules(Vec<(String, String)>);

impl HostRules {
    pub fn capture() -> HostRules {
        let host = Runner::new(None);
        let mut all = Vec::new();
        for (tool, args) in [
            ("iptables-legacy-save", &[][..]),
            ("ip6tables-legacy-save", &[][..]),
            ("iptables-nft-save", &[][..]),
            ("ip6tables-nft-save", &[][..]),
            ("nft", &["list", "ruleset"][..]),
        ] {
            if find_tool(tool).is_none() {
                continue;
            }
            let out = host
                .run(tool, args, None)
                .expect("reading the host's rules");
            all.push((
                host.describe(tool, args),
                normalize(&format!("{}{}", out.stdout, out.stderr)),
            ));
        }
        HostRules(all)
    }

    /// Panics, showing the difference, if the host's rules changed.
    pub fn assert_unchanged(&self) {
        let now = HostRules::capture();
        for ((what, before), (_, after)) in self.0.iter().zip(&now.0) {
            assert!(
                before == after,
                "the host namespace's rules changed ({what}):\n{}",
                diff(before, after)
            );
        }
    }
}

/// The lines only in `a` (`-`) and only in `b` (`+`), in order.
pub fn diff(a: &str, b: &str) -> String {
    let la: Vec<&str> = a.lines().collect();
    let lb: Vec<&str> = b.lines().collect();
    let mut out = String::new();
    for l in &la {
        if !lb.contains(l) {
            out.push_str(&format!("- {l}\n"));
        }
    }
    for l in &lb {
        if !la.contains(l) {
            out.push_str(&format!("+ {l}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("(same lines, different order)\n");
    }
    out
}

/// A manifest set from `tests/manifests/` with its config, if any.
pub fn manifest_request(path: &Path) -> RenderRequest {
    let text = std::fs::read_to_string(path).unwrap();
    let manifests = k8s::load_str(&path.display().to_string(), &text).expect("manifest loads");
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let config_path = path.with_file_name(format!("{stem}.config.yaml"));
    let config = if config_path.exists() {
        let text = std::fs::read_to_string(&config_path).unwrap();
        config::load_str(&config_path.display().to_string(), &text).expect("config loads")
    } else {
        Config::default()
    };
    RenderRequest {
        config,
        manifests,
        ..RenderRequest::default()
    }
}

/// Every manifest set in `tests/manifests/`, sorted.
pub fn manifest_sets() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let mut sets: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.ends_with(".yaml") || name.ends_with(".json")) && !name.ends_with(".config.yaml")
        })
        .collect();
    sets.sort();
    sets
}

/// The family the request renders for.
pub fn family_of(req: &RenderRequest) -> IpFamily {
    let node = resolve_node(req).expect("node resolves");
    req.family
        .or_else(|| node.ips.first().map(IpFamily::of))
        .unwrap_or(IpFamily::V4)
}

/// What the simulator's `iptables-save` prints after the same full sync
/// on a fresh node of `variant` (`kpsim rules --format save`).
pub fn simulated_save(req: &RenderRequest, variant: IptablesVariant) -> String {
    let node = resolve_node(req).expect("node resolves");
    let family = family_of(req);
    let variant = match variant {
        IptablesVariant::Legacy => Variant::Legacy,
        IptablesVariant::Nft => Variant::Nft,
    };
    let mut sim_node = sim::node::Node::new(&node.name, 0, variant);
    let mut side = kpsim::simkernel::KernelSide::default();
    // The real kernel in the test namespace has no nfacct counters unless
    // the `nfacct` tool could create them; make the simulated node agree.
    if find_tool("nfacct").is_none() {
        side.nfacct_unavailable = vec![
            proxier::iptables::NFACCT_CT_STATE_INVALID_DROPPED.into(),
            proxier::iptables::NFACCT_LOCALHOST_NODEPORT_ACCEPTED.into(),
        ];
    }
    let mut kernel = SimKernel::new(&mut sim_node, &mut side, sim::time::Instant::ZERO);
    let options = Options::from_config(&req.config, family, &node);
    let mut p = Proxier::new(family, node, options, &mut kernel).expect("proxier starts");
    for s in &req.manifests.services {
        p.on_service(&s.name, Some(s));
    }
    for s in &req.manifests.endpoint_slices {
        p.on_endpoint_slice(&s.name, Some(s));
    }
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    p.sync(Timestamp::ZERO, &mut kernel)
        .expect("simulated sync");
    sim_node.iptables_save(match family {
        IpFamily::V4 => sim::netfilter::Family::Ipv4,
        IpFamily::V6 => sim::netfilter::Family::Ipv6,
    })
}
