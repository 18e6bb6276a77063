//! One pod on a simulated node, from admission to deletion: what a kubelet does for it.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use chrono::Utc;
use k8s_openapi::{
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        core::v1::{ConfigMap, Container, Pod, PodStatus, Secret, ServiceAccount},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::{
    config::{ListenerKubeconfig, ListenerSettings},
    env::{self, Sources},
    fault::Fault,
    process,
    sim::Shared,
    status::{self, EXIT_SIGKILL, EXIT_SIGTERM, Evicted, PodRun, RunState},
    summary::PodKind,
};

/// How often a kubelet-style deletion confirmation is tried before giving up.
const CONFIRM_ATTEMPTS: u32 = 30;

/// How often a failed status write is tried (the kubelet retries until it succeeds).
const STATUS_WRITE_ATTEMPTS: u32 = 20;
/// Wait between status write attempts.
const STATUS_WRITE_RETRY: Duration = Duration::from_millis(250);

/// Message from the simulator's loop to a pod's worker.
#[derive(Debug)]
pub(crate) enum PodEvent {
    /// The pod changed (deletion requested, maybe).
    Updated(Box<Pod>),
    /// The pod is gone from the API.
    Deleted,
    /// OOM-kill the main container.
    Oom,
    /// The main container crashes (exits 1).
    Crash,
    /// Evict the pod.
    Evict,
    /// The simulator stops.
    Stop,
}

/// Message from a worker to the simulator's loop.
#[derive(Debug)]
pub(crate) enum Report {
    /// The pod reached Succeeded or Failed: its slot is free.
    Terminal {
        /// `namespace/name`.
        key: String,
        /// Pod UID.
        uid: String,
    },
    /// The worker ended.
    Done {
        /// `namespace/name`.
        key: String,
        /// Pod UID.
        uid: String,
    },
}

/// What interrupts a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Delete(Duration),
    Gone,
    Stop,
    Oom,
    Crash,
    Evict,
}

/// How a main container's run ended.
enum Exit {
    Code {
        code: i32,
        reason: String,
        message: Option<String>,
    },
    Signal(Signal, Option<i32>),
}

impl Exit {
    fn code(code: i32, message: Option<String>) -> Self {
        Self::Code {
            code,
            reason: if code == 0 { "Completed" } else { "Error" }.to_owned(),
            message,
        }
    }

    fn oom() -> Self {
        Self::Code {
            code: EXIT_SIGKILL,
            reason: "OOMKilled".to_owned(),
            message: None,
        }
    }
}

/// Everything a worker starts with.
pub(crate) struct Start {
    pub key: String,
    pub pod: Pod,
    pub node: String,
    pub host_ip: String,
    pub pod_ip: String,
    pub kind: PodKind,
    pub fault: Option<Fault>,
}

/// The kind of a pod: runner, listener (if the simulator runs listeners) or other.
pub(crate) fn kind_of(pod: &Pod, listeners: bool) -> PodKind {
    let Some(spec) = pod.spec.as_ref() else {
        return PodKind::Other;
    };
    let has = |name: &str| spec.containers.iter().find(|c| c.name == name);
    if has("runner").is_some_and(|c| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.name == "ACTIONS_RUNNER_INPUT_JITCONFIG")
    }) {
        PodKind::Runner
    } else if listeners && has("listener").is_some() {
        PodKind::Listener
    } else {
        PodKind::Other
    }
}

