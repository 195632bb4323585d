//! The iptables-save printer against the real tool.
//!
//! Every `tests/fixtures/iptables-save/<name>.restore` was restored into a
//! throwaway network namespace by `capture.sh`, and the real iptables-save
//! 1.8.9 output stored beside it: `<name>.save` (nf_tables variant) and
//! `<name>.legacy.save` (legacy variant), dated `# ` lines removed. These
//! tests restore the same input into the simulator and require byte-identical
//! output, and require that iptables-save output restores to itself.

use std::fs;
use std::path::{Path, PathBuf};

use sim::netfilter::{Family, RestoreMode, Ruleset, Variant};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iptables-save")
}

/// All fixture names, sorted.
fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".restore").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures found");
    names
}

/// Split a fixture into its family and restore steps (see capture.sh).
fn steps(text: &str) -> (Family, Vec<(RestoreMode, String)>) {
    let family = if text.lines().any(|l| l == "#kpsim: ipv6") {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let mut steps = vec![(RestoreMode::Flush, String::new())];
    for line in text.lines() {
        match line.strip_prefix("#kpsim: step ") {
            Some("flush") => steps.push((RestoreMode::Flush, String::new())),
            Some("noflush") => steps.push((RestoreMode::NoFlush, String::new())),
            Some(other) => panic!("bad step marker {other}"),
            None => {
                let last = steps.last_mut().expect("at least one step");
                last.1.push_str(line);
                last.1.push('\n');
            }
        }
    }
    (family, steps)
}

fn first_difference(got: &str, want: &str) -> String {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        if g != w {
            return format!("line {}:\n  got:  {g}\n  want: {w}", i + 1);
        }
    }
    format!(
        "line counts differ: got {}, want {}",
        got.lines().count(),
        want.lines().count()
    )
}

/// The one helper every test goes through: restore `name` into a simulated
/// ruleset of `variant` and compare with the real tool's output.
fn check(name: &str, variant: Variant) -> Result<(), String> {
    let dir = fixture_dir();
    let input =
        fs::read_to_string(dir.join(format!("{name}.restore"))).map_err(|e| e.to_string())?;
    let expected_file = match variant {
        Variant::Nft => format!("{name}.save"),
        Variant::Legacy => format!("{name}.legacy.save"),
    };
    let want = fs::read_to_string(dir.join(&expected_file)).map_err(|e| e.to_string())?;
    let (family, steps) = steps(&input);
    let mut rs = Ruleset::new(family, variant);
    for (i, (mode, text)) in steps.iter().enumerate() {
        rs.restore(text, *mode)
            .map_err(|e| format!("{name} step {i}: restore failed: {e}"))?;
    }
    let got = rs.save();
    if got != want {
        return Err(format!(
            "{expected_file}: {}",
            first_difference(&got, &want)
        ));
    }
    // iptables-save output must restore to the same state. A legacy restore
    // creates tables in file order and legacy lists the newest first, so the
    // table blocks come back reversed (checked on the real tool too).
    let mut again = Ruleset::new(family, variant);
    again
        .restore(&want, RestoreMode::Flush)
        .map_err(|e| format!("{expected_file}: restoring save output failed: {e}"))?;
    let round = again.save();
    let want_round = match variant {
        Variant::Nft => want.clone(),
        Variant::Legacy => reverse_tables(&want),
    };
    if round != want_round {
        return Err(format!(
            "{expected_file} round trip: {}",
            first_difference(&round, &want_round)
        ));
    }
    Ok(())
}

fn reverse_tables(save: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    for line in save.lines() {
        if line.starts_with('*') {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks.reverse();
    blocks.concat()
}

fn check_all(variant: Variant) {
    let failures: Vec<String> = fixtures()
        .iter()
        .filter_map(|n| check(n, variant).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn nft_variant_prints_what_real_iptables_nft_save_prints() {
    check_all(Variant::Nft);
}

#[test]
fn legacy_variant_prints_what_real_iptables_legacy_save_prints() {
    check_all(Variant::Legacy);
}

#[test]
fn every_fixture_has_both_captures() {
    let dir = fixture_dir();
    for name in fixtures() {
        for suffix in ["save", "legacy.save"] {
            let path = dir.join(format!("{name}.{suffix}"));
            let text = fs::read_to_string(&path).unwrap_or_default();
            assert!(
                text.contains("COMMIT"),
                "{} missing or empty: run capture.sh as root",
                path.display()
            );
        }
    }
}
