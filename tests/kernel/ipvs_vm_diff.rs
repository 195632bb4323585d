//! The differential harness in IPVS mode, inside the IPVS VM: the shipped
//! scenarios that run in IPVS mode and seeded generated clusters, each on
//! a namespace cluster whose nodes run the real proxier against the VM
//! kernel's real IPVS, compared with the simulator exactly as the host's
//! `differential` tests compare iptables and nftables runs (this machine's
//! kernel has no IPVS; see [`crate::ipvs_vm`] for the VM).
//!
//! The host side ([`ipvs_differential_in_a_vm`]) boots the VM with the
//! scenarios packed as `/scenarios` and `/run-guest` selecting this job
//! (`KPSIM_VM_JOB=diff`); inside, [`vm_diff_guest_entry`] runs the cases
//! and prints what the host tests print; the host echoes the guest's
//! output and fails on a non-zero verdict.
//!
//! `KPSIM_DIFF_CASES` (default [`DEFAULT_CASES`], sized so the whole test
//! takes about four minutes under TCG on a 2-core machine) and
//! `KPSIM_DIFF_SEED` (default 1) choose the generated cases, and
//! `KPSIM_DIFF_ONLY` (comma-separated names, or `all`) chooses the shipped
//! scenarios (default [`DEFAULT_SHIPPED`]).
//! Generated cases alternate between iptables-legacy and iptables-nft for
//! the IPVS mode's helper rules (by seed, as on the host).
//!
//! Skips with one line when the VM cannot run (see `ipvs_vm`).

use std::path::Path;

use kpsim::kernel_cluster::cases::{generated_case, parallel, planned_cases, CaseResult};
use kpsim::kernel_cluster::compare::unsupported;
use kpsim::kernel_cluster::DiffOptions;
use kpsim::scenario;
use proxier::config::Mode;

use crate::differential::{env_u64, report, Tally};
use crate::ipvs_vm::boot;

/// Generated cases per run unless `KPSIM_DIFF_CASES` says otherwise.
pub const DEFAULT_CASES: u64 = 8;

/// The shipped scenarios run unless `KPSIM_DIFF_ONLY` names others (or
/// `all`): the IPVS-only ones and those that fit the time budget. Under
/// TCG a case takes 20–140 s (the debug simulator runs about 15× slower
/// than on the host, and every `ipset`/`ip`/`iptables-restore` call is an
/// `ip netns exec` plus the tool, ~120 ms); all twelve take about 4.5
/// minutes on three workers.
const DEFAULT_SHIPPED: &[&str] = &[
    "ipvs-graceful",
    "ipvs-schedulers",
    "loadbalancer",
    "no-endpoints",
    "udp-stale",
    "affinity",
    "node-failure",
    "restart",
];

/// Worker threads in the guest (cases mostly wait for timeouts).
const GUEST_WORKERS: usize = 3;

/// Seconds before the VM is killed: room for the shipped scenarios (all
/// of them take about 4.5 minutes) and about a minute per generated case
/// (they take 12–120 s each, three at a time).
fn vm_timeout(cases: u64) -> u32 {
    let cases = u32::try_from(cases).unwrap_or(u32::MAX);
    600_u32.saturating_add(cases.saturating_mul(60))
}

/// The guest's line before the job's output starts.
const START: &str = "KPSIM-VM-DIFF-START";

/// `/run-guest` for this job: `iptables-nft*` linked to the image's
/// `xtables-nft-multi` (only here: the apply job relies on legacy being the
/// only variant), the case count and first seed passed on.
fn guest_script(cases: u64, seed: u64, only: &str, mode: Mode) -> String {
    let mode = mode.name();
    let links: String = ["iptables", "ip6tables"]
        .iter()
        .flat_map(|t| ["", "-save", "-restore"].map(|s| format!("{t}-nft{s}")))
        .map(|l| format!("ln -sf xtables-nft-multi /usr/sbin/{l}\n"))
        .collect();
    format!(
        "#!/bin/sh\n{links}echo {START}\n\
         export KPSIM_VM_JOB=diff KPSIM_SCENARIOS=/scenarios KPSIM_DIFF_CASES={cases} \
         KPSIM_DIFF_SEED={seed} KPSIM_DIFF_ONLY='{only}' KPSIM_DIFF_MODE={mode} RUST_BACKTRACE=1\n\
         exec /kpsim-tests --exact ipvs_vm_diff::vm_diff_guest_entry --nocapture --test-threads 1 -q\n"
    )
}

#[test]
fn ipvs_differential_in_a_vm() {
    let cases = env_u64("KPSIM_DIFF_CASES", DEFAULT_CASES);
    let seed = env_u64("KPSIM_DIFF_SEED", 1);
    // Only these shipped scenarios (comma-separated names), if set.
    let only: String = std::env::var("KPSIM_DIFF_ONLY")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ','))
        .collect();
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let Some(run) = boot(
        "ipvs_differential_in_a_vm",
        &guest_script(cases, seed, &only, diff_mode()),
        &[(&scenarios, "scenarios")],
        vm_timeout(cases),
        2048,
        2,
    ) else {
        return;
    };
    let output: Vec<&str> = run
        .console
        .lines()
        .skip_while(|l| !l.contains(START))
        .skip(1)
        .collect();
    for line in &output {
        println!("{line}");
    }
    println!(
        "ipvs differential vm: kernel {}, {:.1} s from boot to power-off",
        run.kernel,
        run.elapsed.as_secs_f64()
    );
    // The guest's output is above; the whole console only when the guest
    // never started.
    let console = if output.is_empty() {
        &run.console[..]
    } else {
        ""
    };
    assert!(
        run.passed(),
        "the IPVS differential cases in the VM failed (exit {:?}; the guest's output is above){console}\n{}",
        run.exit_code(),
        run.stderr
    );
}

