//! Test harness: a Kubernetes API (the test server, or the cluster `RSSC_E2E_KUBECONFIG` names)
//! with our CRDs and a namespace of the test's own, and the fake GitHub over TLS.

#![allow(dead_code)]

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use rssc_api::v1alpha1::{
    AutoscaleSet, EphemeralRunnerSet, EphemeralRunnerSetSpec, NamespacedRef, RunnerConfig, RunnerSetSpec,
};
use rssc_controller::{
    context::Context,
    controllers,
    runner_template::{RunnerDefaults, TemplateSource, resolve},
};
use rssc_github::{ClientOptions, backoff::RetryPolicy};
use rssc_sim_github::{FakeConfig, FakeGitHub, TlsFiles};
use rssc_test_support::Cluster;
use tokio::{sync::watch, task::JoinHandle};

/// How long any condition may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// The token the fake GitHub accepts.
pub const PAT: &str = "ghp_controller_test_token";

/// Sends the controller's logs to the test output (`RUST_LOG` filters them, default `warn`).
pub fn logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// The API server under test and our namespace on it.
pub struct Target {
    cluster: Cluster,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub namespace: String,
}

impl Target {
    pub async fn new(test: &str) -> Self {
        logs();
        let cluster = Cluster::connect(test).await;
        Self {
            client: cluster.client.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
            namespace: cluster.namespace.clone(),
            cluster,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        self.cluster.api()
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        };
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    pub async fn config_map(&self, name: &str, data: &[(&str, &str)]) {
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        self.api::<ConfigMap>()
            .create(&PostParams::default(), &config_map)
            .await
            .unwrap();
    }
}

/// Waits until `check` holds, for at most [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    rssc_test_support::eventually(what, WAIT, check).await;
}

/// The fake GitHub over HTTPS with a certificate made for this run, and the CA to trust it.
pub async fn github() -> (Arc<FakeGitHub>, String) {
    let key =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = key.cert.pem();
    let fake = FakeGitHub::start_tls(
        FakeConfig {
            long_poll_window: Duration::from_millis(200),
            tick: Duration::from_millis(5),
            ..FakeConfig::default()
        },
        TlsFiles {
            cert_chain_pem: cert.clone(),
            private_key_pem: key.signing_key.serialize_pem(),
        },
    )
    .await
    .unwrap();
    fake.add_pat(PAT);
    (Arc::new(fake), cert)
}

/// Controller settings for tests: quick retries, rechecks and backoff (on a loaded machine a
/// few failed calls must not push the next attempt past a test's wait).
pub fn settings() -> rssc_controller::context::Settings {
    rssc_controller::context::Settings {
        github: github_options(),
        recheck: Duration::from_secs(1),
        max_backoff: Duration::from_secs(2),
        ..rssc_controller::context::Settings::default()
    }
}

/// GitHub client options with quick retries.
pub fn github_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_server_delay: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    }
}

/// One of the controllers a test runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reconciler {
    AutoscaleSets,
    RunnerSets,
    EphemeralRunnerSets,
    EphemeralRunners,
}

/// Controllers running inside the test until [`Controllers::stop`].
pub struct Controllers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controllers {
    /// Starts `which` controllers sharing `ctx`.
    pub fn start(ctx: &Arc<Context>, which: &[Reconciler]) -> Self {
        let (stop, stopped) = watch::channel(false);
        let until = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let tasks = which
            .iter()
            .map(|r| {
                let ctx = ctx.clone();
                match r {
                    Reconciler::AutoscaleSets => tokio::spawn(controllers::run_autoscale_sets(ctx, until())),
                    Reconciler::RunnerSets => tokio::spawn(controllers::run_runner_sets(ctx, until())),
                    Reconciler::EphemeralRunnerSets => {
                        tokio::spawn(controllers::run_ephemeral_runner_sets(ctx, until()))
                    }
                    Reconciler::EphemeralRunners => {
                        tokio::spawn(controllers::run_ephemeral_runners(ctx, until()))
                    }
                }
            })
            .collect();
        Self { stop, tasks }
    }

    /// Asks every controller to shut down and waits (bounded) for each.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

/// An AutoscaleSet `linux` on the fake GitHub's `octo-org`, using the `github-token` Secret and
/// trusting the `github-ca` ConfigMap.
pub fn linux_autoscale_set(fake: &FakeGitHub) -> AutoscaleSet {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
        "metadata": {"name": "linux"},
        "spec": {
            "githubConfigURL": fake.config_url("octo-org"), "scaleSetName": "linux",
            "runnerImage": "ghcr.io/actions/actions-runner:latest",
            "personalAccessToken": {"tokenSecretRef": {"name": "github-token"}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}}
        }
    }))
    .unwrap()
}

