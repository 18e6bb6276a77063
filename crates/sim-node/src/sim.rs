//! The simulator: registers its nodes, watches pods, places them (binding mode), runs one
//! worker per pod, and exposes a handle to inspect, inject faults and stop.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Binding, Namespace, Node, ObjectReference, Pod},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use rssc_sim_github::FakeGitHub;
use serde_json::json;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{debug, warn};

use crate::{
    config::{Scheduling, SimConfig},
    fault::FaultPicker,
    node,
    schedule::{self, NodeUsage},
    status,
    summary::{PodRecord, Summary},
    util::key,
    worker::{self, PodEvent, Report, Worker},
};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The work directory cannot be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A wait timed out.
    #[error("timed out after {timeout:?} waiting for {what}; summary: {summary}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The timeout.
        timeout: Duration,
        /// The summary at the time, for the test's failure message.
        summary: String,
    },
    /// The simulator does not run that pod.
    #[error("no running pod {0} on the simulated nodes")]
    UnknownPod(String),
    /// The simulator has stopped.
    #[error("the node simulator has stopped")]
    Stopped,
}

/// State shared by the loop, the workers and the handle.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: SimConfig,
    pub(crate) github: Option<Arc<FakeGitHub>>,
    summary: Mutex<Summary>,
    changed: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn update(&self, f: impl FnOnce(&mut Summary)) {
        {
            let mut s = self
                .summary
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut s);
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Updates the record of pod `key` with UID `uid` (ignored if a newer pod took the name).
    pub(crate) fn pod(&self, key: &str, uid: &str, f: impl FnOnce(&mut PodRecord)) {
        self.update(|s| {
            if let Some(r) = s.pods.get_mut(key).filter(|r| r.uid == uid) {
                f(r);
            }
        });
    }

    fn summary(&self) -> Summary {
        self.summary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

enum Control {
    Inject {
        key: String,
        event: fn() -> PodEvent,
        reply: oneshot::Sender<bool>,
    },
    Stop(oneshot::Sender<()>),
}

/// A running node simulator. Stop it with [`NodeSim::stop`]; dropping it aborts its tasks
/// (listener processes are killed on drop).
pub struct NodeSim {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    tasks: Vec<JoinHandle<()>>,
}

impl NodeSim {
    /// Registers the nodes and starts running pods. `github` is the fake the runner pods
    /// register with (runner pods fail like a runner without network when it is `None`).
    pub async fn start(
        client: Client,
        config: SimConfig,
        github: Option<Arc<FakeGitHub>>,
    ) -> Result<Self, Error> {
        std::fs::create_dir_all(&config.work_dir).map_err(|source| Error::Io {
            path: config.work_dir.display().to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            client,
            config,
            github,
            summary: Mutex::new(Summary::default()),
            changed: watch::channel(0).0,
        });
        let uids = register_nodes(&shared).await?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let leases = tokio::spawn(renew_leases(shared.clone(), uids));
        let main = tokio::spawn(Loop::new(shared.clone()).run(control_rx));
        Ok(Self {
            shared,
            control,
            tasks: vec![main, leases],
        })
    }

    /// A snapshot of what the simulator did.
    pub fn summary(&self) -> Summary {
        self.shared.summary()
    }

    async fn inject(&self, namespace: &str, name: &str, event: fn() -> PodEvent) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        let k = key(namespace, name);
        self.control
            .send(Control::Inject {
                key: k.clone(),
                event,
                reply,
            })
            .map_err(|_| Error::Stopped)?;
        match answer.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::UnknownPod(k)),
            Err(_) => Err(Error::Stopped),
        }
    }

    /// OOM-kills the main container of the pod (exit 137, reason `OOMKilled`); the pod's
    /// restart policy decides what follows.
    pub async fn oom_kill(&self, namespace: &str, name: &str) -> Result<(), Error> {
        self.inject(namespace, name, || PodEvent::Oom).await
    }

    /// Crashes the main container of the pod (exit 1, reason `Error`), e.g. a runner before or
    /// during its job; the pod's restart policy decides what follows.
    pub async fn crash(&self, namespace: &str, name: &str) -> Result<(), Error> {
        self.inject(namespace, name, || PodEvent::Crash).await
    }

    /// Evicts the pod as a kubelet under node pressure does (phase Failed, reason `Evicted`).
    pub async fn evict(&self, namespace: &str, name: &str) -> Result<(), Error> {
        self.inject(namespace, name, || PodEvent::Evict).await
    }

    /// Waits until `pred` holds for the summary, at most `timeout`; the error names `what` and
    /// carries the last summary.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Summary) -> bool,
    ) -> Result<Summary, Error> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.summary();
            if pred(&s) {
                return Ok(s);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: what.to_owned(),
                        timeout,
                        summary: format!("{:?}", self.summary()),
                    });
                }
            }
        }
    }

    /// Stops every pod's containers (listener processes get SIGTERM), removes the work
    /// directory, and removes the Node objects and Leases if so configured. Pods are left as they
    /// are, as when kubelets stop.
    pub async fn stop(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Stop(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.shared.config.work_dir);
        if self.shared.config.delete_nodes_on_stop {
            let nodes: Api<Node> = Api::all(self.shared.client.clone());
            let leases: Api<Lease> = Api::namespaced(self.shared.client.clone(), node::LEASE_NAMESPACE);
            for name in &self.shared.config.node_names {
                let _ = leases.delete(name, &DeleteParams::default()).await;
                let _ = nodes.delete(name, &DeleteParams::default()).await;
            }
        }
    }
}

