//! Scenarios: a cluster, Kubernetes objects and a timeline, replayed on the
//! simulator with one proxier per node.
//!
//! [`spec`] is the file format (strict: unknown fields are errors with a
//! line number); [`plan`] checks and resolves it; [`controller`] derives
//! EndpointSlices from pods; the runner executes the timeline on virtual
//! time and the report says what happened and whether each expectation held.

pub mod apiserver;
pub mod controller;
pub mod kube_proxy;
pub mod plan;
pub mod spec;

pub use plan::{Plan, PlanError};

/// Parses and plans a scenario file's text.
pub fn load(file: &str, text: &str) -> Result<Plan, PlanError> {
    let parsed = plan::parse(file, text)?;
    plan::plan(file, &parsed)
}
