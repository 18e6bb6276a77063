//! The end-to-end harness: the real `rssc-controller` and `rssc-listener` binaries against the
//! fake GitHub (over TLS, trusted through the AutoscaleSet's CA bundle), the Kubernetes API test
//! server — or the cluster `RSSC_E2E_KUBECONFIG` names — and the node simulator, which runs
//! runner Pods against the fake and listener Pods as real processes.

pub mod invariants;
pub mod otlp;
pub mod peaks;
pub mod scenario;
pub mod waterfall;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use rssc_sim_github::{FakeConfig, FakeGitHub, TlsFiles};
use rssc_sim_node::{ListenerKubeconfig, ListenerSettings, NodeSim, PodSelector, Scheduling, SimConfig};
use rssc_test_support::{Cluster, fault_proxy::FaultProxy};
use tokio::{process::Child, time::timeout};

/// How long any single condition may take.
pub const WAIT: Duration = Duration::from_secs(120);
/// The token the fake GitHub accepts; tests check it appears in no log.
pub const PAT: &str = "ghp_e2e_planted_secret_3f9a1c";

/// Everything a scenario runs against.
pub struct Harness {
    /// Kubernetes client (admin).
    pub client: Client,
    /// Namespace of this scenario.
    pub namespace: String,
    /// The fake GitHub.
    pub github: Arc<FakeGitHub>,
    /// The node simulator.
    pub nodes: Option<NodeSim>,
    /// Where the processes write their logs.
    pub logs: PathBuf,
    controller: Option<Child>,
    controller_launch: ControllerLaunch,
    cluster: Cluster,
    real_cluster: bool,
    fault_proxy: Option<FaultProxy>,
}

/// How the controller process is started (kept so a test can restart it after killing it).
#[derive(Debug, Clone)]
struct ControllerLaunch {
    binary: PathBuf,
    kubeconfig: PathBuf,
    env: Vec<(String, String)>,
}

/// How to start a [`Harness`]; the default is what [`Harness::start`] does.
#[derive(Debug, Clone, Default)]
pub struct HarnessOptions {
    /// Run the binaries in this directory instead of building them (debug) first.
    pub bin_dir: Option<PathBuf>,
    /// Install these CRDs (e.g. read from `deploy/crds/`) instead of the generated ones.
    pub crds: Option<Vec<CustomResourceDefinition>>,
    /// Extra environment variables (flags) for the controller.
    pub controller_env: Vec<(String, String)>,
    /// Connect the controller and the listeners through a [`FaultProxy`], so the scenario can
    /// inject Kubernetes API faults on a real cluster as on the test server.
    pub kube_fault_proxy: bool,
    /// How long the fake GitHub holds a long poll with no message before its 202; default
    /// [`TEST_LONG_POLL_WINDOW`], which keeps tests quick.
    pub github_long_poll_window: Option<Duration>,
    /// How many simulated nodes run the Pods, each with the kubelet's default room
    /// ([`rssc_sim_node::config::DEFAULT_MAX_PODS`]); default one, enough for any test.
    pub nodes: Option<usize>,
}

/// The fake GitHub's long-poll window in tests: short, so that a test waiting on the 202
/// path does not wait GitHub's 50 s.
pub const TEST_LONG_POLL_WINDOW: Duration = Duration::from_secs(2);

/// Builds the binaries under test (a no-op when they are current) and returns their directory.
pub fn build_binaries() -> PathBuf {
    rssc_test_support::binaries::build()
}

impl Harness {
    /// Starts everything for the scenario `name`.
    pub async fn start(name: &str) -> Self {
        Self::start_with_controller_env(name, &[]).await
    }

    /// Starts everything for the scenario `name`, with extra environment variables (flags) for
    /// the controller, e.g. `RSSC_PENDING_TIMEOUT_SECONDS`.
    pub async fn start_with_controller_env(name: &str, controller_env: &[(&str, &str)]) -> Self {
        let controller_env = controller_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::start_with(
            name,
            HarnessOptions {
                controller_env,
                ..HarnessOptions::default()
            },
        )
        .await
    }

