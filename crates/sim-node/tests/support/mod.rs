//! Test environment: the Kubernetes API test server by default, or the cluster
//! `RSSC_E2E_KUBECONFIG` points at; rssc's CRDs installed; one fresh namespace per test,
//! deleted afterwards; the fake GitHub with a scale set.

#![allow(dead_code)]

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::FutureExt;
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Namespace, Node, Pod, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use rssc_github::{ActionsClient, ClientOptions, Credentials, GitHubConfig, JobMessage, NewScaleSet, Secret};
use rssc_sim_github::{FakeConfig, FakeGitHub, JobState};
use rssc_sim_kube::KubeServer;
use rssc_sim_node::{
    ListenerKubeconfig, NodeSim, PodSelector, Scheduling, SimConfig, config::SIMULATED_NODE_LABEL,
};
use serde_json::{Value, json};

/// Upper bound for any wait on a condition.
pub const WAIT: Duration = Duration::from_secs(60);
/// PAT the fake GitHub accepts.
pub const PAT: &str = "ghp_sim_node_test";
/// The scale set's name (and the label jobs ask for).
pub const SCALE_SET: &str = "linux";

/// A client, the namespace for this test, and the server if it is the test server.
pub struct Env {
    /// Client for the server under test.
    pub client: Client,
    /// The test's own namespace.
    pub ns: String,
    /// The kubeconfig in use.
    pub kubeconfig: PathBuf,
    /// The test server, when not running against a real cluster.
    pub server: Option<Arc<KubeServer>>,
}

impl Env {
    /// Whether this runs against a real cluster.
    pub fn real(&self) -> bool {
        self.server.is_none()
    }

    /// The simulated node of this test.
    pub fn node_name(&self) -> String {
        format!("sim-{}", self.ns)
    }

    /// A simulator configuration for this test: its own node, this namespace only; it binds
    /// pods itself on the test server (no scheduler there) and leaves that to the cluster's
    /// scheduler on a real cluster (pods are pinned to the node with [`Env::pin`]).
    pub fn sim_config(&self) -> SimConfig {
        let mut c = SimConfig::new(&self.node_name());
        if self.real() {
            c.scheduling = Scheduling::External;
        }
        c.selector = PodSelector {
            namespace: Some(self.ns.clone()),
            ..PodSelector::default()
        };
        c.start_latency = Duration::from_millis(50);
        c.job_poll_interval = Duration::from_millis(50);
        c.restart_backoff = Duration::from_millis(200);
        c.lease_interval = Duration::from_secs(2);
        c
    }

    /// Pins a pod spec (JSON) to this test's node: a `nodeSelector` on its hostname and a
    /// toleration of the simulated nodes' taint, so a real cluster's scheduler puts it there.
    pub fn pin(&self, spec: &mut Value) {
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": self.node_name()});
        spec["tolerations"] =
            json!([{"key": SIMULATED_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]);
    }

    /// How listener processes authenticate: with a token for their Pod's ServiceAccount from
    /// the TokenRequest API, on the test server as on a real cluster (where RBAC applies).
    pub fn listener_kubeconfig(&self) -> ListenerKubeconfig {
        ListenerKubeconfig::ServiceAccountToken {
            cluster_from: self.kubeconfig.clone(),
            expiration: Duration::from_secs(3600),
        }
    }

    /// Pods of this namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates `obj` (JSON) in this namespace through the dynamic API of its kind.
    pub async fn create<K>(&self, obj: Value) -> K
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + serde::Serialize,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns);
        let object: K = serde_json::from_value(obj).expect("a valid object");
        api.create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", K::kind(&())))
    }
}

async fn client_for(path: &Path) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("a client from the kubeconfig")
}

/// Waits until `check` returns `Some`, polling; panics naming `what` after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Applies rssc's CRDs and waits until each is served.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in rssc_api::crd::all() {
        let name = crd.metadata.name.clone().expect("a CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("rssc-sim-node-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        eventually(&format!("CRD {name} to be established"), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

/// Runs `body` in a fresh namespace (with rssc's CRDs installed) against the test server or
/// the `RSSC_E2E_KUBECONFIG` cluster, and deletes the namespace afterwards, even on failure.
pub async fn with_env<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Arc<Env>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (server, kubeconfig) = match std::env::var_os("RSSC_E2E_KUBECONFIG") {
        Some(path) if !path.is_empty() => (None, PathBuf::from(path)),
        _ => {
            let server = KubeServer::start().await.expect("the test server starts");
            let path = server.kubeconfig_path().to_owned();
            (Some(Arc::new(server)), path)
        }
    };
    let client = client_for(&kubeconfig).await;
    install_crds(&client).await;
    let suffix: u32 = rand_suffix();
    let ns = format!("simnode-{name}-{suffix:06}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("a namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
    // Pods need the namespace's default ServiceAccount, which a controller creates.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    eventually("the default ServiceAccount", || {
        let sas = sas.clone();
        async move { sas.get_opt("default").await.ok().flatten().map(|_| ()) }
    })
    .await;
    let env = Arc::new(Env {
        client: client.clone(),
        ns: ns.clone(),
        kubeconfig,
        server,
    });
    let node_name = env.node_name();
    let result = std::panic::AssertUnwindSafe(body(env)).catch_unwind().await;
    // The simulator removes its Node and Lease when stopped; a failed test may not get there.
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let _ = leases.delete(&node_name, &DeleteParams::default()).await;
    let _ = nodes.delete(&node_name, &DeleteParams::default()).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().rotate_left(16)) % 1_000_000
}