fn main_index(pod: &Pod, kind: PodKind) -> usize {
    let name = match kind {
        PodKind::Runner => "runner",
        PodKind::Listener => "listener",
        PodKind::Other => return 0,
    };
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().position(|c| c.name == name))
        .unwrap_or(0)
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    api: Api<Pod>,
    key: String,
    name: String,
    uid: String,
    pod: Pod,
    run: PodRun,
    last: Option<PodStatus>,
    rx: mpsc::UnboundedReceiver<PodEvent>,
    reports: mpsc::UnboundedSender<Report>,
    main: usize,
    kind: PodKind,
    fault: Option<Fault>,
    deleting: bool,
    gone: bool,
    terminal_reported: bool,
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: Start,
        rx: mpsc::UnboundedReceiver<PodEvent>,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Self {
        let ns = start.pod.metadata.namespace.clone().unwrap_or_default();
        let name = start.pod.metadata.name.clone().unwrap_or_default();
        let uid = start.pod.metadata.uid.clone().unwrap_or_default();
        let (init, containers) = status::initial_containers(&start.pod);
        let mut pod = start.pod;
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(start.node.clone());
        }
        let main = main_index(&pod, start.kind);
        Self {
            api: Api::namespaced(shared.client.clone(), &ns),
            shared,
            key: start.key,
            name,
            run: PodRun {
                uid: uid.clone(),
                host_ip: start.host_ip,
                pod_ip: start.pod_ip,
                start_time: Utc::now(),
                init,
                containers,
                evicted: None,
            },
            uid,
            last: pod.status.clone(),
            pod,
            rx,
            reports,
            main,
            kind: start.kind,
            fault: start.fault,
            deleting: false,
            gone: false,
            terminal_reported: false,
        }
    }

    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    fn restart_policy(&self) -> Option<String> {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone())
    }

    fn main_container(&self) -> Option<Container> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.get(self.main).cloned())
    }

    /// Turns an event into a signal; updates the pod on plain changes.
    fn interpret(&mut self, event: Option<PodEvent>) -> Option<Signal> {
        match event {
            None | Some(PodEvent::Stop) => Some(Signal::Stop),
            Some(PodEvent::Deleted) => {
                self.gone = true;
                Some(Signal::Gone)
            }
            Some(PodEvent::Oom) => Some(Signal::Oom),
            Some(PodEvent::Crash) => Some(Signal::Crash),
            Some(PodEvent::Evict) => Some(Signal::Evict),
            Some(PodEvent::Updated(pod)) => {
                let node = self.pod.spec.as_ref().and_then(|s| s.node_name.clone());
                let status = self.pod.status.take();
                self.pod = *pod;
                if let Some(spec) = self.pod.spec.as_mut()
                    && spec.node_name.is_none()
                {
                    spec.node_name = node;
                }
                if self.pod.status.is_none() {
                    self.pod.status = status;
                }
                if self.pod.metadata.deletion_timestamp.is_some() && !self.deleting {
                    self.deleting = true;
                    return Some(Signal::Delete(self.grace()));
                }
                None
            }
        }
    }

    /// Waits `d` unless a signal comes first.
    async fn wait(&mut self, d: Duration) -> Option<Signal> {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return None,
                ev = self.rx.recv() => {
                    if let Some(s) = self.interpret(ev) {
                        return Some(s);
                    }
                }
            }
        }
    }

    /// Writes the pod's status through `pods/status` and mirrors it into the summary.
    async fn write(&mut self) {
        if self.gone {
            return;
        }
        let status = status::pod_status(&self.run, self.last.as_ref(), Utc::now());
        // The summary shows what is being written before the write: once the status is in the
        // API, watchers (and the test server's deletion of a terminated pod) may act on it.
        let phase = status::phase(&self.run).to_owned();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let main = self.run.containers.get(self.main).cloned();
        let evicted = self.run.evicted.is_some();
        self.shared.pod(&self.key, &self.uid, |r| {
            r.phase = phase;
            r.ready = ready;
            r.reason = evicted.then(|| "Evicted".to_owned());
            if let Some(m) = main {
                r.restarts = m.restart_count;
                if let RunState::Terminated {
                    exit_code, reason, ..
                } = &m.state
                {
                    r.exit_code = Some(*exit_code);
                    r.exit_reason = Some(reason.clone());
                }
            }
        });
        let patch = json!({"metadata": {"uid": self.uid}, "status": status});
        // A kubelet's status manager keeps syncing until the API has the status; a write lost
        // to a conflict or a server error would otherwise leave the pod's last state unknown.
        for attempt in 1..=STATUS_WRITE_ATTEMPTS {
            match self
                .api
                .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.gone = true;
                    break;
                }
                Err(e) => {
                    self.shared
                        .update(|s| s.error(format!("writing status of {}: {e}", self.key)));
                    if attempt < STATUS_WRITE_ATTEMPTS {
                        tokio::time::sleep(STATUS_WRITE_RETRY).await;
                    }
                }
            }
        }
        self.last = Some(status);
        let terminal = matches!(status::phase(&self.run), "Succeeded" | "Failed");
        if terminal && !self.terminal_reported {
            self.terminal_reported = true;
            let _ = self.reports.send(Report::Terminal {
                key: self.key.clone(),
                uid: self.uid.clone(),
            });
        }
    }

    fn set_main(&mut self, state: RunState, ready: bool) {
        if let Some(c) = self.run.containers.get_mut(self.main) {
            c.state = state;
            c.ready = ready;
        }
    }

    fn main_started(&self) -> Option<chrono::DateTime<Utc>> {
        match self.run.containers.get(self.main).map(|c| &c.state) {
            Some(RunState::Running { started }) => Some(*started),
            Some(RunState::Terminated { started, .. }) => *started,
            _ => None,
        }
    }

    /// Terminates every running container (except the main one) with `code`.
    fn stop_others(&mut self, code: i32) {
        let now = Utc::now();
        let main = self.main;
        for (i, c) in self
            .run
            .containers
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| *i != main)
            .chain(self.run.init.iter_mut().enumerate())
        {
            let _ = i;
            match &c.state {
                RunState::Running { started } => {
                    c.state = RunState::exited(code, Some(*started), now);
                    c.ready = false;
                }
                RunState::Waiting { .. } => {
                    c.state = RunState::exited(code, None, now);
                }
                RunState::Terminated { .. } => {}
            }
        }
    }

    fn stop_main(&mut self, code: i32, reason: Option<&str>) {
        if !matches!(
            self.run.containers.get(self.main).map(|c| &c.state),
            Some(RunState::Terminated { .. })
        ) {
            let started = self.main_started();
            let mut state = RunState::exited(code, started, Utc::now());
            if let (RunState::Terminated { reason: r, .. }, Some(reason)) = (&mut state, reason) {
                *r = reason.to_owned();
            }
            self.set_main(state, false);
        }
    }

    /// Deletes the pod with grace period 0 once its containers are stopped, as a kubelet
    /// confirms a graceful deletion; like the kubelet, it keeps trying until the API server
    /// took it (a failed confirmation would leave the pod terminating forever).
    async fn confirm_deletion(&mut self) {
        if self.gone {
            return;
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=CONFIRM_ATTEMPTS {
            match self.api.delete(&self.name, &params).await {
                Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => break,
                Err(e) => {
                    // A 409 is either the uid precondition (a pod of the same name replaced
                    // this one: done) or a conflict worth another try; the pod itself says which.
                    let ours = match self.api.get_opt(&self.name).await {
                        Ok(Some(pod)) => pod.metadata.uid.as_deref() == Some(self.uid.as_str()),
                        Ok(None) => false,
                        Err(_) => true,
                    };
                    if !ours {
                        break;
                    }
                    if attempt == CONFIRM_ATTEMPTS {
                        self.shared
                            .update(|s| s.error(format!("deleting {}: {e}", self.key)));
                        break;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        self.gone = true;
    }

    pub(crate) async fn run(mut self) {
        self.shared
            .pod(&self.key, &self.uid, |r| r.phase = "Pending".into());
        self.write().await;
        let signal = self.start().await;
        if let Some(s) = signal {
            self.interrupted(s, None).await;
        }
        self.mark_deleted_if_gone();
        // Its volumes hold Secrets: removed with the pod, as a kubelet does.
        let _ = std::fs::remove_dir_all(self.scratch_dir());
        let _ = self.reports.send(Report::Done {
            key: self.key.clone(),
            uid: self.uid.clone(),
        });
    }

    /// The pod's scratch directory (materialised volumes, kubeconfig).
    fn scratch_dir(&self) -> PathBuf {
        let uid_short: String = self.uid.chars().take(8).collect();
        self.shared
            .config
            .work_dir
            .join(format!("{}_{}_{uid_short}", self.namespace(), self.name))
    }

    fn mark_deleted_if_gone(&self) {
        if self.gone {
            self.shared.pod(&self.key, &self.uid, |r| r.deleted = true);
        }
    }

    /// Runs the pod; returns a signal that ended it early.
    async fn start(&mut self) -> Option<Signal> {
        if self.pod.metadata.deletion_timestamp.is_some() {
            // Deleted before it ever ran here: nothing to stop, confirm the deletion.
            self.deleting = true;
            return Some(Signal::Delete(self.grace()));
        }
        if let Some(s) = self.wait(self.shared.config.start_latency).await {
            return Some(s);
        }
        let now = Utc::now();
        for c in &mut self.run.init {
            if c.sidecar {
                c.state = RunState::Running { started: now };
                c.ready = true;
            } else {
                c.state = RunState::exited(0, Some(now), now);
            }
        }
        let main = self.main;
        for (i, c) in self.run.containers.iter_mut().enumerate() {
            if i != main {
                c.state = RunState::Running { started: now };
                c.ready = true;
            }
        }
        loop {
            let exit = match self.kind {
                PodKind::Runner => self.run_runner().await,
                PodKind::Listener => match self.shared.config.listener.clone() {
                    Some(settings) => self.run_listener(&settings).await,
                    None => self.run_other().await,
                },
                PodKind::Other => self.run_other().await,
            };
            match exit {
                Exit::Signal(s, code) => {
                    self.interrupted(s, code).await;
                    return None;
                }
                Exit::Code {
                    code,
                    reason,
                    message,
                } => {
                    let started = self.main_started();
                    self.set_main(
                        RunState::Terminated {
                            exit_code: code,
                            reason,
                            message,
                            started,
                            finished: Utc::now(),
                        },
                        false,
                    );
                    if status::restarts(self.restart_policy().as_deref(), code) && !self.deleting {
                        if let Some(c) = self.run.containers.get_mut(self.main) {
                            c.last_state = Some(c.state.clone());
                            c.restart_count += 1;
                            c.state = RunState::Waiting {
                                reason: "CrashLoopBackOff".into(),
                                message: Some(format!(
                                    "back-off restarting failed container {} in pod {}",
                                    c.name, self.name
                                )),
                            };
                        }
                        self.write().await;
                        if let Some(s) = self.wait(self.shared.config.restart_backoff).await {
                            self.interrupted(s, None).await;
                            return None;
                        }
                        continue;
                    }
                    self.stop_sidecars_when_done();
                    self.write().await;
                    return self.linger().await;
                }
            }
        }
    }

    /// Once every regular container has exited, the kubelet stops native sidecars (their exit
    /// codes do not count towards the pod's phase).
    fn stop_sidecars_when_done(&mut self) {
        if !self
            .run
            .containers
            .iter()
            .all(|c| matches!(c.state, RunState::Terminated { .. }))
        {
            return;
        }
        let now = Utc::now();
        for c in self.run.init.iter_mut().filter(|c| c.sidecar) {
            if let RunState::Running { started } = c.state {
                c.state = RunState::exited(0, Some(started), now);
                c.ready = false;
            }
        }
    }

    /// After the main container is done for good: wait for deletion (stopping the other
    /// containers then), eviction or the end.
    async fn linger(&mut self) -> Option<Signal> {
        loop {
            let ev = self.rx.recv().await;
            match self.interpret(ev) {
                None | Some(Signal::Oom | Signal::Crash) => {}
                Some(s) => {
                    self.interrupted(s, None).await;
                    if matches!(s, Signal::Evict) {
                        continue;
                    }
                    return None;
                }
            }
        }
    }

    /// Handles a signal that stops the pod's containers.
    async fn interrupted(&mut self, signal: Signal, main_code: Option<i32>) {
        match signal {
            Signal::Delete(_) => {
                self.stop_main(main_code.unwrap_or(EXIT_SIGTERM), None);
                self.stop_others(EXIT_SIGTERM);
                self.write().await;
                self.confirm_deletion().await;
            }
            Signal::Evict => {
                self.stop_main(main_code.unwrap_or(EXIT_SIGKILL), None);
                self.stop_others(EXIT_SIGKILL);
                self.run.evicted = Some(Evicted {
                    message: "The node was low on resource: memory. ".to_owned(),
                });
                self.write().await;
                if self.deleting {
                    self.confirm_deletion().await;
                    return;
                }
                // An evicted pod stays Failed until someone deletes it.
                loop {
                    let ev = self.rx.recv().await;
                    match self.interpret(ev) {
                        Some(Signal::Delete(_)) => {
                            self.confirm_deletion().await;
                            return;
                        }
                        Some(Signal::Gone | Signal::Stop) => return,
                        _ => {}
                    }
                }
            }
            Signal::Oom => {
                self.stop_main(EXIT_SIGKILL, Some("OOMKilled"));
                self.write().await;
            }
            Signal::Crash => {
                self.stop_main(1, Some("Error"));
                self.write().await;
            }
            Signal::Gone | Signal::Stop => {}
        }
    }

    /// Reads the Secrets and ConfigMaps the pod references.
    async fn sources(&self) -> Result<Sources, String> {
        let (secrets, maps) = env::references(&self.pod);
        let ns = self.namespace();
        let s_api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &ns);
        let c_api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &ns);
        let mut out = Sources::default();
        for name in secrets {
            let s = s_api
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading secret {name:?}: {e}"))?;
            out.secrets.insert(
                name,
                s.map(|s| {
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect()
                }),
            );
        }
        for name in maps {
            let c = c_api
                .get_opt(&name)
                .await
                .map_err(|e| format!("reading configmap {name:?}: {e}"))?;
            out.config_maps.insert(
                name,
                c.map(|c| {
                    let mut d: BTreeMap<String, Vec<u8>> = c
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    d.extend(
                        c.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    d
                }),
            );
        }
        Ok(out)
    }

    /// Resolves the main container's environment, retrying (as `CreateContainerConfigError`)
    /// until it works or a signal comes.
    async fn configure<T>(
        &mut self,
        mut prepare: impl FnMut(&Pod, &Container, &Sources) -> Result<T, String>,
    ) -> Result<T, Signal> {
        let Some(container) = self.main_container() else {
            return Err(Signal::Stop);
        };
        loop {
            let result = match self.sources().await {
                Ok(src) => prepare(&self.pod, &container, &src),
                Err(e) => Err(e),
            };
            match result {
                Ok(t) => return Ok(t),
                Err(message) => {
                    self.set_main(
                        RunState::Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message: Some(message),
                        },
                        false,
                    );
                    self.write().await;
                    if let Some(s) = self.wait(Duration::from_secs(1)).await {
                        return Err(s);
                    }
                }
            }
        }
    }

    fn signal_exit(&self, s: Signal) -> Exit {
        match s {
            Signal::Oom => Exit::oom(),
            Signal::Crash => Exit::code(1, Some("injected crash".into())),
            Signal::Delete(_) => Exit::Signal(s, Some(EXIT_SIGTERM)),
            Signal::Evict => Exit::Signal(s, Some(EXIT_SIGKILL)),
            Signal::Gone | Signal::Stop => Exit::Signal(s, None),
        }
    }

    /// Applies an injected fault to a running main container, if there is one.
    fn injected(&mut self) -> Option<Exit> {
        match self.fault.take()? {
            Fault::Exit(code) => Some(Exit::code(code, Some("injected failure".into()))),
            Fault::OomKill => Some(Exit::oom()),
            Fault::Evict => Some(Exit::Signal(Signal::Evict, Some(EXIT_SIGKILL))),
        }
    }

    /// A container the simulator does not know: runs until stopped.
    async fn run_other(&mut self) -> Exit {
        self.set_main(RunState::Running { started: Utc::now() }, true);
        self.write().await;
        if let Some(e) = self.injected() {
            return e;
        }
        loop {
            let ev = self.rx.recv().await;
            if let Some(s) = self.interpret(ev) {
                return self.signal_exit(s);
            }
        }
    }

    fn runner_record(&self, f: impl FnOnce(&mut crate::summary::RunnerRecord)) {
        self.shared.pod(&self.key, &self.uid, |r| {
            f(r.runner.get_or_insert_with(Default::default));
        });
    }

    /// The runner: reads its JIT configuration, registers with the fake GitHub, takes the
    /// assigned job, runs it for its duration, finishes it and exits 0.
    async fn run_runner(&mut self) -> Exit {
        let jit = match self
            .configure(|pod, c, src| {
                let env = env::resolve_env(pod, c, src).map_err(|e| e.to_string())?;
                Ok(env
                    .into_iter()
                    .find(|(k, _)| k == "ACTIONS_RUNNER_INPUT_JITCONFIG")
                    .map(|(_, v)| v))
            })
            .await
        {
            Ok(jit) => jit,
            Err(s) => return self.signal_exit(s),
        };
        self.set_main(RunState::Running { started: Utc::now() }, true);
        self.write().await;
        if let Some(e) = self.injected() {
            return e;
        }
        let Some(github) = self.shared.github.clone() else {
            self.runner_record(|r| r.error = Some("no fake GitHub configured".into()));
            return Exit::code(1, Some("no GitHub to register with".into()));
        };
        let started = match jit.as_deref().map(|j| github.runner_start(j)) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let msg = format!("runner registration failed: {} {}", e.status, e.message);
                self.runner_record(|r| r.error = Some(msg.clone()));
                return Exit::code(1, Some(msg));
            }
            None => {
                self.runner_record(|r| r.error = Some("ACTIONS_RUNNER_INPUT_JITCONFIG is not set".into()));
                return Exit::code(1, Some("no JIT configuration".into()));
            }
        };
        self.runner_record(|r| {
            r.runner_id = Some(started.runner_id);
            r.runner_name = Some(started.name.clone());
        });
        loop {
            match github.runner_take_job(started.runner_id) {
                Ok(Some(job)) => {
                    self.runner_record(|r| r.job_id = Some(job.runner_request_id));
                    if let Some(s) = self.wait(job.duration).await {
                        // The runner dies with its job: the service fails the job.
                        if let Err(e) = github.runner_lost(started.runner_id) {
                            self.runner_record(|r| {
                                r.error = Some(format!("losing the job failed: {}", e.message))
                            });
                        }
                        return self.signal_exit(s);
                    }
                    return match github.runner_finish(started.runner_id, "succeeded") {
                        Ok(_) => {
                            self.runner_record(|r| r.finished = true);
                            Exit::code(0, None)
                        }
                        Err(e) => {
                            let msg = format!("finishing the job failed: {} {}", e.status, e.message);
                            self.runner_record(|r| r.error = Some(msg.clone()));
                            Exit::code(1, Some(msg))
                        }
                    };
                }
                Ok(None) => {
                    if let Some(s) = self.wait(self.shared.config.job_poll_interval).await {
                        return self.signal_exit(s);
                    }
                }
                Err(e) => {
                    let msg = format!("runner registration lost: {} {}", e.status, e.message);
                    self.runner_record(|r| r.error = Some(msg.clone()));
                    return Exit::code(1, Some(msg));
                }
            }
        }
    }

    /// Writes a kubeconfig for the pod's ServiceAccount (TokenRequest) into `dir`.
    async fn service_account_kubeconfig(
        &self,
        cluster_from: &std::path::Path,
        expiration: Duration,
        dir: &std::path::Path,
    ) -> Result<PathBuf, String> {
        let ns = self.namespace();
        let sa = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let cluster = crate::kubeconfig::read_cluster(cluster_from).map_err(|e| e.to_string())?;
        let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &ns);
        let request = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(i64::try_from(expiration.as_secs()).unwrap_or(3600)),
                bound_object_ref: Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.name.clone()),
                    uid: Some(self.uid.clone()),
                }),
            },
            status: None,
        };
        let token = api
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("TokenRequest for serviceaccount {ns}/{sa}: {e}"))?
            .status
            .map(|s| s.token)
            .ok_or_else(|| format!("TokenRequest for serviceaccount {ns}/{sa} returned no token"))?;
        let path = dir.join("kubeconfig");
        std::fs::write(&path, crate::kubeconfig::with_token(&cluster, &token, &ns))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path)
    }

    /// The listener: the real binary as a local process with the pod's command, environment
    /// and volumes; Ready from its readiness probe; SIGTERM on deletion.
    async fn run_listener(&mut self, settings: &ListenerSettings) -> Exit {
        let ns = self.namespace();
        let scratch = self.scratch_dir();
        let prepared = self
            .configure(|pod, c, src| {
                let env = env::resolve_env(pod, c, src).map_err(|e| e.to_string())?;
                let (files, mappings) =
                    env::plan_volumes(pod, c, src, &scratch).map_err(|e| e.to_string())?;
                Ok((env, files, mappings))
            })
            .await;
        let (env, files, mappings) = match prepared {
            Ok(p) => p,
            Err(s) => return self.signal_exit(s),
        };
        let Some(container) = self.main_container() else {
            return Exit::code(128, Some("no listener container".into()));
        };
        let setup = async {
            let volumes = scratch.join("volumes");
            for m in &mappings {
                // A whole volume is a directory; a `subPath` mount is a file inside one.
                let dir = if m.local.parent() == Some(volumes.as_path()) {
                    m.local.as_path()
                } else {
                    m.local.parent().unwrap_or(volumes.as_path())
                };
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            for f in &files {
                let path = scratch.join(&f.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                std::fs::write(&path, &f.content).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            std::fs::create_dir_all(&settings.log_dir)
                .map_err(|e| format!("{}: {e}", settings.log_dir.display()))?;
            let kubeconfig = match &settings.kubeconfig {
                ListenerKubeconfig::File(p) => p.clone(),
                ListenerKubeconfig::ServiceAccountToken {
                    cluster_from,
                    expiration,
                } => {
                    self.service_account_kubeconfig(cluster_from, *expiration, &scratch)
                        .await?
                }
            };
            let port = process::free_port().map_err(|e| format!("no free port: {e}"))?;
            Ok::<_, String>((kubeconfig, port))
        };
        let (kubeconfig, port) = match setup.await {
            Ok(x) => x,
            Err(e) => return Exit::code(128, Some(e)),
        };
        let launch = process::launch(
            &container,
            &env,
            &mappings,
            &settings.binary,
            port,
            &kubeconfig,
            &scratch,
        );
        let log = settings.log_dir.join(format!("{ns}_{}.log", self.name));
        self.shared
            .pod(&self.key, &self.uid, |r| r.log_file = Some(log.clone()));
        let mut child = match process::spawn(&launch, &log, &scratch) {
            Ok(c) => c,
            Err(e) => {
                return Exit::Code {
                    code: 128,
                    reason: "StartError".into(),
                    message: Some(format!("starting {}: {e}", settings.binary.display())),
                };
            }
        };
        let pid = child.id();
        self.shared.pod(&self.key, &self.uid, |r| {
            r.pid = pid;
            r.admin_port = Some(port);
        });
        let exit = self
            .supervise_listener(&container, settings, port, &mut child)
            .await;
        self.shared.pod(&self.key, &self.uid, |r| {
            r.pid = None;
            r.admin_port = None;
        });
        exit
    }

    /// Probes the listener process and handles pod events until its container exits.
    async fn supervise_listener(
        &mut self,
        container: &Container,
        settings: &ListenerSettings,
        port: u16,
        child: &mut tokio::process::Child,
    ) -> Exit {
        // Readiness is probed at most `max_probe_period` apart (it only moves the Ready
        // condition); liveness keeps the pod's own timing, since it kills the process.
        let mut readiness = container
            .readiness_probe
            .as_ref()
            .and_then(|p| process::HttpProbe::new(container, p, false))
            .map(|mut p| {
                p.period = p.period.min(settings.max_probe_period);
                p.initial_delay = p.initial_delay.min(settings.max_probe_period);
                p
            });
        let mut liveness = container
            .liveness_probe
            .as_ref()
            .and_then(|p| process::HttpProbe::new(container, p, true));
        let started = tokio::time::Instant::now();
        let first =
            |p: &Option<process::HttpProbe>| p.as_ref().map_or(started, |p| started + p.initial_delay);
        let mut next_readiness = first(&readiness);
        let mut next_liveness = first(&liveness);
        self.set_main(RunState::Running { started: Utc::now() }, readiness.is_none());
        self.write().await;
        if let Some(e) = self.injected() {
            process::kill(child).await;
            return e;
        }
        loop {
            tokio::select! {
                st = child.wait() => {
                    let code = st.map_or(255, process::exit_code);
                    return Exit::code(code, None);
                }
                () = tokio::time::sleep_until(next_readiness), if readiness.is_some() => {
                    let Some(p) = readiness.as_mut() else { continue };
                    next_readiness = tokio::time::Instant::now() + p.period;
                    let ok = process::probe(port, &p.path, p.timeout).await;
                    if p.observe(ok) {
                        let passing = p.passing;
                        if let Some(c) = self.run.containers.get_mut(self.main) {
                            c.ready = passing;
                        }
                        self.write().await;
                    }
                }
                () = tokio::time::sleep_until(next_liveness), if liveness.is_some() => {
                    let Some(p) = liveness.as_mut() else { continue };
                    next_liveness = tokio::time::Instant::now() + p.period;
                    let ok = process::probe(port, &p.path, p.timeout).await;
                    if p.observe(ok) && !p.passing {
                        let path = p.path.clone();
                        let code = process::terminate(child, self.grace()).await;
                        return Exit::Code {
                            code,
                            reason: "Error".into(),
                            message: Some(format!("Liveness probe failed: HTTP probe on {path} failed")),
                        };
                    }
                }
                ev = self.rx.recv() => {
                    let Some(s) = self.interpret(ev) else { continue };
                    return match s {
                        Signal::Oom => {
                            process::kill(child).await;
                            Exit::oom()
                        }
                        Signal::Crash => {
                            process::kill(child).await;
                            Exit::code(1, Some("injected crash".into()))
                        }
                        Signal::Evict => {
                            let code = process::kill(child).await;
                            Exit::Signal(s, Some(code))
                        }
                        Signal::Delete(grace) => {
                            let code = process::terminate(child, grace).await;
                            Exit::Signal(s, Some(code))
                        }
                        Signal::Gone => {
                            let code = process::terminate(child, self.grace()).await;
                            Exit::Signal(s, Some(code))
                        }
                        Signal::Stop => {
                            let code = process::terminate(child, self.grace().min(Duration::from_secs(10))).await;
                            Exit::Signal(s, Some(code))
                        }
                    };
                }
            }
        }
    }
}
