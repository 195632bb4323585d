//! Every shipped scenario: its report as an insta snapshot (text), every
//! expectation holding, and the same seed giving byte-identical output
//! twice (JSON, the complete report).

use std::path::Path;

use kpsim::scenario::{self, render_text};

fn plan(path: &Path) -> scenario::Plan {
    let text = std::fs::read_to_string(path).unwrap();
    scenario::load(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shipped_scenarios_pass_and_match_their_snapshots() {
    let mut count = 0;
    insta::glob!("../..", "scenarios/*.yaml", |path| {
        count += 1;
        let plan = plan(path);
        let reports = scenario::run(&plan, None, None)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let text: String = reports.iter().map(render_text).collect();
        for r in &reports {
            assert!(r.passed(), "{} failed:\n{text}", path.display());
        }
        insta::assert_snapshot!(text);
    });
    assert!(count >= 9, "only {count} scenarios");
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
        for seed in [plan.seed, plan.seed.wrapping_add(1)] {
            let first =
                serde_json::to_string(&scenario::run(&plan, Some(seed), None).unwrap()).unwrap();
            let second =
                serde_json::to_string(&scenario::run(&plan, Some(seed), None).unwrap()).unwrap();
            assert!(
                first == second,
                "{} is not deterministic; rerun with `kpsim run {} --seed {seed} --output json`",
                path.display(),
                path.display()
            );
        }
    }
}

#[test]
fn a_different_seed_changes_the_draws() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/clusterip.yaml");
    let plan = plan(&path);
    let a = serde_json::to_string(&scenario::run(&plan, Some(1), None).unwrap()).unwrap();
    let b = serde_json::to_string(&scenario::run(&plan, Some(2), None).unwrap()).unwrap();
    assert_ne!(a, b, "the seed must reach the random choices");
}
