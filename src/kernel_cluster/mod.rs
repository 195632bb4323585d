//! A scenario's cluster built from real network namespaces, driven by the
//! same proxier on the real kernel, and compared with the simulator: the
//! differential fidelity harness.
//!
//! It lives in the library (not only under `tests/`) so that the kernel
//! suite, the `kernel_soak` example and a future `kpsim run --kernel` share
//! one implementation.
//!
//! - [`topology`] — the namespaces: a `fabric` bridge that every node,
//!   client and load balancer is attached to, a namespace per node (its own
//!   netfilter and conntrack) with a routed veth per pod, pods, external
//!   clients and cloud load balancers, mirroring `sim::network`.
//! - [`servers`] — what listens in the pods: answers with the pod's name and
//!   the source `address:port` it saw.
//! - [`traffic`] — real sockets: TCP connect + request/answer, UDP
//!   datagrams, with short timeouts, classified like the simulator's
//!   outcomes (answered, dropped, rejected); [`probe`] plays a scenario's
//!   traffic step with them and keeps clients' sockets between steps.
//! - [`replay`] — a planned scenario's timeline on that topology, one
//!   [`KubeProxy`](crate::scenario::kube_proxy::KubeProxy) per node over
//!   [`HostKernel`](proxier::kernel::HostKernel), on the same virtual clock
//!   as the simulator's runner (plus real sleeps for `advance`).
//! - [`compare`] — one case: the simulator (twice: the scenario, and a
//!   twin that shows what each step can reach) and the kernel replay;
//!   [`verdict`] compares them step by step, every difference a
//!   [`Disagreement`]; [`cases`] runs many cases on worker threads;
//!   [`ipvs_state`] reads a node's IPVS table for `realServers`.
//!
//! **Invariant:** everything is created inside namespaces this process made
//! (uniquely named, deleted on drop, also on panic); the caller's own
//! namespace is never changed.
//! **Error contract:** setup and driving failures are [`ClusterError`]s; what
//! traffic experiences is an outcome, never an error.

pub mod cases;
pub mod compare;
pub mod ipvs_state;
pub mod probe;
pub mod replay;
pub mod servers;
pub mod topology;
pub mod traffic;
pub mod verdict;

pub use compare::{differential, differential_pair, Comparison, DiffOptions, Disagreement};
pub use topology::Topology;

use proxier::dataplane::DataplaneError;

/// Why a kernel cluster could not be built or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A tool or namespace operation failed.
    #[error(transparent)]
    Kernel(#[from] DataplaneError),
    /// A socket operation failed where no network outcome was expected.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The scenario needs something the harness does not build (says what).
    #[error("not supported by the kernel harness: {0}")]
    Unsupported(String),
    /// kube-proxy could not start on a node.
    #[error("kube-proxy on {node}: {message}")]
    Proxy { node: String, message: String },
    /// The simulator could not run the scenario.
    #[error("simulator: {0}")]
    Simulator(String),
    /// A step names something the cluster does not have.
    #[error("step {step}: {message}")]
    Step { step: usize, message: String },
}

impl ClusterError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ClusterError::Io {
            what: what.into(),
            source,
        }
    }
}
