//! What upstream's packet-flow tables (`runPacketFlowTests`) need in every
//! mode: the objects alive at a sync, a flow's protocol, and the one
//! failure report. It models fixture bookkeeping only; it must never
//! decide a flow's expected answer (that is the fixture's) nor trace one
//! (that is `kpsim trace`'s).

use proxier::k8s::{self, Manifests, NamespacedName, Protocol};
use serde::Deserialize;

/// An object a fixture's sync deletes.
#[derive(Debug, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// The objects alive after a sync: applied (same kind and name replace)
/// and deleted in order.
pub fn apply(objects: &mut Manifests, values: &[serde_yaml::Value], deletes: &[ObjectRef]) {
    for v in values {
        let m = k8s::load_str("fixture", &serde_yaml::to_string(v).unwrap()).unwrap();
        for s in m.services {
            objects.services.retain(|o| o.name != s.name);
            objects.services.push(s);
        }
        for s in m.endpoint_slices {
            objects.endpoint_slices.retain(|o| o.name != s.name);
            objects.endpoint_slices.push(s);
        }
    }
    for d in deletes {
        let name = NamespacedName::new(&d.namespace, &d.name);
        objects
            .services
            .retain(|o| !(d.kind == "Service" && o.name == name));
        objects
            .endpoint_slices
            .retain(|o| !(d.kind == "EndpointSlice" && o.name == name));
    }
}

/// A flow's protocol as upstream's tables spell it (any case; TCP unless
/// UDP or SCTP).
pub fn protocol(text: &str) -> Protocol {
    match text.to_uppercase().as_str() {
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

/// Fails unless at least `min_checked` flows were checked and none differed,
/// showing the first five differences.
pub fn assert_flows_agree(failures: &[String], flows_checked: usize, min_checked: usize) {
    assert!(
        flows_checked >= min_checked,
        "only {flows_checked} flows checked"
    );
    assert!(
        failures.is_empty(),
        "{} of {flows_checked} flows differ:\n\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