/// The fake GitHub, a client for it, and a scale set.
pub struct GitHub {
    /// The fake.
    pub fake: Arc<FakeGitHub>,
    /// A client with the PAT.
    pub client: ActionsClient,
    /// The scale set's ID.
    pub scale_set_id: i64,
}

impl GitHub {
    /// Starts the fake and creates the scale set.
    pub async fn start() -> Self {
        let fake = FakeGitHub::start(FakeConfig {
            long_poll_window: Duration::from_millis(300),
            tick: Duration::from_millis(10),
            ..FakeConfig::default()
        })
        .await
        .expect("the fake GitHub starts");
        fake.add_pat(PAT);
        let config = GitHubConfig::parse(&fake.config_url("octo-org")).expect("the fake's config URL");
        let options = ClientOptions {
            request_timeout: Duration::from_secs(5),
            long_poll_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        let client = ActionsClient::new(
            config,
            Credentials::token(Secret::new(PAT.into())).expect("a PAT"),
            options,
        )
        .expect("a client");
        let set = client
            .create_scale_set(&NewScaleSet {
                name: SCALE_SET.into(),
                runner_group_id: 1,
                labels: vec![],
                disable_update: true,
            })
            .await
            .expect("the scale set is created");
        Self {
            fake: Arc::new(fake),
            client,
            scale_set_id: set.id,
        }
    }

    /// A JIT configuration for a runner named `name`: `(encoded, runner id)`.
    pub async fn jit(&self, name: &str) -> (String, i64) {
        let jit = self
            .client
            .generate_jit_config(self.scale_set_id, name, "_work")
            .await
            .expect("a JIT configuration");
        (jit.encoded_jit_config.expose().clone(), jit.runner.id)
    }

    /// Queues a job of `duration` and drives the scale set's message session (as a listener
    /// would) until the job is assigned to the scale set.
    pub async fn assigned_job(&self, duration: Duration) -> i64 {
        let job = self
            .fake
            .queue_job(rssc_sim_github::JobSpec::for_labels([SCALE_SET]).with_duration(duration));
        let mut session = self
            .client
            .create_session(self.scale_set_id, "sim-node-test")
            .await
            .expect("a session");
        let mut last = 0;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = self.fake.with_state(|s| s.jobs.get(&job).map(|j| j.state));
            if matches!(
                state,
                Some(JobState::Assigned | JobState::Running | JobState::Completed)
            ) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job} was not assigned: {state:?}"
            );
            if let Some(msg) = self
                .client
                .get_message(&mut session, last, 10)
                .await
                .expect("a message")
            {
                last = msg.message_id;
                let available: Vec<i64> = msg
                    .jobs
                    .iter()
                    .filter_map(|j| match j {
                        JobMessage::Available { job, .. } => Some(job.runner_request_id),
                        _ => None,
                    })
                    .collect();
                self.client
                    .delete_message(&mut session, msg.message_id)
                    .await
                    .expect("ack");
                if !available.is_empty() {
                    self.client
                        .acquire_jobs(&mut session, &available)
                        .await
                        .expect("acquire");
                }
            }
        }
        let _ = self.client.delete_session(&session).await;
        job
    }

    /// The job's state.
    pub fn job_state(&self, job: i64) -> Option<JobState> {
        self.fake.with_state(|s| s.jobs.get(&job).map(|j| j.state))
    }
}

/// Starts the simulator or panics with the reason.
pub async fn start_sim(env: &Env, config: SimConfig, github: Option<Arc<FakeGitHub>>) -> NodeSim {
    NodeSim::start(env.client.clone(), config, github)
        .await
        .unwrap_or_else(|e| panic!("the node simulator starts: {e}"))
}

/// The container status named `name` of `pod`.
pub fn container_status(pod: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

/// The pod condition `type_` of `pod`: `(status, reason)`.
pub fn condition(pod: &Pod, type_: &str) -> Option<(String, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A plain pod selected by the simulator (component `runner` label, no JIT configuration),
/// pinned to the test's node: it runs until deleted.
pub fn plain_pod(env: &Env, name: &str, restart_policy: &str) -> Value {
    let mut pod = json!({
        "metadata": {
            "name": name,
            "labels": {"scaleset.actions.github.com/component": "runner"}
        },
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "busybox"}]
        }
    });
    env.pin(&mut pod["spec"]);
    pod
}
