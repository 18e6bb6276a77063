//! Pod status as a kubelet reports it, built from what the simulator's containers do. Pure.

use chrono::{DateTime, Utc};
use k8s_openapi::{
    api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};

/// Exit code of a container killed by SIGKILL (OOM kills included).
pub const EXIT_SIGKILL: i32 = 137;
/// Exit code of a container stopped by SIGTERM.
pub const EXIT_SIGTERM: i32 = 143;

/// What one container is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Not running yet (or between restarts).
    Waiting {
        /// `ContainerCreating`, `CrashLoopBackOff`, `CreateContainerConfigError`, ...
        reason: String,
        /// Detail.
        message: Option<String>,
    },
    /// Running since `started`.
    Running {
        /// Start time.
        started: DateTime<Utc>,
    },
    /// Exited.
    Terminated {
        /// Exit code.
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, ...
        reason: String,
        /// Detail.
        message: Option<String>,
        /// When it started, if it did.
        started: Option<DateTime<Utc>>,
        /// When it exited.
        finished: DateTime<Utc>,
    },
}

impl RunState {
    /// The waiting state a container has before it first starts.
    pub fn creating() -> Self {
        Self::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        }
    }

    /// A terminated state with the reason a kubelet gives `exit_code` (`Completed` for 0).
    pub fn exited(exit_code: i32, started: Option<DateTime<Utc>>, finished: DateTime<Utc>) -> Self {
        Self::Terminated {
            exit_code,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started,
            finished,
        }
    }

    /// Exit code, if terminated.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }

    fn to_api(&self) -> ContainerState {
        match self {
            Self::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            Self::Running { started } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started)),
                }),
                ..Default::default()
            },
            Self::Terminated {
                exit_code,
                reason,
                message,
                started,
                finished,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: started.map(Time),
                    finished_at: Some(Time(*finished)),
                    container_id: None,
                    signal: None,
                }),
                ..Default::default()
            },
        }
    }
}

/// One container as the simulator runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRun {
    /// Container name.
    pub name: String,
    /// Image from the spec.
    pub image: String,
    /// Current state.
    pub state: RunState,
    /// The previous run's terminated state.
    pub last_state: Option<RunState>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Readiness (probe result, or running for containers without a readiness probe).
    pub ready: bool,
    /// Init container with `restartPolicy: Always` (a native sidecar).
    pub sidecar: bool,
}

impl ContainerRun {
    /// A container that has not started.
    pub fn new(name: &str, image: &str, sidecar: bool) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            state: RunState::creating(),
            last_state: None,
            restart_count: 0,
            ready: false,
            sidecar,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }

    fn terminated(&self) -> bool {
        matches!(self.state, RunState::Terminated { .. })
    }

    fn to_api(&self, pod_uid: &str) -> ContainerStatus {
        let id = crate::util::fnv64(&format!("{pod_uid}/{}/{}", self.name, self.restart_count));
        let started = self.running() || self.terminated();
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: format!("{}@sha256:{:016x}", self.image, crate::util::fnv64(&self.image)),
            container_id: started.then(|| format!("containerd://{id:016x}")),
            ready: self.ready,
            restart_count: self.restart_count,
            started: Some(self.running()),
            state: Some(self.state.to_api()),
            last_state: Some(self.last_state.as_ref().map(RunState::to_api).unwrap_or_default()),
            ..Default::default()
        }
    }
}

/// A pod's phase override set by the kubelet itself (eviction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// Message, e.g. "The node was low on resource: memory.".
    pub message: String,
}

/// Everything a pod's status is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRun {
    /// The pod's UID (container IDs derive from it).
    pub uid: String,
    /// Node IP.
    pub host_ip: String,
    /// Pod IP.
    pub pod_ip: String,
    /// When the kubelet accepted the pod.
    pub start_time: DateTime<Utc>,
    /// Init containers in spec order (sidecars included).
    pub init: Vec<ContainerRun>,
    /// Regular containers in spec order.
    pub containers: Vec<ContainerRun>,
    /// Set when the pod was evicted.
    pub evicted: Option<Evicted>,
}

/// The phase a kubelet reports for `run`.
pub fn phase(run: &PodRun) -> &'static str {
    if run.evicted.is_some() {
        return "Failed";
    }
    if !run.containers.is_empty() && run.containers.iter().all(ContainerRun::terminated) {
        return if run.containers.iter().all(|c| c.state.exit_code() == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let began = |c: &ContainerRun| c.running() || c.terminated() || c.restart_count > 0;
    if run.containers.iter().any(began) {
        "Running"
    } else {
        "Pending"
    }
}

/// Whether init containers are done: regular ones completed, sidecars started.
pub fn initialized(run: &PodRun) -> bool {
    run.init.iter().all(|c| {
        if c.sidecar {
            c.running() || c.terminated() || c.restart_count > 0
        } else {
            c.state.exit_code() == Some(0)
        }
    })
}

/// One condition wanted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Condition type.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// Reason, for `False` mostly.
    pub reason: Option<String>,
    /// Message.
    pub message: Option<String>,
}