    /// Starts everything for the scenario `name`, as `options` say.
    pub async fn start_with(name: &str, options: HarnessOptions) -> Self {
        let controller_env = &options.controller_env;
        let started = std::time::Instant::now();
        let bin = options.bin_dir.clone().unwrap_or_else(build_binaries);
        eprintln!("[e2e] binaries built: after {:.1?}", started.elapsed());
        let cluster = match &options.crds {
            Some(crds) => Cluster::connect_with_crds(&format!("e2e-{name}"), crds).await,
            None => Cluster::connect(&format!("e2e-{name}")).await,
        };
        let (client, namespace, real_cluster) = (
            cluster.client.clone(),
            cluster.namespace.clone(),
            cluster.is_real(),
        );
        let logs = std::env::temp_dir().join(format!("rssc-{namespace}"));
        std::fs::create_dir_all(&logs).unwrap();
        // What the processes under test connect with: the cluster's kubeconfig, or the proxy's.
        let (kubeconfig, fault_proxy) = if options.kube_fault_proxy {
            let proxy = start_fault_proxy(&cluster.kubeconfig).await;
            let path = logs.join("proxy-kubeconfig");
            proxy.write_kubeconfig(&path, &namespace).unwrap();
            (path, Some(proxy))
        } else {
            (cluster.kubeconfig.clone(), None)
        };

        // GitHub, over TLS with a certificate made for this run.
        let key =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = key.cert.pem();
        let github = Arc::new(
            FakeGitHub::start_tls(
                FakeConfig {
                    long_poll_window: options.github_long_poll_window.unwrap_or(TEST_LONG_POLL_WINDOW),
                    tick: Duration::from_millis(10),
                    ..FakeConfig::default()
                },
                TlsFiles {
                    cert_chain_pem: cert.clone(),
                    private_key_pem: key.signing_key.serialize_pem(),
                },
            )
            .await
            .unwrap(),
        );
        github.add_pat(PAT);

        // The controller, as a process (started below, once the nodes are up).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env: Vec<(String, String)> = [
            ("POD_NAME", "controller-0".to_owned()),
            ("POD_NAMESPACE", namespace.clone()),
            ("RSSC_WATCH_NAMESPACE", namespace.clone()),
            ("RSSC_ADMIN_ADDR", format!("127.0.0.1:{port}")),
            ("RSSC_LOG_FORMAT", "json".to_owned()),
            ("RSSC_PENDING_GRACE_SECONDS", "5".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in controller_env {
            env.retain(|(key, _)| key != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let controller_launch = ControllerLaunch {
            binary: bin.join("rssc-controller"),
            kubeconfig: kubeconfig.clone(),
            env,
        };

        let mut harness = Self {
            client,
            namespace: namespace.clone(),
            github,
            nodes: None,
            logs: logs.clone(),
            controller: None,
            controller_launch,
            cluster,
            real_cluster,
            fault_proxy,
        };
        harness.config_map("github-ca", "ca.pem", &cert).await;
        harness.secret("github-token", "token", PAT).await;

        // Nodes that run runner Pods against the fake and listener Pods as processes.
        let first_node = format!("sim-{namespace}");
        let mut sim = SimConfig::new(&first_node);
        sim.node_names = rssc_sim_node::config::node_names(&first_node, options.nodes.unwrap_or(1));
        sim.scheduling = if real_cluster {
            Scheduling::External
        } else {
            Scheduling::Bind
        };
        sim.selector = PodSelector {
            namespace: Some(namespace.clone()),
            ..PodSelector::default()
        };
        sim.work_dir = logs.join("nodes");
        sim.delete_nodes_on_stop = true;
        sim.listener = Some(ListenerSettings {
            binary: bin.join("rssc-listener"),
            log_dir: logs.clone(),
            kubeconfig: if real_cluster {
                ListenerKubeconfig::ServiceAccountToken {
                    cluster_from: kubeconfig.clone(),
                    expiration: Duration::from_secs(3600),
                }
            } else {
                ListenerKubeconfig::File(kubeconfig.clone())
            },
            max_probe_period: Duration::from_millis(500),
        });
        let nodes = NodeSim::start(harness.client.clone(), sim, Some(harness.github.clone()))
            .await
            .expect("the node simulator starts");

        harness.controller = Some(harness.spawn_controller());
        harness.nodes = Some(nodes);
        harness
    }

    fn spawn_controller(&self) -> Child {
        let launch = &self.controller_launch;
        // Appended, so a restarted controller's log follows the killed one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join("controller.log"))
            .unwrap();
        tokio::process::Command::new(&launch.binary)
            .env("KUBECONFIG", &launch.kubeconfig)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("the rssc-controller binary starts")
    }

    /// Kills the controller with SIGKILL (as a crash or a node loss would) and waits for it to
    /// be gone.
    pub async fn kill_controller(&mut self) {
        let mut controller = self.controller.take().expect("the controller runs");
        controller.start_kill().expect("SIGKILL reaches the controller");
        timeout(WAIT, controller.wait())
            .await
            .expect("the killed controller exits")
            .unwrap();
    }

    /// Starts the controller again after [`Harness::kill_controller`].
    pub fn restart_controller(&mut self) {
        assert!(self.controller.is_none(), "the controller is already running");
        self.controller = Some(self.spawn_controller());
    }

    /// Whether the controller process is still running (it never exits on bad input).
    pub fn controller_alive(&mut self) -> bool {
        self.controller
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The Kubernetes API test server's fault switches and request log; `None` on a real cluster.
    pub fn kube_faults(&self) -> Option<&std::sync::Arc<rssc_test_support::Faults>> {
        match &self.fault_proxy {
            Some(proxy) => Some(proxy.faults()),
            None => self.cluster.test_server().map(|s| s.faults()),
        }
    }

    /// An API for `K` in the scenario's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        self.cluster.api()
    }

    /// Applies a manifest (server-side apply) in the scenario's namespace.
    pub async fn apply<K>(&self, manifest: serde_json::Value)
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let name = manifest["metadata"]["name"].as_str().expect("a name").to_owned();
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply("rssc-e2e").force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap();
    }

    /// Creates a ConfigMap with one key.
    pub async fn config_map(&self, name: &str, key: &str, value: &str) {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([(key.to_owned(), value.to_owned())].into()),
            ..Default::default()
        };
        self.api::<ConfigMap>()
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }

    /// Creates a Secret with one key.
    pub async fn secret(&self, name: &str, key: &str, value: &str) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some([(key.to_owned(), value.to_owned())].into()),
            ..Default::default()
        };
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Whether the scenario runs against a real cluster.
    pub fn real_cluster(&self) -> bool {
        self.real_cluster
    }

