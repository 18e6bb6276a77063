//! A node simulator for tests: it acts like kubelets through the public Kubernetes API only,
//! so it runs unchanged against the Kubernetes API test server (`rssc-sim-kube`) or a real
//! cluster.
//!
//! It registers Node objects (Ready, sized by max pods, labelled and tainted as simulated) and
//! renews their Leases; in [`Scheduling::Bind`] mode it also binds pending pods that match its
//! selector through `pods/binding`, by capacity. Pods on its nodes go Pending → Running →
//! Succeeded/Failed with the status a kubelet writes through `pods/status`. Runner pods read
//! their JIT configuration from their Secret and run their job on the fake GitHub; listener
//! pods run the real `rssc-listener` binary as a local process. See
//! `docs/testing-node-simulator.md`.

pub mod config;
pub mod env;
pub mod fault;
pub mod kubeconfig;
pub mod node;
pub mod process;
pub mod schedule;
mod sim;
pub mod status;
pub mod summary;
pub mod util;
mod worker;

pub use config::{ListenerKubeconfig, ListenerSettings, PodSelector, Scheduling, SimConfig};
pub use fault::{FailurePolicy, Fault};
pub use sim::{Error, NodeSim};
pub use summary::{PodKind, PodRecord, RunnerRecord, Summary};