fn want(type_: &'static str, status: bool) -> Want {
    Want {
        type_,
        status,
        reason: None,
        message: None,
    }
}

/// Conditions from `wanted`, keeping each `lastTransitionTime` from `previous` while the
/// condition's status is unchanged.
pub fn conditions(previous: &[PodCondition], wanted: &[Want], now: DateTime<Utc>) -> Vec<PodCondition> {
    wanted
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let kept = previous
                .iter()
                .find(|p| p.type_ == w.type_ && p.status == status)
                .and_then(|p| p.last_transition_time.clone());
            PodCondition {
                type_: w.type_.to_owned(),
                status: status.to_owned(),
                reason: w.reason.clone(),
                message: w.message.clone(),
                last_transition_time: Some(kept.unwrap_or(Time(now))),
                last_probe_time: None,
            }
        })
        .collect()
}

/// The status of a pod that no node can take.
pub fn unschedulable(previous: Option<&PodStatus>, message: &str, now: DateTime<Utc>) -> PodStatus {
    let prev = previous.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(conditions(
            prev,
            &[Want {
                type_: "PodScheduled",
                status: false,
                reason: Some("Unschedulable".into()),
                message: Some(message.to_owned()),
            }],
            now,
        )),
        qos_class: previous.and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

fn not_ready(names: &[&str], what: &str) -> Option<String> {
    (!names.is_empty()).then(|| format!("{what} with unready status: [{}]", names.join(" ")))
}

/// The status a kubelet reports for `run`, keeping condition transition times from `previous`.
pub fn pod_status(run: &PodRun, previous: Option<&PodStatus>, now: DateTime<Utc>) -> PodStatus {
    let prev = previous.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let phase = phase(run);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let init_done = initialized(run);
    let unready: Vec<&str> = run
        .containers
        .iter()
        .chain(run.init.iter().filter(|c| c.sidecar))
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let ready = !terminal && init_done && unready.is_empty();
    let (ready_reason, ready_message) = if ready {
        (None, None)
    } else if terminal {
        (
            Some(
                if phase == "Succeeded" {
                    "PodCompleted"
                } else {
                    "PodFailed"
                }
                .to_owned(),
            ),
            None,
        )
    } else {
        (
            Some("ContainersNotReady".to_owned()),
            not_ready(&unready, "containers"),
        )
    };
    let pending_init: Vec<&str> = run
        .init
        .iter()
        .filter(|c| !c.sidecar && c.state.exit_code() != Some(0))
        .map(|c| c.name.as_str())
        .collect();
    let mut wanted = vec![
        want("PodReadyToStartContainers", !terminal),
        Want {
            reason: (!init_done).then(|| "ContainersNotInitialized".to_owned()),
            message: if init_done {
                None
            } else {
                not_ready(&pending_init, "containers")
            },
            ..want("Initialized", init_done)
        },
        Want {
            reason: ready_reason.clone(),
            message: ready_message.clone(),
            ..want("Ready", ready)
        },
        Want {
            reason: ready_reason,
            message: ready_message,
            ..want("ContainersReady", ready)
        },
        want("PodScheduled", true),
    ];
    if let Some(e) = &run.evicted {
        wanted.insert(
            0,
            Want {
                reason: Some("TerminationByKubelet".into()),
                message: Some(e.message.clone()),
                ..want("DisruptionTarget", true)
            },
        );
    }
    PodStatus {
        phase: Some(phase.to_owned()),
        reason: run.evicted.as_ref().map(|_| "Evicted".to_owned()),
        message: run.evicted.as_ref().map(|e| e.message.clone()),
        conditions: Some(conditions(prev, &wanted, now)),
        host_ip: Some(run.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: run.host_ip.clone(),
        }]),
        pod_ip: Some(run.pod_ip.clone()),
        pod_ips: Some(vec![PodIP {
            ip: run.pod_ip.clone(),
        }]),
        start_time: Some(Time(run.start_time)),
        init_container_statuses: (!run.init.is_empty())
            .then(|| run.init.iter().map(|c| c.to_api(&run.uid)).collect()),
        container_statuses: Some(run.containers.iter().map(|c| c.to_api(&run.uid)).collect()),
        qos_class: previous.and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

/// The containers of `pod` in their initial (not started) state: `(init, regular)`.
pub fn initial_containers(pod: &Pod) -> (Vec<ContainerRun>, Vec<ContainerRun>) {
    let Some(spec) = pod.spec.as_ref() else {
        return (Vec::new(), Vec::new());
    };
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            ContainerRun::new(&c.name, c.image.as_deref().unwrap_or_default(), sidecar)
        })
        .collect();
    let regular = spec
        .containers
        .iter()
        .map(|c| ContainerRun::new(&c.name, c.image.as_deref().unwrap_or_default(), false))
        .collect();
    (init, regular)
}

