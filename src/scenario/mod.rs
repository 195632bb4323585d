//! Scenarios: a cluster, Kubernetes objects and a timeline, replayed on the
//! simulator with one proxier per node.
//!
//! [`spec`] is the file format (strict: unknown fields are errors with a
//! line number); [`plan`] checks and resolves it; [`controller`] derives
//! EndpointSlices from pods; the runner executes the timeline on virtual
//! time and the report says what happened and whether each expectation held;
//! [`end_state`] keeps the world the last step left (for `kpsim rules
//! --scenario` and `kpsim trace --scenario`).

pub mod apiserver;
pub mod controller;
mod end_state;
mod expect;
mod expect_flows;
pub mod kube_proxy;
pub mod modes;
pub mod plan;
pub mod report;
pub mod runner;
pub mod spec;

pub use end_state::{end_state, EndState};
pub use plan::{Plan, PlanError};
pub use report::{render_text, Report};
pub use runner::run;

/// Parses and plans a scenario file's text.
pub fn load(file: &str, text: &str) -> Result<Plan, PlanError> {
    let parsed = plan::parse(file, text)?;
    plan::plan(file, &parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name: t\ncluster:\n  nodes:\n  - {name: node-a, ip: 192.168.0.10, podCIDR: 10.244.1.0/24}\n";

    fn err(text: &str) -> PlanError {
        load("s.yaml", text).expect_err("should be refused")
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let e = err(&format!(
            "{BASE}  pods:\n  - {{name: web, node: node-a, lables: {{}}}}\n"
        ));
        assert!(e.problem.contains("unknown field `lables`"), "{e}");
        assert!(e.place.starts_with("line 6"), "{e}");
    }

    #[test]
    fn two_pods_with_one_ip_are_refused() {
        let e = err(&format!(
            "{BASE}  pods:\n  - {{name: a, node: node-a, ip: 10.244.1.5}}\n  - {{name: b, node: node-a, ip: 10.244.1.5}}\n"
        ));
        assert_eq!(e.place, "cluster.pods[1] (b)");
        assert!(e.problem.contains("already used by pod default/a"), "{e}");
    }

    #[test]
    fn pods_must_live_on_known_nodes_inside_their_pod_cidr() {
        let e = err(&format!("{BASE}  pods:\n  - {{name: a, node: node-z}}\n"));
        assert!(
            e.problem.contains("\"node-z\" is not in cluster.nodes"),
            "{e}"
        );
        let e = err(&format!(
            "{BASE}  pods:\n  - {{name: a, node: node-a, ip: 10.244.9.5}}\n"
        ));
        assert!(e.problem.contains("outside node node-a's podCIDR"), "{e}");
    }

    #[test]
    fn slices_naming_unknown_nodes_are_refused() {
        let e = err(&format!(
            "{BASE}objects:\n- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata: {{name: s, labels: {{kubernetes.io/service-name: x}}}}\n  addressType: IPv4\n  endpoints: [{{addresses: [10.244.1.9], nodeName: node-q}}]\n"
        ));
        assert_eq!(e.place, "objects[0]");
        assert!(e.problem.contains("names node \"node-q\""), "{e}");
    }

    #[test]
    fn pod_ips_and_service_fields_are_allocated() {
        let plan = load(
            "s.yaml",
            &format!(
                "{BASE}  pods:\n  - {{name: a, node: node-a}}\n  - {{name: b, node: node-a}}\nobjects:\n- apiVersion: v1\n  kind: Service\n  metadata: {{name: web}}\n  spec: {{type: NodePort, ports: [{{port: 80}}]}}\n"
            ),
        )
        .unwrap();
        let ips: Vec<String> = plan.pods.iter().map(|p| p.ip.to_string()).collect();
        assert_eq!(ips, ["10.244.1.2", "10.244.1.3"]);
        let svc = &plan.services[0];
        assert_eq!(
            svc.cluster_ip,
            proxier::k8s::ClusterIp::Ips(vec!["10.96.0.10".parse().unwrap()])
        );
        assert_eq!(svc.ports[0].node_port, Some(30000));
    }

    #[test]
    fn a_step_takes_one_action() {
        let e = err(&format!(
            "{BASE}steps:\n- {{advance: 1s, restart: {{kubeProxy: node-a}}}}\n"
        ));
        assert_eq!(e.place, "steps[0]");
        let e = err(&format!("{BASE}steps:\n- {{advance: soon}}\n"));
        assert!(e.problem.contains("advance"), "{e}");
    }

    #[test]
    fn the_shipped_scenarios_plan() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            load(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
        assert!(n >= 1);
    }
}
