//! Running many differential cases at once: generated scenarios by seed, or
//! planned ones, spread over worker threads (each case builds its own
//! namespaces, so cases are independent; most of a case's time is spent
//! waiting for dropped connections to time out, so workers overlap well).
//!
//! Must never: stop at the first failing case — every case runs and reports.
//!
//! Error contract: a case that cannot run is an `Err` in its [`CaseResult`];
//! the caller decides whether that is a skip or a failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use proxier::config::Mode;
use proxier::kernel::IptablesVariant;

use super::{differential, ClusterError, Comparison, DiffOptions};
use crate::scenario::plan::Plan;
use crate::scenario_gen;

/// One case's outcome.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    /// The scenario text, for generated cases (to rerun a failure).
    pub text: Option<String>,
    pub result: Result<Comparison, ClusterError>,
    /// Wall-clock time the case took (both sides).
    pub elapsed: Duration,
}

impl CaseResult {
    /// Ran and agreed on everything.
    pub fn agreed(&self) -> bool {
        self.result
            .as_ref()
            .is_ok_and(|c| c.disagreements.is_empty())
    }

    /// What to print when it did not agree or could not run.
    pub fn failure(&self) -> Option<String> {
        let body = match &self.result {
            Ok(c) if c.disagreements.is_empty() => return None,
            Ok(c) => {
                let lines: Vec<String> = c.disagreements.iter().map(|d| format!("  {d}")).collect();
                format!("{}\n{}", c.summary(), lines.join("\n"))
            }
            Err(e) => format!("{}: {e}", self.name),
        };
        Some(match &self.text {
            Some(text) => format!("{body}\n  scenario:\n{}", indent(text)),
            None => body,
        })
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Runs `f` over `items` on `workers` threads; results in item order.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<(R, Duration)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, (R, Duration))>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { return };
                // The harness reports how long each case took; nothing
                // of it reaches the comparison.
                #[allow(clippy::disallowed_methods)]
                let start = std::time::Instant::now();
                let r = f(item);
                let took = start.elapsed();
                results.lock().expect("results lock").push((i, (r, took)));
            });
        }
    });
    let mut all = results.into_inner().expect("results lock");
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// The mode and iptables variant a generated case runs in, unless forced:
/// by `seed % 3`, nftables, iptables-legacy, iptables-nft.
pub fn mode_of(seed: u64) -> (Mode, IptablesVariant) {
    match seed % 3 {
        0 => (Mode::Nftables, IptablesVariant::Nft),
        1 => (Mode::Iptables, IptablesVariant::Legacy),
        _ => (Mode::Iptables, IptablesVariant::Nft),
    }
}

/// The generated case for `seed`: its scenario, run on both sides in
/// `mode` (default: [`mode_of`] the seed).
pub fn generated_case(seed: u64, base: &DiffOptions, mode: Option<Mode>) -> CaseResult {
    let text = scenario_gen::scenario(seed);
    let name = format!("generated-{seed}");
    let result = crate::scenario::load(&name, &text)
        .map_err(|e| ClusterError::Simulator(e.to_string()))
        .and_then(|plan| {
            let (by_seed, variant) = mode_of(seed);
            let opts = DiffOptions {
                mode: mode.unwrap_or(by_seed),
                variant,
                ..base.clone()
            };
            differential(&plan, &opts)
        });
    CaseResult {
        name,
        text: Some(text),
        result,
        elapsed: Duration::ZERO,
    }
}

/// Runs the generated cases for `seeds` on `workers` threads.
pub fn generated_cases(
    seeds: &[u64],
    workers: usize,
    base: &DiffOptions,
    mode: Option<Mode>,
) -> Vec<CaseResult> {
    parallel(seeds, workers, |seed| generated_case(*seed, base, mode))
        .into_iter()
        .map(|(mut r, took)| {
            r.elapsed = took;
            r
        })
        .collect()
}

/// Runs planned scenarios, each with its options (its mode), on `workers`
/// threads.
pub fn planned_cases(cases: &[(Plan, DiffOptions)], workers: usize) -> Vec<CaseResult> {
    parallel(cases, workers, |(plan, opts)| CaseResult {
        name: format!("{} ({})", plan.name, opts.mode.name()),
        text: None,
        result: differential(plan, opts),
        elapsed: Duration::ZERO,
    })
    .into_iter()
    .map(|(mut r, took)| {
        r.elapsed = took;
        r
    })
    .collect()
}
