//! `apply` against the kernel: what the kernel lists equals what the
//! simulator prints, refusals change nothing and name the line, and the
//! iptables-nft fast path reaches the state the plain restore reaches.

use kpsim::generate::{cluster, Shape};
use kpsim::kernel_apply::{apply_with, ApplyReport};
use kpsim::oneshot::RenderRequest;
use proxier::config::Config;
use proxier::dataplane::{Kernel, RestoreFlags};
use proxier::k8s::IpFamily;
use proxier::kernel::iptables::IptablesTool;
use proxier::kernel::{HostKernel, IptablesVariant, KernelOptions, OwnedNetns, RestoreStrategy};

use crate::support::{
    diff, family_of, manifest_request, manifest_sets, netns, normalize, require, simulated_save,
    HostRules, IPTABLES_TOOLS,
};

const VARIANTS: [IptablesVariant; 2] = [IptablesVariant::Legacy, IptablesVariant::Nft];

fn options(ns: &OwnedNetns, variant: IptablesVariant) -> KernelOptions {
    KernelOptions {
        netns: Some(ns.name().to_string()),
        iptables_variant: Some(variant),
        restore_strategy: RestoreStrategy::Auto,
    }
}

fn save(ns: &OwnedNetns, variant: IptablesVariant, family: IpFamily) -> String {
    let tool = variant.tool(family, IptablesTool::Save);
    normalize(
        &ns.runner()
            .check(&tool, &[], None)
            .expect("iptables-save runs"),
    )
}

fn apply_in(ns: &OwnedNetns, req: &RenderRequest, variant: IptablesVariant) -> ApplyReport {
    apply_with(req, &options(ns, variant)).unwrap_or_else(|e| panic!("apply failed: {e}"))
}

/// The printer-fidelity check: for every manifest set, the kernel's
/// `iptables-save` after a kpsim apply equals the simulator's
/// `iptables-save` (`kpsim rules --format save`) for the same input.
#[test]
fn kernel_save_equals_the_simulators_for_every_manifest_set() {
    if require("kernel_save_equals_the_simulators", IPTABLES_TOOLS).is_none() {
        return;
    }
    let host = HostRules::capture();
    let mut failures = Vec::new();
    let mut compared = 0;
    for variant in VARIANTS {
        for path in manifest_sets() {
            let req = manifest_request(&path);
            let family = family_of(&req);
            let ns = netns();
            apply_in(&ns, &req, variant);
            let kernel = save(&ns, variant, family);
            let simulated = normalize(&simulated_save(&req, variant));
            compared += 1;
            if kernel != simulated {
                failures.push(format!(
                    "{} ({variant}): kernel (+) vs simulator (-):\n{}",
                    path.display(),
                    diff(&simulated, &kernel)
                ));
            }
        }
    }
    host.assert_unchanged();
    assert!(compared >= 16, "only {compared} comparisons");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A payload the kernel refuses leaves the previous rules exactly as they
/// were — also when the refusal is in the second table, after the tool has
/// committed the first — and the error names the payload line.
#[test]
fn a_refused_restore_changes_nothing_and_names_the_line() {
    if require("a_refused_restore_changes_nothing", IPTABLES_TOOLS).is_none() {
        return;
    }
    let host = HostRules::capture();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let req = manifest_request(&dir.join("nodeport-local.yaml"));
    for variant in VARIANTS {
        let ns = netns();
        apply_in(&ns, &req, variant);
        let before = save(&ns, variant, IpFamily::V4);
        let mut kernel = HostKernel::new(options(&ns, variant)).unwrap();
        // A first section naming many chains (snapshotted with one save).
        let mut many = String::from("*filter\n:KUBE-SERVICES - [0:0]\n");
        for i in 0..40 {
            many.push_str(&format!(
                ":KUBE-MANY-{i} - [0:0]\n-A KUBE-MANY-{i} -j RETURN\n"
            ));
        }
        many.push_str("COMMIT\n*nat\n:KUBE-NODEPORTS - [0:0]\n-A KUBE-NODEPORTS -m nosuchmatch -j RETURN\nCOMMIT\n");
        let cases = [
            // A match the tools do not know, in the first table.
            (
                "*filter\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -m bogus -j RETURN\nCOMMIT\n",
                3,
            ),
            // The filter section is fine (and gets committed by the tool);
            // the nat section jumps to a chain that does not exist.
            (
                "*filter\n:KUBE-SERVICES - [0:0]\n:KUBE-NEW - [0:0]\n-A KUBE-NEW -j RETURN\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-MISSING\nCOMMIT\n",
                if variant == IptablesVariant::Legacy { 8 } else { 9 },
            ),
            // Same, with a rule that does not parse in the second table.
            (
                "*filter\n:KUBE-FORWARD - [0:0]\nCOMMIT\n*nat\n:KUBE-MARK-MASQ - [0:0]\n-A KUBE-MARK-MASQ -m nosuchmatch -j RETURN\nCOMMIT\n",
                6,
            ),
            (many.as_str(), 86),
        ];
        for (i, (payload, line)) in cases.into_iter().enumerate() {
            kernel.take_writes();
            let err = kernel
                .iptables(IpFamily::V4)
                .restore_all(payload, RestoreFlags::KUBE_PROXY)
                .expect_err("the kernel refuses this payload");
            assert_eq!(err.line, Some(line), "{variant}: {err}");
            let text = payload.lines().nth(line - 1).unwrap();
            assert!(err.message.contains(text), "{variant}: {err}");
            // The tool committed the filter section of the two-table
            // payloads before it stopped; kpsim put it back.
            let writes = kernel.take_writes();
            let rolled_back = writes.iter().any(|w| {
                w.input
                    .as_deref()
                    .is_some_and(|i| i.starts_with("*filter\n") && w.outcome.is_ok())
            });
            assert_eq!(rolled_back, i > 0, "{variant} case {i}: {writes:#?}");
            assert_eq!(
                save(&ns, variant, IpFamily::V4),
                before,
                "{variant}: the refused payload changed the tables:\n{}",
                diff(&before, &save(&ns, variant, IpFamily::V4))
            );
        }
    }
    host.assert_unchanged();
}

fn big_request(services: usize) -> RenderRequest {
    RenderRequest {
        config: Config {
            cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()],
            ..Config::default()
        },
        manifests: cluster(&Shape {
            services,
            endpoints_per_service: 1,
            nodes: 10,
            seed: 7,
        }),
        node: Some("node-0".into()),
        node_ips: vec!["192.168.0.10".parse().unwrap()],
        family: None,
    }
}

