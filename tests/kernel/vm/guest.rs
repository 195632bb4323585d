//! The checks that run inside the IPVS VM (as root, in its only kernel).
//!
//! Per manifest set: `kpsim apply --mode ipvs`, then the kernel's
//! `ipvsadm -Ln` must equal what `kpsim rules --mode ipvs` prints for the
//! same input; `ipset list` must too, after one documented normalisation
//! ([`normalize_ipset`]); `kube-ipvs0` must hold the same addresses. Real
//! connections from a client namespace to a virtual server must reach its
//! real servers (every one under `rr`; one only under persistence). Then
//! `kpsim cleanup --mode ipvs` must leave no virtual server, no
//! `kube-ipvs0`, no `KUBE-` set and no `KUBE-` chain.
//!
//! Every failure is collected (with both sides) and returned; a progress
//! line `KPSIM-VM-CHECK ...` is printed for each check that held.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kpsim::kernel_cluster::servers::{parse_answer, PodServers};
use proxier::kernel::exec::Runner;
use proxier::kernel::netns::in_netns;
use proxier::kernel::OwnedNetns;

/// A manifest set and the virtual server to send traffic to.
struct Case {
    file: &'static str,
    /// `(vip, port, connections, expect persistence)`.
    traffic: Option<(&'static str, u16, usize, bool)>,
}

const CASES: &[Case] = &[
    Case {
        file: "clusterip.yaml",
        traffic: Some(("10.96.0.10", 80, 12, false)),
    },
    Case {
        file: "externalips-affinity.yaml",
        traffic: Some(("10.96.3.2", 80, 8, true)),
    },
    Case {
        file: "nodeport-local.yaml",
        traffic: None,
    },
];

fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, String> {
    Runner::new(None)
        .check("ip", args, None)
        .map_err(|e| e.to_string())
}

/// A section of `kpsim rules --mode ipvs` output: the text after the
/// `# TITLE` line up to the next `# ` title or the iptables payload.
pub fn section(rules: &str, title: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in rules.lines() {
        if let Some(t) = line.strip_prefix("# ") {
            inside = t == title;
            continue;
        }
        if inside && line.starts_with('*') {
            break;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim_end_matches('\n').to_string() + "\n"
}

/// `ipset list` text made comparable, for three justified differences:
/// - `Size in memory:` (an allocation size) is dropped: the simulator does
///   not model it;
/// - a hash set's `initval 0x…` (its random hash seed, printed in the
///   `Header:`) is dropped, and its members are sorted (the kernel lists
///   them in the order of that random hash);
/// - `Revision:` is dropped: it is the set type's revision in the running
///   kernel (the VM's 6.1 has `hash:ip,port` revision 6, `hash:ip` 5; 6.3
///   and later, which the simulator prints, have 7 and 6).
pub fn normalize_ipset(text: &str) -> String {
    let mut out = Vec::new();
    let mut members: Vec<String> = Vec::new();
    let mut in_members = false;
    let flush = |out: &mut Vec<String>, members: &mut Vec<String>| {
        members.sort();
        out.append(members);
    };
    for line in text.lines() {
        if line.starts_with("Size in memory:") || line.starts_with("Revision:") {
            continue;
        }
        let line = match line.find(" initval 0x") {
            Some(i) if line.starts_with("Header:") => {
                let rest = &line[i + " initval 0x".len()..];
                let tail = rest.trim_start_matches(|c: char| c.is_ascii_hexdigit());
                format!("{}{tail}", &line[..i])
            }
            _ => line.to_string(),
        };
        let line = line.as_str();
        if in_members && !line.is_empty() {
            members.push(line.to_string());
            continue;
        }
        if in_members {
            flush(&mut out, &mut members);
        }
        out.push(line.to_string());
        in_members = line == "Members:";
    }
    flush(&mut out, &mut members);
    out.join("\n").trim_end_matches('\n').to_string() + "\n"
}

#[test]
fn ipset_normalisation_keeps_what_matters() {
    let kernel = "Name: KUBE-CLUSTER-IP\nType: hash:ip,port\nRevision: 6\n\
        Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x668c1afb\n\
        Size in memory: 440\nReferences: 3\nNumber of entries: 2\nMembers:\n\
        10.96.3.2,tcp:80\n10.96.3.1,tcp:7000\n\n";
    let sim = "Name: KUBE-CLUSTER-IP\nType: hash:ip,port\nRevision: 7\n\
        Header: family inet hashsize 1024 maxelem 65536 bucketsize 12\n\
        References: 3\nNumber of entries: 2\nMembers:\n\
        10.96.3.1,tcp:7000\n10.96.3.2,tcp:80\n";
    assert_eq!(normalize_ipset(kernel), normalize_ipset(sim));
    // A different member or reference count still differs.
    assert_ne!(
        normalize_ipset(kernel),
        normalize_ipset(&sim.replace("References: 3", "References: 2"))
    );
}

fn compare(what: &str, kernel: &str, sim: &str, failures: &mut Vec<String>) {
    if kernel == sim {
        println!(
            "KPSIM-VM-CHECK ok: {what} identical ({} lines)",
            kernel.lines().count()
        );
    } else {
        failures.push(format!(
            "{what} differs\n--- kernel\n{kernel}--- kpsim rules\n{sim}"
        ));
    }
}

fn addresses(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("inet ")
                .or_else(|| l.strip_prefix("inet6 "))?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .collect()
}

/// A namespace with `addr` on a veth whose other end is in the VM's root
/// namespace, routed both ways (`169.254.1.1` is the root side's address).
fn attach(ns: &OwnedNetns, index: usize, addr: IpAddr) -> Result<(), String> {
    let host_if = format!("kv{index}");
    ip(&[
        "link",
        "add",
        &host_if,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns.name(),
    ])?;
    ip(&["addr", "add", "169.254.1.1/32", "dev", &host_if])?;
    ip(&["link", "set", &host_if, "up"])?;
    ip(&["route", "add", &format!("{addr}/32"), "dev", &host_if])?;
    let r = ns.runner();
    let run = |args: &[&str]| r.check("ip", args, None).map_err(|e| e.to_string());
    run(&["addr", "add", &format!("{addr}/32"), "dev", "eth0"])?;
    run(&["link", "set", "eth0", "up"])?;
    run(&["route", "add", "169.254.1.1", "dev", "eth0"])?;
    run(&[
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ])?;
    Ok(())
}

/// The destinations of `vip:port` in `ipvsadm -Ln` text.
fn destinations(ipvsadm: &str, vip: &str, port: u16) -> Vec<SocketAddr> {
    let head = format!("TCP  {vip}:{port} ");
    ipvsadm
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| l.starts_with("  ->"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// One request over a new connection from the client namespace; the pod
/// that answered.
fn ask(client: &str, to: SocketAddr) -> Result<String, String> {
    in_netns(Some(client), move || -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"who\n").map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(&s)
            .read_line(&mut line)
            .map_err(|e| format!("reading from {to}: {e}"))?;
        parse_answer(&line)
            .map(|(pod, _)| pod)
            .ok_or_else(|| format!("bad answer {line:?} from {to}"))
    })
    .map_err(|e| e.to_string())?
}

/// Real connections to `vip:port` through IPVS.
fn traffic(
    ipvsadm: &str,
    (vip, port, n, persistent): (&str, u16, usize, bool),
    failures: &mut Vec<String>,
) -> Result<(), String> {
    let dests = destinations(ipvsadm, vip, port);
    if dests.is_empty() {
        return Err(format!("no destinations of {vip}:{port} in ipvsadm -Ln"));
    }
    let mut namespaces = Vec::new();
    let mut servers = Vec::new();
    for (i, d) in dests.iter().enumerate() {
        let ns = OwnedNetns::create_unique("kpsim-pod").map_err(|e| e.to_string())?;
        attach(&ns, i, d.ip())?;
        servers.push(
            PodServers::start(&d.ip().to_string(), ns.name(), false, &[d.port()], &[])
                .map_err(|e| e.to_string())?,
        );
        namespaces.push(ns);
    }
    let client = OwnedNetns::create_unique("kpsim-client").map_err(|e| e.to_string())?;
    attach(&client, dests.len(), "10.0.0.2".parse().unwrap())?;
    let to = SocketAddr::new(vip.parse().unwrap(), port);
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(ask(client.name(), to)?);
    }
    let distinct: BTreeSet<&String> = seen.iter().collect();
    let want: BTreeSet<String> = dests.iter().map(|d| d.ip().to_string()).collect();
    let ok = if persistent {
        distinct.len() == 1
    } else {
        distinct.len() == want.len() && distinct.iter().all(|p| want.contains(*p))
    };
    if ok {
        println!(
            "KPSIM-VM-CHECK ok: {n} connections to {to} reached {:?}{}",
            distinct,
            if persistent {
                " (persistent: one)"
            } else {
                " (rr: every real server)"
            }
        );
    } else {
        failures.push(format!(
            "connections to {to}: answers {seen:?}, real servers {want:?}, persistent {persistent}"
        ));
    }
    drop(servers);
    for i in 0..=dests.len() {
        let _ = ip(&["link", "delete", &format!("kv{i}")]);
    }
    Ok(())
}

fn case(kpsim: &Path, dir: &Path, c: &Case, failures: &mut Vec<String>) -> Result<(), String> {
    let file = dir.join(c.file);
    let config = dir.join(c.file.replace(".yaml", ".config.yaml"));
    let mut args: Vec<String> = vec!["--mode".into(), "ipvs".into()];
    if config.exists() {
        args.extend(["--config".into(), config.display().to_string()]);
    }
    args.push(file.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rules = sh(
        &kpsim.display().to_string(),
        &[&["rules"], &args[..]].concat(),
    )?;
    // The node's own addresses, on a device of their own (the simulated
    // node has them on eth0).
    let req = crate::support::manifest_request(&file);
    let node = kpsim::oneshot::resolve_node(&req).map_err(|e| format!("{e:#}"))?;
    ip(&["link", "add", "node0", "type", "dummy"])?;
    ip(&["link", "set", "node0", "up"])?;
    for a in &node.ips {
        let p = if a.is_ipv4() { 32 } else { 128 };
        ip(&["addr", "add", &format!("{a}/{p}"), "dev", "node0"])?;
    }
    let applied = sh(
        &kpsim.display().to_string(),
        &[&["apply"], &args[..]].concat(),
    )?;
    println!(
        "KPSIM-VM-CHECK ok: {}: kpsim apply --mode ipvs ({} lines: {})",
        c.file,
        applied.lines().count(),
        applied.lines().last().unwrap_or_default()
    );
    let ipvsadm = sh("ipvsadm", &["-Ln"])?;
    compare(
        &format!("{}: ipvsadm -Ln", c.file),
        &ipvsadm,
        &section(&rules, "ipvsadm -Ln"),
        failures,
    );
    compare(
        &format!("{}: ipset list", c.file),
        &normalize_ipset(&sh("ipset", &["list"])?),
        &normalize_ipset(&section(&rules, "ipset list")),
        failures,
    );
    let bound = addresses(&ip(&["addr", "show", "dev", "kube-ipvs0"])?);
    let sim_bound = addresses(&section(&rules, "ip addr show kube-ipvs0"));
    if bound == sim_bound {
        println!("KPSIM-VM-CHECK ok: {}: kube-ipvs0 holds {bound:?}", c.file);
    } else {
        failures.push(format!(
            "{}: kube-ipvs0 holds {bound:?}, kpsim rules says {sim_bound:?}",
            c.file
        ));
    }
    if let Some(t) = c.traffic {
        traffic(&ipvsadm, t, failures)?;
    }
    sh(&kpsim.display().to_string(), &["cleanup", "--mode", "ipvs"])?;
    let left_vs = sh("ipvsadm", &["-Ln"])?;
    let left_sets = sh("ipset", &["list", "-n"])?;
    let dev_gone = Runner::new(None)
        .run("ip", &["link", "show", "kube-ipvs0"], None)
        .is_ok_and(|o| !o.success());
    let chains: String = ["iptables-legacy-save", "ip6tables-legacy-save"]
        .iter()
        .map(|t| sh(t, &[]).unwrap_or_default())
        .collect::<String>()
        .lines()
        .filter(|l| l.contains("KUBE-"))
        .map(|l| format!("{l}\n"))
        .collect();
    let vs_left = left_vs.lines().count() > 3;
    let sets_left = left_sets.lines().any(|l| l.starts_with("KUBE-"));
    if !vs_left && !sets_left && dev_gone && chains.is_empty() {
        println!("KPSIM-VM-CHECK ok: {}: cleanup --mode ipvs left no virtual server, set, kube-ipvs0 or KUBE- chain", c.file);
    } else {
        failures.push(format!(
            "{}: after cleanup: ipvsadm -Ln\n{left_vs}ipset list -n\n{left_sets}kube-ipvs0 gone: {dev_gone}\nKUBE- lines:\n{chains}",
            c.file
        ));
    }
    ip(&["link", "delete", "node0"])?;
    Ok(())
}

/// Every check; the failures, if any.
pub fn run() -> Result<(), Vec<String>> {
    let kpsim = PathBuf::from(std::env::var("KPSIM_BIN").unwrap_or_else(|_| "/kpsim".into()));
    let dir =
        PathBuf::from(std::env::var("KPSIM_MANIFESTS").unwrap_or_else(|_| "/manifests".into()));
    let mut failures = Vec::new();
    for c in CASES {
        if let Err(e) = case(&kpsim, &dir, c, &mut failures) {
            failures.push(format!("{}: {e}", c.file));
            let _ = sh(&kpsim.display().to_string(), &["cleanup", "--mode", "ipvs"]);
            let _ = ip(&["link", "delete", "node0"]);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}