    /// The cluster: its kubeconfig, and the test server unless it is real.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Process id of the controller while it runs.
    pub fn controller_pid(&self) -> Option<u32> {
        self.controller.as_ref().and_then(Child::id)
    }

    /// Every log the processes wrote, concatenated.
    pub fn all_logs(&self) -> String {
        let mut text = String::new();
        collect_logs(&self.logs, &mut text);
        text
    }

    /// Stops the controller (SIGTERM, then waits) and the node simulator.
    pub async fn stop(mut self) {
        let started = std::time::Instant::now();
        if let Some(mut controller) = self.controller.take() {
            if let Some(pid) = controller.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let status = timeout(WAIT, controller.wait())
                .await
                .expect("the controller stops on SIGTERM")
                .unwrap();
            assert!(
                status.success(),
                "the controller exits 0 on SIGTERM, got {status}"
            );
            eprintln!("[e2e] the controller stopped: after {:.1?}", started.elapsed());
        }
        if let Some(nodes) = self.nodes.take() {
            nodes.stop().await;
            eprintln!(
                "[e2e] the node simulator stopped: after {:.1?}",
                started.elapsed()
            );
        }
        // Dropping the cluster handle deletes a real cluster's namespace.
        if std::env::var_os("RSSC_E2E_KEEP_LOGS").is_some() {
            eprintln!("[e2e] logs kept in {}", self.logs.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

async fn start_fault_proxy(kubeconfig: &Path) -> FaultProxy {
    FaultProxy::in_front_of(kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("the fault-injecting proxy for {}: {e}", kubeconfig.display()))
}

impl Drop for Harness {
    /// A failing scenario keeps its logs and shows their ends with the test's output, so a CI
    /// failure can be read without a rerun.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!("[e2e] the scenario failed; logs kept in {}", self.logs.display());
        let mut files = Vec::new();
        log_files(&self.logs, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!("[e2e] ---- last {} lines of {} ----", tail.len(), file.display());
            for line in tail {
                let end = line.char_indices().nth(400).map_or(line.len(), |(i, _)| i);
                eprintln!("{}", &line[..end]);
            }
        }
    }
}

/// How much of each log a failed scenario prints.
const LOG_TAIL_LINES: usize = 40;

fn log_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            log_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "log") {
            files.push(path);
        }
    }
    files.sort();
}

fn collect_logs(dir: &Path, text: &mut String) {
    let mut files = Vec::new();
    log_files(dir, &mut files);
    for file in files {
        text.push_str(&std::fs::read_to_string(&file).unwrap_or_default());
    }
}

/// Waits until `check` holds, for at most [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    rssc_test_support::eventually(what, WAIT, check).await;
    // Shown with the test's output when it fails (or with `--nocapture`): where time went.
    eprintln!("[e2e] {what}: after {:.1?}", started.elapsed());
}