impl Drop for NodeSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn is_missing_resource(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Creates (or takes over) the Node objects and writes their status; returns their UIDs.
async fn register_nodes(shared: &Arc<Shared>) -> Result<Vec<Option<String>>, Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let cfg = &shared.config;
    let mut uids = Vec::new();
    for (i, name) in cfg.node_names.iter().enumerate() {
        let object = node::node(name, i);
        let created = match nodes.create(&PostParams::default(), &object).await {
            Ok(n) => Ok(n),
            Err(kube::Error::Api(e)) if e.code == 409 => nodes.get(name).await,
            Err(e) => Err(e),
        };
        match created {
            Ok(n) => {
                let now = Utc::now();
                let status = node::node_status(name, i, cfg.max_pods, now, now);
                nodes
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                    .map_err(|source| Error::Kube {
                        action: format!("writing the status of node {name}"),
                        source,
                    })?;
                shared.update(|s| s.nodes_registered.push(name.clone()));
                uids.push(n.metadata.uid);
            }
            Err(e) if is_missing_resource(&e) => {
                // The test server may not serve Nodes; a real cluster always does.
                warn!(node = %name, "the API server does not serve nodes; running without Node objects");
                shared.update(|s| s.nodes_api_missing = true);
                uids.push(None);
            }
            Err(source) => {
                return Err(Error::Kube {
                    action: format!("registering node {name}"),
                    source,
                });
            }
        }
    }
    Ok(uids)
}

