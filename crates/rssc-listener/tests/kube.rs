//! The listener against a Kubernetes API server: the in-process test server by default, or the
//! cluster `RSSC_E2E_KUBECONFIG` points at. GitHub is the fake on loopback either way.

use std::{collections::BTreeMap, path::PathBuf, process::Stdio, time::Duration};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use prometheus_client::registry::Registry;
use rssc_api::{
    listener_config::{CONFIG_KEY, ListenerAuth, ListenerConfig},
    v1alpha1::{
        EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerSetSpec, EphemeralRunnerSpec, NamespacedRef,
        PodTemplate, RunnerConfig,
    },
};
use rssc_github::{
    ActionsClient, ClientOptions, Credentials, GitHubConfig, NewScaleSet, Secret as Sensitive,
};
use rssc_listener::{
    cluster::KubeCluster,
    metrics::{ListenerMetrics, ScaleSetLabels},
    scaler::Limits,
    service::{Listener, Settings},
};
use rssc_runtime::health::Health;
use rssc_sim_github::{FakeConfig, FakeGitHub, JobSpec};
use rssc_test_support::Cluster;
use tokio::{sync::watch, time::timeout};

const PAT: &str = "ghp_kube_test_token";
const WAIT: Duration = Duration::from_secs(60);

/// The API server under test and a namespace of our own on it.
struct Target {
    cluster: Cluster,
    client: Client,
    kubeconfig: PathBuf,
    namespace: String,
}

impl Target {
    async fn new(test: &str) -> Self {
        let cluster = Cluster::connect(test).await;
        Self {
            client: cluster.client.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
            namespace: cluster.namespace.clone(),
            cluster,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        self.cluster.api()
    }

    async fn replicas(&self, name: &str) -> i32 {
        self.api::<EphemeralRunnerSet>()
            .get(name)
            .await
            .unwrap()
            .spec
            .replicas
    }
}

/// Waits until `check` returns true, for at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    rssc_test_support::eventually(what, WAIT, check).await;
}

struct GitHub {
    fake: FakeGitHub,
    client: ActionsClient,
    scale_set_id: i64,
}