/// Whether a container that exited with `exit_code` is restarted under `restart_policy`.
pub fn restarts(restart_policy: Option<&str>, exit_code: i32) -> bool {
    match restart_policy.unwrap_or("Always") {
        "Always" => true,
        "OnFailure" => exit_code != 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn run() -> PodRun {
        PodRun {
            uid: "u".into(),
            host_ip: "10.0.0.10".into(),
            pod_ip: "10.244.0.2".into(),
            start_time: t(0),
            init: vec![
                ContainerRun::new("init-externals", "runner", false),
                ContainerRun::new("dind", "docker:dind", true),
            ],
            containers: vec![ContainerRun::new("runner", "runner", false)],
            evicted: None,
        }
    }

    fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    #[test]
    fn a_new_pod_is_pending_and_not_initialized() {
        let s = pod_status(&run(), None, t(1));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "Initialized").status, "False");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
        assert_eq!(c.container_id, None);
    }

    #[test]
    fn running_and_ready_with_init_completed_and_sidecar_running() {
        let mut r = run();
        r.init[0].state = RunState::exited(0, Some(t(1)), t(2));
        r.init[1].state = RunState::Running { started: t(2) };
        r.init[1].ready = true;
        r.containers[0].state = RunState::Running { started: t(3) };
        r.containers[0].ready = true;
        let s = pod_status(&r, None, t(3));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        for c in [
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodReadyToStartContainers",
        ] {
            assert_eq!(cond(&s, c).status, "True", "{c}");
        }
        let init = s.init_container_statuses.as_ref().unwrap();
        assert_eq!(
            init[0]
                .state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("Completed")
        );
        assert!(init[1].state.as_ref().unwrap().running.is_some());
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.2"));
        assert!(s.start_time.is_some());
    }

    #[test]
    fn an_unready_container_is_named() {
        let mut r = run();
        r.init.clear();
        r.containers[0].state = RunState::Running { started: t(3) };
        let s = pod_status(&r, None, t(3));
        let ready = cond(&s, "Ready");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [runner]")
        );
    }

    #[test]
    fn exit_codes_decide_the_terminal_phase() {
        let mut r = run();
        r.containers[0].state = RunState::exited(0, Some(t(1)), t(9));
        assert_eq!(phase(&r), "Succeeded");
        r.containers[0].state = RunState::exited(2, Some(t(1)), t(9));
        assert_eq!(phase(&r), "Failed");
        let s = pod_status(&r, None, t(9));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodFailed"));
        let term = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (2, Some("Error")));
    }

    #[test]
    fn eviction_fails_the_pod_with_reason_evicted() {
        let mut r = run();
        r.containers[0].state = RunState::Running { started: t(3) };
        r.evicted = Some(Evicted {
            message: "The node was low on resource: memory.".into(),
        });
        let s = pod_status(&r, None, t(4));
        assert_eq!(
            (s.phase.as_deref(), s.reason.as_deref()),
            (Some("Failed"), Some("Evicted"))
        );
        assert_eq!(
            cond(&s, "DisruptionTarget").reason.as_deref(),
            Some("TerminationByKubelet")
        );
    }

    #[test]
    fn transition_times_change_only_with_status() {
        let mut r = run();
        let first = pod_status(&r, None, t(1));
        r.containers[0].state = RunState::Running { started: t(5) };
        r.init[0].state = RunState::exited(0, None, t(4));
        r.init[1].state = RunState::Running { started: t(4) };
        let second = pod_status(&r, Some(&first), t(5));
        assert_eq!(
            cond(&second, "PodScheduled").last_transition_time,
            Some(Time(t(1)))
        );
        assert_eq!(
            cond(&second, "Initialized").last_transition_time,
            Some(Time(t(5)))
        );
    }

    #[test]
    fn unschedulable_pods_stay_pending() {
        let s = unschedulable(None, "0/1 nodes are available: 1 Too many pods.", t(1));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let c = cond(&s, "PodScheduled");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("Unschedulable"))
        );
    }

    #[test]
    fn restart_policy_semantics() {
        assert!(restarts(None, 0));
        assert!(restarts(Some("OnFailure"), 1));
        assert!(!restarts(Some("OnFailure"), 0));
        assert!(!restarts(Some("Never"), 1));
    }

    #[test]
    fn native_sidecars_are_recognised() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i", "image": "x"}, {"name": "s", "image": "y", "restartPolicy": "Always"}],
                "containers": [{"name": "runner", "image": "r"}]
            }
        }))
        .unwrap();
        let (init, regular) = initial_containers(&pod);
        assert_eq!(init.iter().map(|c| c.sidecar).collect::<Vec<_>>(), [false, true]);
        assert_eq!(regular[0].name, "runner");
    }
}