/// Renews each node's Lease in `kube-node-lease`, and its Ready heartbeat now and then.
async fn renew_leases(shared: Arc<Shared>, uids: Vec<Option<String>>) {
    let client = shared.client.clone();
    let leases: Api<Lease> = Api::namespaced(client.clone(), node::LEASE_NAMESPACE);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(node::LEASE_NAMESPACE.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    // Present on every real cluster; the test server may need it.
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    let since = Utc::now();
    let mut tick: u64 = 0;
    loop {
        for (i, name) in shared.config.node_names.iter().enumerate() {
            let now = Utc::now();
            let uid = uids.get(i).cloned().flatten();
            let lease = node::lease(name, uid.as_deref(), now);
            let params = PatchParams::apply("rssc-sim-node").force();
            match leases.patch(name, &params, &Patch::Apply(&lease)).await {
                Ok(_) => shared.update(|s| s.lease_renewals += 1),
                Err(e) => shared.update(|s| s.error(format!("renewing lease {name}: {e}"))),
            }
            if uid.is_some() && tick % 6 == 5 {
                let status = node::node_status(name, i, shared.config.max_pods, now, since);
                let _ = nodes
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await;
            }
        }
        tick += 1;
        tokio::time::sleep(shared.config.lease_interval).await;
    }
}

struct Tracked {
    uid: String,
    node: usize,
    terminal: bool,
    events: mpsc::UnboundedSender<PodEvent>,
    task: JoinHandle<()>,
}

struct NodeSlot {
    name: String,
    /// The node's labels, for `nodeSelector`s: fixed for the simulator's life.
    labels: BTreeMap<String, String>,
    used: u32,
    next_ip: u32,
}

struct Loop {
    shared: Arc<Shared>,
    nodes: Vec<NodeSlot>,
    pods: HashMap<String, Tracked>,
    /// Unbound pods waiting for room, by creation time then key.
    pending: BTreeMap<(String, String), Pod>,
    /// The `pending` entry of each pod key: a burst brings a pod event per pod, and finding
    /// a pod by scanning every pending one made each event cost as much as the whole queue.
    pending_by_key: HashMap<String, (String, String)>,
    /// Pending pods already marked unschedulable.
    marked: HashSet<String>,
    faults: FaultPicker,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    init_seen: HashSet<String>,
}

impl Loop {
    fn new(shared: Arc<Shared>) -> Self {
        let nodes = shared
            .config
            .node_names
            .iter()
            .enumerate()
            .map(|(i, n)| NodeSlot {
                name: n.clone(),
                labels: node::node(n, i).metadata.labels.unwrap_or_default(),
                used: 0,
                next_ip: 0,
            })
            .collect();
        let faults = FaultPicker::new(shared.config.failures.clone());
        let (reports_tx, reports) = mpsc::unbounded_channel();
        Self {
            shared,
            nodes,
            pods: HashMap::new(),
            pending: BTreeMap::new(),
            pending_by_key: HashMap::new(),
            marked: HashSet::new(),
            faults,
            reports_tx,
            reports,
            init_seen: HashSet::new(),
        }
    }

    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let cfg = &self.shared.config;
        let api: Api<Pod> = match &cfg.selector.namespace {
            Some(ns) => Api::namespaced(self.shared.client.clone(), ns),
            None => Api::all(self.shared.client.clone()),
        };
        let wc = watcher::Config::default().labels(&cfg.selector.label_selector());
        let mut stream = watcher(api, wc).default_backoff().boxed();
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(ev)) => self.on_watch(ev).await,
                    Some(Err(e)) => self.shared.update(|s| s.error(format!("watching pods: {e}"))),
                    None => return,
                },
                Some(r) = self.reports.recv() => self.on_report(r).await,
                c = control.recv() => match c {
                    Some(Control::Inject { key, event, reply }) => {
                        let ok = match self.pods.get(&key) {
                            Some(t) if !t.terminal => t.events.send(event()).is_ok(),
                            _ => false,
                        };
                        let _ = reply.send(ok);
                    }
                    Some(Control::Stop(done)) => {
                        self.stop_all().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop_all().await;
                        return;
                    }
                },
            }
        }
    }

    async fn stop_all(&mut self) {
        for t in self.pods.values() {
            let _ = t.events.send(PodEvent::Stop);
        }
        for (_, t) in self.pods.drain() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t.task).await;
        }
    }

    async fn on_watch(&mut self, ev: watcher::Event<Pod>) {
        match ev {
            watcher::Event::Init => self.init_seen.clear(),
            watcher::Event::InitApply(pod) => {
                self.init_seen.insert(key(
                    &ns_of(&pod),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                ));
                self.on_pod(pod).await;
            }
            watcher::Event::InitDone => {
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .chain(self.pending.keys().map(|(_, k)| k))
                    .filter(|k| !self.init_seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.on_gone(&k, None);
                }
                self.schedule().await;
            }
            watcher::Event::Apply(pod) => self.on_pod(pod).await,
            watcher::Event::Delete(pod) => {
                let k = key(&ns_of(&pod), pod.metadata.name.as_deref().unwrap_or_default());
                self.on_gone(&k, pod.metadata.uid.as_deref());
                self.schedule().await;
            }
        }
    }

    /// Queues an unbound pod, replacing any pod queued under the same key.
    fn queue(&mut self, created: String, k: String, pod: Pod) {
        self.unqueue(&k);
        self.pending_by_key
            .insert(k.clone(), (created.clone(), k.clone()));
        self.pending.insert((created, k), pod);
    }

    /// Takes the pod queued under key `k` off the queue.
    fn unqueue(&mut self, k: &str) -> Option<Pod> {
        let entry = self.pending_by_key.remove(k)?;
        self.pending.remove(&entry)
    }

    fn on_gone(&mut self, k: &str, uid: Option<&str>) {
        self.unqueue(k);
        self.marked.remove(k);
        let same = self.pods.get(k).is_some_and(|t| uid.is_none_or(|u| u == t.uid));
        if same && let Some(t) = self.pods.get_mut(k) {
            let _ = t.events.send(PodEvent::Deleted);
            if !t.terminal {
                t.terminal = true;
                self.nodes[t.node].used = self.nodes[t.node].used.saturating_sub(1);
            }
        }
        if let Some(u) = uid {
            self.shared.pod(k, u, |r| r.deleted = true);
        }
    }

    async fn on_report(&mut self, r: Report) {
        match r {
            Report::Terminal { key: k, uid } => {
                if let Some(t) = self.pods.get_mut(&k).filter(|t| t.uid == uid && !t.terminal) {
                    t.terminal = true;
                    self.nodes[t.node].used = self.nodes[t.node].used.saturating_sub(1);
                }
            }
            Report::Done { key: k, uid } => {
                if let Some(t) = self.pods.get_mut(&k).filter(|t| t.uid == uid) {
                    if !t.terminal {
                        t.terminal = true;
                        self.nodes[t.node].used = self.nodes[t.node].used.saturating_sub(1);
                    }
                    self.pods.remove(&k);
                }
            }
        }
        self.schedule().await;
    }

    async fn on_pod(&mut self, pod: Pod) {
        let ns = ns_of(&pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let k = key(&ns, &name);
        if !self.shared.config.selector.matches(pod.metadata.labels.as_ref()) {
            return;
        }
        if let Some(t) = self.pods.get(&k) {
            if t.uid == uid {
                let _ = t.events.send(PodEvent::Updated(Box::new(pod)));
                return;
            }
            // Same name, new pod: the old one is gone.
            let old_uid = t.uid.clone();
            self.on_gone(&k, Some(&old_uid));
            self.pods.remove(&k);
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match bound {
            Some(n) => {
                if let Some(i) = self.nodes.iter().position(|x| x.name == n) {
                    // Bound by someone else while it waited here.
                    if self
                        .pending_by_key
                        .get(&k)
                        .and_then(|entry| self.pending.get(entry))
                        .is_some_and(|p| p.metadata.uid.as_deref() == Some(uid.as_str()))
                    {
                        self.unqueue(&k);
                    }
                    self.launch(i, pod);
                }
            }
            None if self.shared.config.scheduling == Scheduling::Bind => {
                if pod.metadata.deletion_timestamp.is_some() {
                    return;
                }
                let created = pod
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_rfc3339())
                    .unwrap_or_default();
                self.queue(created, k, pod);
                self.schedule().await;
            }
            None => {}
        }
    }

    /// Binds pending pods (oldest first) while nodes have room; marks the rest unschedulable.
    async fn schedule(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.pending_by_key.clear();
        let mut usage: Vec<NodeUsage> = self
            .nodes
            .iter()
            .map(|n| NodeUsage {
                name: n.name.clone(),
                max_pods: self.shared.config.max_pods,
                used: n.used,
            })
            .collect();
        for ((created, k), pod) in pending {
            // Each pod launched fills its node: read the counts back for the next pod.
            for (u, n) in usage.iter_mut().zip(&self.nodes) {
                u.used = n.used;
            }
            let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
            let nodes = &self.nodes;
            let fits = |n: &NodeUsage| {
                let i = usage.iter().position(|u| u.name == n.name).unwrap_or(0);
                schedule::selector_fits(selector, &nodes[i].labels)
            };
            let Some(i) = schedule::pick_node(&usage, fits) else {
                if self.marked.insert(k.clone()) {
                    let any_fit = usage.iter().any(fits);
                    let message = if any_fit {
                        schedule::unschedulable_message(&usage)
                    } else {
                        schedule::no_matching_node_message(usage.len())
                    };
                    self.mark_unschedulable(&pod, &message).await;
                }
                self.queue(created, k, pod);
                continue;
            };
            if self.bind(&pod, i).await {
                self.marked.remove(&k);
                self.launch(i, pod);
            }
        }
    }

    async fn mark_unschedulable(&self, pod: &Pod, message: &str) {
        let ns = ns_of(pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let status = status::unschedulable(pod.status.as_ref(), message, Utc::now());
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let patch = json!({"metadata": {"uid": uid}, "status": status});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            self.shared
                .update(|s| s.error(format!("marking {ns}/{name} unschedulable: {e}")));
        }
        let k = key(&ns, &name);
        let kind = worker::kind_of(pod, self.shared.config.listener.is_some());
        self.shared.update(|s| {
            let r = s.pods.entry(k).or_insert_with(|| PodRecord::new(&uid, kind));
            if r.uid != uid {
                *r = PodRecord::new(&uid, kind);
            }
            r.reason = Some("Unschedulable".into());
        });
    }

    /// Binds the pod to node `i` through `pods/binding`; false if the pod cannot be bound
    /// (gone, or bound by someone else).
    async fn bind(&mut self, pod: &Pod, i: usize) -> bool {
        let ns = ns_of(pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &ns);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.nodes[i].name.clone()),
                ..Default::default()
            },
        };
        let body = serde_json::to_vec(&binding).unwrap_or_default();
        match api
            .create_subresource::<serde_json::Value>("binding", &name, &PostParams::default(), body)
            .await
        {
            Ok(_) => true,
            Err(e) if is_missing_resource(&e) => {
                // 404: either the pod is gone or the server has no `pods/binding`.
                match api.get_opt(&name).await {
                    Ok(Some(p)) if p.metadata.uid == pod.metadata.uid => {
                        debug!(pod = %name, "pods/binding is not served; running the pod unbound");
                        self.shared.update(|s| s.binding_api_missing = true);
                        true
                    }
                    _ => false,
                }
            }
            // Bound by another scheduler meanwhile: the watch shows where it went.
            Err(kube::Error::Api(e)) if e.code == 409 => false,
            Err(e) => {
                self.shared
                    .update(|s| s.error(format!("binding {ns}/{name}: {e}")));
                false
            }
        }
    }

    /// Starts the worker of a pod bound to node `i`.
    fn launch(&mut self, i: usize, pod: Pod) {
        let ns = ns_of(&pod);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let k = key(&ns, &name);
        let kind = worker::kind_of(&pod, self.shared.config.listener.is_some());
        let fault = self.faults.pick(&name);
        let slot = &mut self.nodes[i];
        slot.used += 1;
        let pod_ip = node::pod_ip(i, slot.next_ip);
        slot.next_ip += 1;
        let start = worker::Start {
            key: k.clone(),
            node: slot.name.clone(),
            host_ip: node::host_ip(i),
            pod_ip,
            pod,
            kind,
            fault,
        };
        let node_name = slot.name.clone();
        self.shared.update(|s| {
            let mut r = PodRecord::new(&uid, kind);
            r.node = Some(node_name);
            s.pods.insert(k.clone(), r);
        });
        let (events, rx) = mpsc::unbounded_channel();
        let w = Worker::new(self.shared.clone(), start, rx, self.reports_tx.clone());
        let task = tokio::spawn(w.run());
        self.pods.insert(
            k,
            Tracked {
                uid,
                node: i,
                terminal: false,
                events,
                task,
            },
        );
    }
}

fn ns_of(pod: &Pod) -> String {
    pod.metadata.namespace.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::PodKind;

    #[test]
    fn kinds_are_recognised() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        let runner = pod(json!({"metadata": {"name": "r"}, "spec": {"containers": [
            {"name": "runner", "env": [{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": "x"}]}]}}));
        let listener =
            pod(json!({"metadata": {"name": "l"}, "spec": {"containers": [{"name": "listener"}]}}));
        assert_eq!(worker::kind_of(&runner, false), PodKind::Runner);
        assert_eq!(worker::kind_of(&listener, true), PodKind::Listener);
        assert_eq!(worker::kind_of(&listener, false), PodKind::Other);
    }
}
