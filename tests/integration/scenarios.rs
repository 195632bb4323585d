//! Every shipped scenario in every implemented mode: its report as an insta
//! snapshot per mode (text), every expectation holding, and the same seed
//! giving byte-identical output twice (JSON, the complete report).
//!
//! A scenario runs in each mode of [`IMPLEMENTED_MODES`], unless it names
//! its own `modes:` (a scenario about one mode, or a mode switch that
//! starts in a given mode): then in those of its modes that are
//! implemented (none yet: it waits for its mode).

use std::path::Path;

use kpsim::scenario::{self, render_text};
use proxier::config::Mode;

/// The modes whose proxier, kernel adapters and packet path are complete
/// enough that every shipped scenario must hold in them.
pub const IMPLEMENTED_MODES: &[Mode] = &[Mode::Iptables, Mode::Ipvs, Mode::Nftables];

fn plan(path: &Path) -> scenario::Plan {
    let text = std::fs::read_to_string(path).unwrap();
    scenario::load(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

/// The modes `path` runs in here: its own `modes:` if it names some, else
/// every implemented mode.
fn modes(path: &Path, plan: &scenario::Plan) -> Vec<Mode> {
    let text = std::fs::read_to_string(path).unwrap();
    let raw: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let declared = raw.get("modes").is_some();
    IMPLEMENTED_MODES
        .iter()
        .copied()
        .filter(|m| !declared || plan.modes.contains(m))
        .collect()
}

#[test]
fn shipped_scenarios_pass_in_every_mode_and_match_their_snapshots() {
    let mut count = 0;
    insta::glob!("../..", "scenarios/*.yaml", |path| {
        count += 1;
        let plan = plan(path);
        // A scenario about a mode not implemented yet runs once it is.
        for mode in modes(path, &plan) {
            let reports = scenario::run(&plan, None, Some(mode))
                .unwrap_or_else(|e| panic!("{} ({}): {e:#}", path.display(), mode.name()));
            let text: String = reports.iter().map(render_text).collect();
            for r in &reports {
                assert!(
                    r.passed(),
                    "{} failed in {} mode:\n{text}",
                    path.display(),
                    mode.name()
                );
            }
            insta::assert_snapshot!(mode.name(), text);
        }
    });
    assert!(count >= 10, "only {count} scenarios");
}

#[test]
fn same_seed_same_bytes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let plan = plan(&path);
        for mode in modes(&path, &plan) {
            for seed in [plan.seed, plan.seed.wrapping_add(1)] {
                let run = || {
                    serde_json::to_string(&scenario::run(&plan, Some(seed), Some(mode)).unwrap())
                        .unwrap()
                };
                assert!(
                    run() == run(),
                    "{} is not deterministic; rerun with `kpsim run {} --mode {} --seed {seed} --output json`",
                    path.display(),
                    path.display(),
                    mode.name()
                );
            }
        }
    }
}

#[test]
fn a_different_seed_changes_the_draws() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/clusterip.yaml");
    let plan = plan(&path);
    // IPVS balances with its scheduler (rr here), not with random draws:
    // its report does not depend on the seed.
    for mode in IMPLEMENTED_MODES.iter().filter(|m| **m != Mode::Ipvs) {
        let run = |seed| {
            serde_json::to_string(&scenario::run(&plan, Some(seed), Some(*mode)).unwrap()).unwrap()
        };
        assert_ne!(
            run(1),
            run(2),
            "the seed must reach the random choices in {} mode",
            mode.name()
        );
    }
}
