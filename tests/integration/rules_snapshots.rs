//! `kpsim rules` output for the manifest sets in `tests/manifests/`, as insta
//! snapshots: the restore payload and the node's tables afterwards
//! (`--format save`). Every payload must also pass upstream's consistency
//! check (no jump to an undeclared or empty chain, no unused service chain).
//! A manifest `X.yaml` (or `.json`) may have a `X.config.yaml` beside it.

use std::path::Path;

use kpsim::oneshot::{render, RenderRequest};
use proxier::config::{self, Config};
use proxier::k8s;

use crate::support::iptables_dump;

fn render_file(path: &Path) -> kpsim::oneshot::Rendered {
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
    render(&RenderRequest {
        config,
        manifests,
        ..RenderRequest::default()
    })
    .expect("renders")
}

#[test]
fn rules_for_every_manifest_set() {
    let mut count = 0;
    insta::glob!("..", "manifests/*.{yaml,json}", |path| {
        if path.to_string_lossy().ends_with(".config.yaml") {
            return;
        }
        count += 1;
        let out = render_file(path);
        let restore = out.restore.clone().expect("iptables mode writes a payload");
        iptables_dump::check_rule_jumps(&restore)
            .unwrap_or_else(|e| panic!("{}: {e}\n{restore}", path.display()));
        insta::assert_snapshot!("restore", restore);
        insta::assert_snapshot!("save", out.save);
    });
    assert!(count >= 8, "only {count} manifest sets");
}