/// The mode the cases run in: IPVS, unless `KPSIM_DIFF_MODE` names
/// another (to tell an environment problem of the VM from an IPVS one).
fn diff_mode() -> Mode {
    std::env::var("KPSIM_DIFF_MODE")
        .ok()
        .and_then(|m| Mode::parse(m.trim()).ok())
        .unwrap_or(Mode::Ipvs)
}

/// Every shipped scenario that runs in IPVS mode (it names none, or names
/// `ipvs`), from `dir`.
fn ipvs_plans(dir: &Path, mode: Mode) -> Result<Vec<scenario::Plan>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let mut plans = Vec::new();
    for p in paths {
        let file = p.display().to_string();
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{file}: {e}"))?;
        let named = scenario::plan::parse(&file, &text)
            .map_err(|e| e.to_string())?
            .modes;
        if named.is_empty() || named.iter().any(|m| m == mode.name()) {
            plans.push(scenario::load(&file, &text).map_err(|e| e.to_string())?);
        }
    }
    Ok(plans)
}

/// Runs `case` over `items` on the guest's workers, printing a line as
/// each finishes (a VM that runs out of time still shows how far it got).
fn run_cases<T: Sync>(items: &[T], case: impl Fn(&T) -> CaseResult + Sync) -> Vec<CaseResult> {
    parallel(items, GUEST_WORKERS, |item| {
        let r = case(item);
        let verdict = match &r.result {
            Ok(c) if c.disagreements.is_empty() => "agreed".to_string(),
            Ok(c) => format!("{} disagreements", c.disagreements.len()),
            Err(e) => format!("did not run: {e}"),
        };
        println!("KPSIM-VM-DIFF-DONE {}: {verdict}", r.name);
        r
    })
    .into_iter()
    .map(|(mut r, took)| {
        r.elapsed = took;
        r
    })
    .collect()
}

/// The guest's entry point: runs only inside the VM, as this job
/// (`KPSIM_VM_JOB=diff`); on a host it returns at once.
#[test]
fn vm_diff_guest_entry() {
    if std::env::var("KPSIM_VM_JOB").as_deref() != Ok("diff") {
        return;
    }
    let dir = std::env::var("KPSIM_SCENARIOS").unwrap_or_else(|_| "/scenarios".into());
    let only = std::env::var("KPSIM_DIFF_ONLY").unwrap_or_default();
    let mode = diff_mode();
    let plans = ipvs_plans(Path::new(&dir), mode).unwrap_or_else(|e| panic!("{e}"));
    let plans = plans.into_iter().filter(|p| {
        let wanted = |o: &str| o.trim() == p.name || o.trim() == "all";
        match only.as_str() {
            "" => DEFAULT_SHIPPED.contains(&p.name.as_str()),
            list => list.split(',').any(wanted),
        }
    });
    let mut shipped = Vec::new();
    for plan in plans {
        match unsupported(&plan, mode) {
            Some(why) => println!("  {} ({}): skipped: {why}", plan.name, mode.name()),
            None => {
                let opts = DiffOptions {
                    mode,
                    ..DiffOptions::default()
                };
                shipped.push((plan, opts));
            }
        }
    }
    let results = run_cases(&shipped, |c| {
        planned_cases(std::slice::from_ref(c), 1)
            .pop()
            .expect("one case, one result")
    });
    let Tally {
        mut failures, ran, ..
    } = report(&results);
    println!(
        "shipped scenarios ({}): {ran} runs compared, {} with disagreements",
        mode.name(),
        failures.len()
    );
    let cases = env_u64("KPSIM_DIFF_CASES", DEFAULT_CASES);
    let first = env_u64("KPSIM_DIFF_SEED", 1);
    let seeds: Vec<u64> = (first..first + cases).collect();
    let results = run_cases(&seeds, |seed| {
        generated_case(*seed, &DiffOptions::default(), Some(mode))
    });
    let Tally {
        failures: generated_failures,
        ran: generated_ran,
        probes,
    } = report(&results);
    println!(
        "generated scenarios ({}): {generated_ran} cases, {probes} probes, {} with disagreements",
        mode.name(),
        generated_failures.len()
    );
    failures.extend(generated_failures);
    let mut problems = failures;
    if only.is_empty() && ran < DEFAULT_SHIPPED.len() {
        problems.push(format!("only {ran} shipped scenario runs in IPVS mode"));
    }
    if generated_ran as u64 != cases {
        problems.push(format!("{generated_ran} of {cases} generated cases ran"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