/// Foreign rules, as Docker or a CNI would leave them.
const FOREIGN: &str = "*filter\n:DOCKER - [0:0]\n-A DOCKER -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT\n-A FORWARD -j DOCKER\nCOMMIT\n*nat\n:CNI-HOSTPORT - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT\n-A CNI-HOSTPORT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.5:80\nCOMMIT\n";

/// On iptables-nft, a big `--noflush` payload is merged into a flush-mode
/// restore; the tables end exactly as the plain `--noflush` restore leaves
/// them, foreign rules included — after a first apply, and after a second
/// that deletes stale chains. A refusal on that path names the payload
/// line too.
#[test]
fn the_nft_fast_path_reaches_the_plain_restores_state() {
    if require(
        "the_nft_fast_path_reaches_the_plain_restores_state",
        IPTABLES_TOOLS,
    )
    .is_none()
    {
        return;
    }
    let host = HostRules::capture();
    let variant = IptablesVariant::Nft;
    let (fast, plain) = (netns(), netns());
    for ns in [&fast, &plain] {
        ns.runner()
            .check("iptables-nft-restore", &["--noflush"], Some(FOREIGN))
            .unwrap();
    }
    for services in [600, 450] {
        let req = big_request(services);
        let report = apply_in(&fast, &req, variant);
        assert!(
            report.writes.iter().any(|w| w.command.contains("merged")),
            "{services} services did not take the fast path: {:#?}",
            report.writes.iter().map(|w| &w.command).collect::<Vec<_>>()
        );
        let mut opts = options(&plain, variant);
        opts.restore_strategy = RestoreStrategy::Plain;
        let report = apply_with(&req, &opts).unwrap();
        assert!(report.writes.iter().all(|w| !w.command.contains("merged")));
        let (a, b) = (
            save(&fast, variant, IpFamily::V4),
            save(&plain, variant, IpFamily::V4),
        );
        assert!(a.contains("-A FORWARD -j DOCKER") && a.contains("CNI-HOSTPORT"));
        assert!(
            a == b,
            "{services} services: fast (+) vs plain (-):\n{}",
            diff(&b, &a)
        );
    }

    // A refusal deep inside a big payload, on the fast path.
    let before = save(&fast, variant, IpFamily::V4);
    let mut payload = String::from("*nat\n");
    for i in 0..1200 {
        payload.push_str(&format!(":KUBE-SVC-TEST{i:05} - [0:0]\n"));
    }
    payload.push_str("-A KUBE-SVC-TEST00007 -m nosuchmatch -j RETURN\nCOMMIT\n");
    let mut kernel = HostKernel::new(options(&fast, variant)).unwrap();
    let err = kernel
        .iptables(IpFamily::V4)
        .restore_all(&payload, RestoreFlags::KUBE_PROXY)
        .unwrap_err();
    assert_eq!(err.line, Some(1202), "{err}");
    assert!(err.message.contains("nosuchmatch"), "{err}");
    assert_eq!(save(&fast, variant, IpFamily::V4), before);
    host.assert_unchanged();
}