/// Creates [`linux_autoscale_set`] with its Secret and CA, and waits until it is registered.
pub async fn registered_autoscale_set(t: &Target, fake: &FakeGitHub, ca: &str) -> AutoscaleSet {
    t.config_map("github-ca", &[("ca.pem", ca)]).await;
    t.secret("github-token", &[("token", PAT)]).await;
    t.api::<AutoscaleSet>()
        .create(&PostParams::default(), &linux_autoscale_set(fake))
        .await
        .unwrap();
    eventually("the scale set is registered", || async {
        t.api::<AutoscaleSet>()
            .get("linux")
            .await
            .unwrap()
            .status
            .and_then(|s| s.scale_set_id)
            .is_some()
    })
    .await;
    t.api::<AutoscaleSet>().get("linux").await.unwrap()
}

/// The EphemeralRunnerSet `ci` the RunnerSet controller would write for a registered `asss`:
/// its resolved runner template and registration settings, with `replicas` decided.
pub fn runner_set_for(t: &Target, asss: &AutoscaleSet, replicas: i32) -> EphemeralRunnerSet {
    let rs = RunnerSetSpec {
        autoscale_set_ref: NamespacedRef {
            name: "linux".into(),
            namespace: None,
        },
        runner_group: None,
        runner_template: None,
        listener_template: None,
    };
    let source = TemplateSource {
        autoscale_set_name: "linux",
        autoscale_set: &asss.spec,
        runner_set_name: "ci",
        runner_set: &rs,
    };
    EphemeralRunnerSet::new(
        "ci",
        EphemeralRunnerSetSpec {
            replicas,
            patch_sequence: i64::from(replicas > 0),
            job_ends: 0,
            job_ends_through: None,
            beyond_max: 0,
            max_runners: Some(asss.spec.max_runners),
            runner_template: resolve(source, &RunnerDefaults::default()).unwrap().template,
            runner_config: RunnerConfig {
                autoscale_set_ref: NamespacedRef {
                    name: "linux".into(),
                    namespace: Some(t.namespace.clone()),
                },
                github_config_url: asss.spec.github_config_url.clone(),
                scale_set_id: asss.status.as_ref().unwrap().scale_set_id.unwrap(),
                scale_set_name: "linux".into(),
                work_folder: None,
            },
        },
    )
}

/// A test's runner-making setup: the fake GitHub, the controllers that make runners, and the
/// registered `linux` AutoscaleSet.
pub struct RunnerSetup {
    /// The fake GitHub. Dropping it stops it: a test that does not use it binds it all the
    /// same (`fake: _fake`), or the controllers lose GitHub once their pooled connections close.
    pub fake: Arc<FakeGitHub>,
    /// Its CA certificate.
    pub ca: String,
    /// The AutoscaleSet, EphemeralRunnerSet and EphemeralRunner controllers.
    pub controllers: Controllers,
    /// The registered AutoscaleSet.
    pub asss: AutoscaleSet,
}

/// Starts the AutoscaleSet, EphemeralRunnerSet and EphemeralRunner controllers with `settings`
/// and registers the `linux` AutoscaleSet.
pub async fn runner_setup(t: &Target, settings: rssc_controller::context::Settings) -> RunnerSetup {
    let (fake, ca) = github().await;
    let controllers = start_runner_controllers(t, settings);
    let asss = registered_autoscale_set(t, &fake, &ca).await;
    RunnerSetup {
        fake,
        ca,
        controllers,
        asss,
    }
}

/// Starts the AutoscaleSet, EphemeralRunnerSet and EphemeralRunner reconcilers with a context
/// of their own, as a (re)started controller process has.
pub fn start_runner_controllers(t: &Target, settings: rssc_controller::context::Settings) -> Controllers {
    let ctx = Arc::new(Context::new(t.client.clone(), settings));
    Controllers::start(
        &ctx,
        &[
            Reconciler::AutoscaleSets,
            Reconciler::EphemeralRunnerSets,
            Reconciler::EphemeralRunners,
        ],
    )
}

/// Creates [`runner_set_for`] `asss` with `replicas` and returns it.
pub async fn create_runner_set(t: &Target, asss: &AutoscaleSet, replicas: i32) -> EphemeralRunnerSet {
    let set = runner_set_for(t, asss, replicas);
    t.api::<EphemeralRunnerSet>()
        .create(&PostParams::default(), &set)
        .await
        .unwrap();
    set
}

/// The GitHub runner ID the runner `name` is registered under: its status records it once the
/// runner runs, its JIT Secret from registration on.
pub async fn registered_id(t: &Target, name: &str) -> Option<i64> {
    let runner = t
        .api::<rssc_api::v1alpha1::EphemeralRunner>()
        .get_opt(name)
        .await
        .unwrap()?;
    let secrets = t.api::<Secret>();
    rssc_controller::ephemeral_runner::registered_id(&runner, &secrets)
        .await
        .unwrap()
}

/// Makes the runner's Pod `pod` report its runner container running, as a kubelet would.
pub async fn pod_runs(t: &Target, pod: &str) {
    let status = serde_json::json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "runner", "image": "runner", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {}}}]}});
    t.api::<Pod>()
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}
