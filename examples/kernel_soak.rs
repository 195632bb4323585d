//! The differential soak: many seeded random clusters, each built from
//! network namespaces, driven by the real proxier on the real kernel and
//! compared with the simulator (`kpsim::kernel_cluster`).
//!
//! ```sh
//! sudo cargo run --release --example kernel_soak -- --cases 500 --seed 1000 --workers 8
//! ```
//!
//! Options: `--cases N` (default 200), `--seed S` (the first seed, default
//! 1), `--workers W` (cases at once, default 8), `--mode iptables|nftables`
//! (default: by seed, a third each of nftables, iptables-legacy and
//! iptables-nft).
//! Needs root, `ip`, `nft` and both iptables variants. Prints one line per
//! case and every disagreement with the scenario text to rerun it; exits 1
//! if any case disagreed or could not run, 2 when it cannot run at all.

use std::collections::BTreeMap;
use std::process::ExitCode;

use kpsim::kernel_cluster::cases::generated_cases;
use kpsim::kernel_cluster::DiffOptions;
use proxier::config::Mode;

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| -> Result<(u64, u64, u64, Option<Mode>), String> {
        let mode = match args.iter().position(|a| a == "--mode") {
            None => None,
            Some(i) => Some(Mode::parse(
                args.get(i + 1).map(String::as_str).unwrap_or("?"),
            )?),
        };
        Ok((
            arg(&args, "--cases", 200)?,
            arg(&args, "--seed", 1)?,
            arg(&args, "--workers", 8)?,
            mode,
        ))
    })();
    let (cases, first, workers, mode) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kernel_soak: {e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("kernel_soak: needs root (network namespaces, netfilter)");
        return ExitCode::from(2);
    }
    let opts = DiffOptions::default();
    let seeds: Vec<u64> = (first..first + cases).collect();
    let (mut agreed, mut failed, mut probes) = (0, 0, 0);
    let mut coverage: BTreeMap<&str, usize> = BTreeMap::new();
    for chunk in seeds.chunks(50) {
        for r in generated_cases(chunk, workers as usize, &opts, mode) {
            match &r.result {
                Ok(c) => {
                    println!("{}", c.summary());
                    probes += c.probes;
                    for (what, n) in &c.coverage {
                        *coverage.entry(what).or_default() += n;
                    }
                }
                Err(e) => println!("{}: {e}", r.name),
            }
            match r.failure() {
                None => agreed += 1,
                Some(text) => {
                    failed += 1;
                    println!("{text}");
                }
            }
        }
    }
    let parts: Vec<String> = coverage.iter().map(|(w, n)| format!("{w} {n}")).collect();
    println!(
        "{} cases ({probes} probes): {agreed} agreed, {failed} disagreed or could not run; probes that were: {}",
        agreed + failed,
        parts.join(", ")
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