async fn github() -> GitHub {
    let fake = FakeGitHub::start(FakeConfig {
        long_poll_window: Duration::from_millis(200),
        tick: Duration::from_millis(5),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_pat(PAT);
    let config = GitHubConfig::parse_with(&fake.config_url("octo-org"), false).unwrap();
    let client = ActionsClient::new(
        config,
        Credentials::token(Sensitive::new(PAT.into())).unwrap(),
        ClientOptions::default(),
    )
    .unwrap();
    let set = client
        .create_scale_set(&NewScaleSet {
            name: "linux".into(),
            runner_group_id: 1,
            labels: vec![],
            disable_update: true,
        })
        .await
        .unwrap();
    GitHub {
        fake,
        client,
        scale_set_id: set.id,
    }
}

fn runner_config(gh: &GitHub) -> RunnerConfig {
    RunnerConfig {
        autoscale_set_ref: NamespacedRef {
            name: "linux".into(),
            namespace: None,
        },
        github_config_url: "https://github.com/octo-org".into(),
        scale_set_id: gh.scale_set_id,
        scale_set_name: "linux".into(),
        work_folder: None,
    }
}

fn template() -> PodTemplate {
    serde_json::from_value(
        serde_json::json!({"spec": {"containers": [{"name": "runner", "image": "runner"}]}}),
    )
    .unwrap()
}

fn listener_config(gh: &GitHub, namespace: &str, min: i32, max: i32) -> ListenerConfig {
    ListenerConfig {
        github_config_url: gh.fake.config_url("octo-org"),
        scale_set_id: gh.scale_set_id,
        scale_set_name: "linux".into(),
        namespace: namespace.into(),
        ephemeral_runner_set: "linux".into(),
        config_secret: "linux-listener".into(),
        min_runners: min,
        max_runners: max,
        session_owner: format!("{namespace}/linux"),
        auth: ListenerAuth::Token { token: PAT.into() },
        proxy: None,
        ca_bundle: None,
    }
}

async fn create_objects(t: &Target, gh: &GitHub, config: &ListenerConfig) {
    let set = EphemeralRunnerSet::new(
        "linux",
        EphemeralRunnerSetSpec {
            replicas: 0,
            patch_sequence: 0,
            job_ends: 0,
            job_ends_through: None,
            beyond_max: 0,
            max_runners: None,
            runner_template: template(),
            runner_config: runner_config(gh),
        },
    );
    t.api::<EphemeralRunnerSet>()
        .create(&PostParams::default(), &set)
        .await
        .unwrap();
    let runner = EphemeralRunner::new(
        "linux-runner-aaaaa",
        EphemeralRunnerSpec {
            runner_template: template(),
            runner_config: runner_config(gh),
        },
    );
    t.api::<EphemeralRunner>()
        .create(&PostParams::default(), &runner)
        .await
        .unwrap();
    t.api::<Secret>()
        .create(&PostParams::default(), &config_secret(config))
        .await
        .unwrap();
}

fn config_secret(config: &ListenerConfig) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(config.config_secret.clone()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            ByteString(serde_json::to_vec(config).unwrap()),
        )])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_decisions_session_state_and_job_marks_through_the_api() {
    let t = Target::new("listener-api").await;
    let gh = github().await;
    let config = listener_config(&gh, &t.namespace, 0, 10);
    create_objects(&t, &gh, &config).await;

    let (limits_tx, limits) = watch::channel(Limits {
        min_runners: 0,
        max_runners: 10,
    });
    tokio::spawn(rssc_listener::config::follow_limits(
        t.client.clone(),
        t.namespace.clone(),
        config.config_secret.clone(),
        limits_tx,
    ));
    let mut settings = Settings::new(gh.scale_set_id, config.session_owner.clone());
    settings.heartbeat = Duration::from_millis(500);
    let labels = ScaleSetLabels::new(
        "linux",
        &t.namespace,
        &rssc_github::Scope::Organization("octo-org".into()),
    );
    let listener = Listener {
        client: gh.client.clone(),
        cluster: KubeCluster::new(t.client.clone(), &t.namespace, "linux"),
        settings,
        limits,
        metrics: ListenerMetrics::register(&mut Registry::default(), labels, gh.client.clone()),
        health: Health::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(listener.run(async move {
        let _ = stopped.await;
    }));

    for _ in 0..3 {
        gh.fake.queue_job(JobSpec::for_labels(["linux"]));
    }
    eventually("the decision reaches the EphemeralRunnerSet", || async {
        t.replicas("linux").await == 3
    })
    .await;
    let set = t.api::<EphemeralRunnerSet>().get("linux").await.unwrap();
    assert!(set.spec.patch_sequence > 0);
    eventually("the session state reaches the status", || async {
        let set = t.api::<EphemeralRunnerSet>().get("linux").await.unwrap();
        set.status
            .and_then(|s| s.listener)
            .is_some_and(|l| l.ready && l.session_id.is_some())
    })
    .await;

    // A runner registered under the EphemeralRunner's name takes a job: it is marked busy.
    let jit = gh
        .client
        .generate_jit_config(gh.scale_set_id, "linux-runner-aaaaa", "_work")
        .await
        .unwrap();
    let runner = gh.fake.runner_start(jit.encoded_jit_config.expose()).unwrap();
    let taken = timeout(WAIT, async {
        loop {
            if let Some(job) = gh.fake.runner_take_job(runner.runner_id).unwrap() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("an assigned job reaches the runner");
    eventually("the job is recorded on the EphemeralRunner", || async {
        let er = t
            .api::<EphemeralRunner>()
            .get("linux-runner-aaaaa")
            .await
            .unwrap();
        er.status
            .and_then(|s| s.job)
            .is_some_and(|j| j.request_id == taken.runner_request_id)
    })
    .await;

    // minRunners changes in the config Secret apply without a restart.
    let raised = listener_config(&gh, &t.namespace, 2, 10);
    t.api::<Secret>()
        .replace(&raised.config_secret, &PostParams::default(), &{
            let mut s = config_secret(&raised);
            s.metadata.resource_version = t
                .api::<Secret>()
                .get(&raised.config_secret)
                .await
                .unwrap()
                .metadata
                .resource_version;
            s
        })
        .await
        .unwrap();
    eventually("min runners raised live", || async {
        t.replicas("linux").await == 5
    })
    .await;

    stop.send(()).unwrap();
    timeout(WAIT, task).await.expect("stops on shutdown").unwrap();
    let set = t.api::<EphemeralRunnerSet>().get("linux").await.unwrap();
    let listener = set.status.unwrap().listener.unwrap();
    assert!(
        !listener.ready && listener.session_id.is_none(),
        "shutdown is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_scales_and_exits_cleanly_on_sigterm() {
    let t = Target::new("listener-bin").await;
    let gh = github().await;
    let config = listener_config(&gh, &t.namespace, 1, 5);
    create_objects(&t, &gh, &config).await;
    let dir = std::env::temp_dir().join(format!("rssc-listener-bin-{}", t.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join(CONFIG_KEY);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rssc-listener"))
        .env("RSSC_CONFIG", &config_path)
        .env("RSSC_ADMIN_ADDR", format!("127.0.0.1:{port}"))
        .env("RSSC_LOG_FORMAT", "json")
        .env("KUBECONFIG", &t.kubeconfig)
        .stdout(Stdio::from(
            std::fs::File::create(dir.join("listener.log")).unwrap(),
        ))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the rssc-listener binary starts");

    eventually("the binary writes minRunners as its first decision", || async {
        t.replicas("linux").await == 1
    })
    .await;
    gh.fake.queue_job(JobSpec::for_labels(["linux"]));
    eventually("a job raises the decision", || async {
        t.replicas("linux").await == 2
    })
    .await;
    assert_eq!(gh.fake.with_state(|s| s.sessions.len()), 1);

    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = timeout(WAIT, child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert!(status.success(), "exit code 0 after SIGTERM, got {status}");
    assert!(
        gh.fake.with_state(|s| s.sessions.is_empty()),
        "the session was closed"
    );

    // `kubectl logs` reads as the story of the scale set: one JSON line per decision.
    let log = std::fs::read_to_string(dir.join("listener.log")).unwrap();
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "decision")
        .collect();
    let last = decisions.last().expect("decision lines in the log");
    assert_eq!(last["desired"], 2);
    assert_eq!(last["previous"], 1);
    assert_eq!(last["assigned_jobs"], 1);
    assert_eq!(last["span"]["scale_set"], "linux");
    assert_eq!(last["span"]["namespace"], t.namespace.as_str());
    assert!(!log.contains(PAT), "no credential in the log");
    let _ = std::fs::remove_dir_all(dir);
}

/// A job's record on its runner survives a passing API error: the first attempts fail (500),
/// a later one lands. Faults come from a proxy, so this runs against a real cluster too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_record_is_retried_past_a_passing_api_error() {
    use rssc_listener::cluster::Cluster as _;

    let t = Target::new("listener-retry").await;
    let gh = github().await;
    let config = listener_config(&gh, &t.namespace, 0, 10);
    create_objects(&t, &gh, &config).await;
    let proxy = rssc_test_support::fault_proxy::FaultProxy::in_front_of(&t.kubeconfig)
        .await
        .unwrap();
    let cluster = KubeCluster::new(proxy.client(&t.namespace), &t.namespace, "linux");

    // Every write fails until the first failure has been seen; then the faults stop.
    let faults = proxy.faults().clone();
    faults.set(rssc_test_support::FaultConfig {
        write_error_rate: 1.0,
        ..Default::default()
    });
    let healer = tokio::spawn({
        let faults = faults.clone();
        async move {
            while !faults.requests().iter().any(|r| r.code == 500) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            faults.set(rssc_test_support::FaultConfig::default());
        }
    });
    let job = rssc_api::v1alpha1::RunnerJob {
        request_id: 42,
        ..Default::default()
    };
    cluster
        .record_job_started("linux-runner-aaaaa", &job)
        .await
        .expect("the record lands after the error passes");
    healer.await.unwrap();
    let patches = faults.codes("patch", "ephemeralrunners/status");
    assert_eq!(
        (patches.first(), patches.last()),
        (Some(&500), Some(&200)),
        "refused, then retried: {patches:?}"
    );
    let er = t
        .api::<EphemeralRunner>()
        .get("linux-runner-aaaaa")
        .await
        .unwrap();
    assert_eq!(er.status.and_then(|s| s.job).map(|j| j.request_id), Some(42));
}

/// A stopping listener's held-back decision lands only while the set still holds its last
/// one: a RunnerSet being deleted writes its own under the next sequence, and that stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_written_after_another_does_not_undo_it() {
    use rssc_api::v1alpha1::MessageMark;
    use rssc_listener::{cluster::Cluster as _, scaler::Decision};

    let t = Target::new("listener-after").await;
    let gh = github().await;
    let config = listener_config(&gh, &t.namespace, 0, 10);
    create_objects(&t, &gh, &config).await;
    let cluster = KubeCluster::new(t.client.clone(), &t.namespace, "linux");
    let through = |message_id| MessageMark {
        scale_set_id: gh.scale_set_id,
        message_id,
    };
    let decision = |replicas, sequence, job_ends| Decision {
        replicas,
        beyond_max: 0,
        sequence,
        job_ends,
        job_ends_through: (job_ends > 0).then(|| through(job_ends + 10)),
    };
    cluster.write_decision(decision(3, 1, 0), &[]).await.unwrap();
    assert!(cluster.write_decision_after(decision(2, 2, 1), 1).await.unwrap());
    let spec = t.api::<EphemeralRunnerSet>().get("linux").await.unwrap().spec;
    assert_eq!((spec.replicas, spec.patch_sequence, spec.job_ends), (2, 2, 1));
    let stored = cluster.read_state().await.unwrap();
    assert_eq!(
        (stored.last_sequence, stored.job_ends, stored.job_ends_through),
        (2, 1, Some(through(11))),
        "a restarted listener reads back the last message its count went with"
    );
    assert_eq!(
        (stored.replicas, stored.beyond_max),
        (2, 0),
        "and the runners it asked for"
    );

    // The RunnerSet is deleted: no runners, under the next sequence.
    let none = serde_json::json!({"spec": {"replicas": 0, "patchSequence": 3}});
    t.api::<EphemeralRunnerSet>()
        .patch("linux", &PatchParams::default(), &Patch::Merge(none))
        .await
        .unwrap();
    assert!(
        !cluster.write_decision_after(decision(1, 3, 2), 2).await.unwrap(),
        "another decision was there"
    );
    let spec = t.api::<EphemeralRunnerSet>().get("linux").await.unwrap().spec;
    assert_eq!((spec.replicas, spec.patch_sequence, spec.job_ends), (0, 3, 1));
}
