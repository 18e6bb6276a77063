//! The simulator's settings.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use crate::fault::FailurePolicy;

/// Label every simulated Node carries (value `"true"`); also the key of its `NoSchedule` taint.
pub const SIMULATED_NODE_LABEL: &str = "sim.rssc.dev/node";
/// Pods a node runs at once unless told otherwise: the kubelet's default `maxPods`.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// Label key selecting the pods the simulator runs by default.
pub const COMPONENT_LABEL: &str = "scaleset.actions.github.com/component";

/// How pods get onto the simulated nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduling {
    /// No scheduler runs (the test server): the simulator binds pending pods that match its
    /// selector to its nodes through `pods/binding`, honouring each node's max pods. Pods that
    /// do not fit stay Pending with `PodScheduled=False`, reason `Unschedulable`.
    Bind,
    /// A real scheduler binds pods (they must tolerate the simulated nodes' taint); the
    /// simulator only runs pods whose `spec.nodeName` is one of its nodes.
    External,
}

/// Which pods the simulator considers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSelector {
    /// Only this namespace; `None` for every namespace.
    pub namespace: Option<String>,
    /// A pod matches if this label has one of these values.
    pub label: String,
    /// Accepted values of `label`.
    pub values: Vec<String>,
}

impl Default for PodSelector {
    fn default() -> Self {
        Self {
            namespace: None,
            label: COMPONENT_LABEL.to_owned(),
            values: vec!["runner".to_owned(), "listener".to_owned()],
        }
    }
}

impl PodSelector {
    /// The selector as a `labelSelector` query value.
    pub fn label_selector(&self) -> String {
        format!("{} in ({})", self.label, self.values.join(","))
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        labels
            .and_then(|l| l.get(&self.label))
            .is_some_and(|v| self.values.iter().any(|x| x == v))
    }
}

/// How the listener process authenticates to the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKubeconfig {
    /// Hand every listener this kubeconfig (the test server's; it has no authorization).
    File(PathBuf),
    /// Request a token for the pod's ServiceAccount (TokenRequest API) and write a kubeconfig
    /// with it for the cluster this kubeconfig's current context points at, so the listener
    /// runs with its own RBAC (real clusters).
    ServiceAccountToken {
        /// The kubeconfig whose cluster (server, CA) the listener's kubeconfig uses.
        cluster_from: PathBuf,
        /// Requested token lifetime.
        expiration: Duration,
    },
}

/// How listener pods are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// The `rssc-listener` executable run in place of the container's command.
    pub binary: PathBuf,
    /// One log file per pod is written here (`<namespace>_<pod>.log`).
    pub log_dir: PathBuf,
    /// Credentials handed to the process.
    pub kubeconfig: ListenerKubeconfig,
    /// Longest wait between readiness probes (the pod's `periodSeconds` is shortened to this).
    pub max_probe_period: Duration,
}

/// Everything the simulator needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Names of the simulated nodes; unique per simulator (tests on a shared cluster must not
    /// collide).
    pub node_names: Vec<String>,
    /// Pods each node runs at once (its `pods` capacity).
    pub max_pods: u32,
    /// How pods are placed.
    pub scheduling: Scheduling,
    /// Which pods are placed and run.
    pub selector: PodSelector,
    /// From binding to the containers running.
    pub start_latency: Duration,
    /// How often a runner without a job asks the fake GitHub for one.
    pub job_poll_interval: Duration,
    /// Wait before a container restart (`restartPolicy` `Always`/`OnFailure`); the kubelet's
    /// starts at 10 s and doubles.
    pub restart_backoff: Duration,
    /// Lease renewal interval (the kubelet's default is 10 s).
    pub lease_interval: Duration,
    /// How listener pods run; `None` runs them like any other pod (Running, no process).
    pub listener: Option<ListenerSettings>,
    /// Injected failures.
    pub failures: FailurePolicy,
    /// Directory for per-pod scratch space (materialised volumes, kubeconfigs); each pod's part
    /// is removed when the pod goes, the whole directory on [`crate::NodeSim::stop`].
    pub work_dir: PathBuf,
    /// Remove the Node objects and their Leases on [`crate::NodeSim::stop`].
    pub delete_nodes_on_stop: bool,
}

/// Names for `count` nodes (at least one): `first`, then `first-1`, `first-2`, and so on, so
/// one node keeps the name it always had.
pub fn node_names(first: &str, count: usize) -> Vec<String> {
    std::iter::once(first.to_owned())
        .chain((1..count).map(|i| format!("{first}-{i}")))
        .collect()
}

impl SimConfig {
    /// One node named `node_name`, binding mode, rssc pods, no listener support.
    pub fn new(node_name: &str) -> Self {
        Self {
            node_names: vec![node_name.to_owned()],
            max_pods: DEFAULT_MAX_PODS,
            scheduling: Scheduling::Bind,
            selector: PodSelector::default(),
            start_latency: Duration::from_millis(100),
            job_poll_interval: Duration::from_millis(100),
            restart_backoff: Duration::from_secs(1),
            lease_interval: Duration::from_secs(10),
            listener: None,
            failures: FailurePolicy::default(),
            work_dir: std::env::temp_dir().join(format!("rssc-sim-node-{}-{node_name}", std::process::id())),
            delete_nodes_on_stop: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_keep_the_first_name_and_number_the_rest() {
        assert_eq!(node_names("sim-a", 0), ["sim-a"]);
        assert_eq!(node_names("sim-a", 1), ["sim-a"]);
        assert_eq!(node_names("sim-a", 3), ["sim-a", "sim-a-1", "sim-a-2"]);
    }
}
