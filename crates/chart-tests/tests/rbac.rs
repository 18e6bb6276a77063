//! The controller chart's RBAC is exactly what the controller uses: the controller's
//! reconcilers and leader election run against the Kubernetes API test server (always: the test
//! plays the kubelet's part by writing Pod statuses, which a real cluster's kubelet would
//! overwrite) through a client that records the permission each request needs, while a scale set goes through its life (registration, listener, runners that
//! fail, finish and are scaled down, deletion). Every recorded permission must be granted, and
//! every granted one must be used, or be one the controller only passes on (the Roles it
//! creates for listeners and `kubernetes`-mode runners, which Kubernetes lets it create only
//! with permissions it holds), or one checked at admission rather than per request.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Pod, Secret},
        rbac::v1::Role,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    client::ClientBuilder,
    config::{KubeConfigOptions, Kubeconfig},
};
use rssc_api::{
    listener_config::ListenerConfig,
    v1alpha1::{AutoscaleSet, ContainerModeType, EphemeralRunner, EphemeralRunnerSet, RunnerSet},
};
use rssc_chart_tests::{
    Render,
    access::{Access, RecordLayer, Recorded, allowed},
    proxy::RecordingProxy,
};
use rssc_controller::{
    context::{Context, Settings},
    controllers,
    leader::{Leadership, LeaseConfig},
    listener::build,
    runner_support::{Owner, kube_mode_rbac},
};
use rssc_sim_github::{FakeConfig, FakeGitHub, TlsFiles};
use rssc_sim_kube::KubeServer;
use rssc_sim_node::{ListenerKubeconfig, ListenerSettings, NodeSim, PodSelector, SimConfig};
use rssc_test_support::{eventually, install_crds};
use serde_json::{Value, json};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(90);
const PAT: &str = "ghp_rbac_test_token";
const NAME: &str = "rbac";

async fn github() -> (FakeGitHub, String) {
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
    (fake, cert)
}

/// The test server, with our CRDs and a namespace.
struct Target {
    client: Client,
    kubeconfig: std::path::PathBuf,
    namespace: String,
    _server: KubeServer,
}

impl Target {
    async fn start() -> Self {
        let server = KubeServer::start()
            .await
            .expect("the Kubernetes API test server starts");
        let kubeconfig = server.kubeconfig_path().to_owned();
        let client = client_for(&kubeconfig, None).await;
        install_crds(&client).await;
        let namespace = "rbac".to_owned();
        kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &object(json!({"metadata": {"name": namespace}})),
            )
            .await
            .unwrap();
        Self {
            client,
            kubeconfig,
            namespace,
            _server: server,
        }
    }

    fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        kube::Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// A client for `kubeconfig`; with `recorded`, one that records what each request needs.
async fn client_for(kubeconfig: &std::path::Path, recorded: Option<&Recorded>) -> Client {
    let raw = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(raw, &KubeConfigOptions::default())
        .await
        .unwrap();
    let builder = ClientBuilder::try_from(config).unwrap();
    match recorded {
        Some(recorded) => builder
            .with_layer(&RecordLayer {
                recorded: recorded.clone(),
            })
            .build(),
        None => builder.build(),
    }
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// Runs the four reconcilers with `client` until the returned sender says stop.
fn start_controllers(
    client: Client,
    settings: Settings,
) -> (watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let ctx = Arc::new(Context::new(client, settings));
    let (stop, stopped) = watch::channel(false);
    let until = || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let tasks = vec![
        tokio::spawn(controllers::run_autoscale_sets(ctx.clone(), until())),
        tokio::spawn(controllers::run_runner_sets(ctx.clone(), until())),
        tokio::spawn(controllers::run_ephemeral_runner_sets(ctx.clone(), until())),
        tokio::spawn(controllers::run_ephemeral_runners(ctx.clone(), until())),
    ];
    (stop, tasks)
}

/// Controller settings for tests: no pending grace, quick rechecks and retries.
fn quick_settings() -> Settings {
    Settings {
        pending_grace: Duration::ZERO,
        recheck: Duration::from_secs(1),
        max_backoff: Duration::from_secs(2),
        ..Settings::default()
    }
}

/// Runs one scale set through its life with the controller using `client`.
async fn scale_set_life(cluster: &Target, client: Client, github: &FakeGitHub, ca: &str) {
    let (stop, tasks) = start_controllers(client, quick_settings());

    // What a person creates: credentials, a CA bundle, the AutoscaleSet and the RunnerSet.
    let pp = PostParams::default();
    cluster
        .api::<ConfigMap>()
        .create(
            &pp,
            &object(json!({"metadata": {"name": "github-ca"}, "data": {"ca.pem": ca}})),
        )
        .await
        .unwrap();
    cluster
        .api::<Secret>()
        .create(
            &pp,
            &object(json!({"metadata": {"name": "github-token"}, "stringData": {"token": PAT}})),
        )
        .await
        .unwrap();
    let asss: AutoscaleSet = object(json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
        "metadata": {"name": NAME},
        "spec": {
            "githubConfigURL": github.config_url("octo-org"), "scaleSetName": NAME,
            "runnerImage": "ghcr.io/actions/actions-runner:latest", "maxRunners": 5,
            "personalAccessToken": {"tokenSecretRef": {"name": "github-token"}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}},
            "containerMode": {"type": "kubernetes", "kubernetesModeWorkVolumeClaim": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
            "persistentVolumes": [{"name": "cache", "size": "1Gi", "mountPath": "/cache"}]
        }
    }));
    cluster.api::<AutoscaleSet>().create(&pp, &asss).await.unwrap();
    let rs: RunnerSet = object(json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "RunnerSet",
        "metadata": {"name": NAME}, "spec": {"autoscaleSetRef": {"name": NAME}}
    }));
    cluster.api::<RunnerSet>().create(&pp, &rs).await.unwrap();

    eventually(
        "the scale set is registered and its listener set up",
        WAIT,
        || async {
            cluster
                .api::<Deployment>()
                .get_opt(&format!("{NAME}-listener"))
                .await
                .unwrap()
                .is_some()
                && cluster
                    .api::<EphemeralRunnerSet>()
                    .get_opt(NAME)
                    .await
                    .unwrap()
                    .is_some()
        },
    )
    .await;

    // The listener's decision: two runners.
    let sets = cluster.api::<EphemeralRunnerSet>();
    let decide = |replicas: i32, sequence: i64| {
        let sets = sets.clone();
        async move {
            sets.patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas, "patchSequence": sequence}})),
            )
            .await
            .unwrap();
        }
    };
    decide(2, 1).await;
    let pods = cluster.api::<Pod>();
    let runner_pods = || async {
        pods.list(&ListParams::default().labels(&format!(
            "scaleset.actions.github.com/runnerset={NAME},scaleset.actions.github.com/component=runner"
        )))
        .await
        .unwrap()
        .items
    };
    eventually("two runner Pods", WAIT, || async {
        runner_pods().await.len() == 2
    })
    .await;
    let started = runner_pods().await;

    // One runner's Pod fails before a job (retried: Pod deleted and created again), the other
    // runner finishes (exit 0: the runner is removed).
    let exited = |code: i32| {
        json!({"status": {"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [{
            "name": "runner", "image": "runner", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}
        }]}})
    };
    let (failing, finishing) = (&started[0], &started[1]);
    pods.patch_status(
        &failing.name_any(),
        &PatchParams::default(),
        &Patch::Merge(exited(1)),
    )
    .await
    .unwrap();
    pods.patch_status(
        &finishing.name_any(),
        &PatchParams::default(),
        &Patch::Merge(exited(0)),
    )
    .await
    .unwrap();
    let runners = cluster.api::<EphemeralRunner>();
    eventually(
        "the failed Pod is replaced and the finished runner removed",
        WAIT,
        || async {
            let replaced = pods
                .get_opt(&failing.name_any())
                .await
                .unwrap()
                .is_some_and(|p| p.uid() != failing.uid());
            let removed = runners.get_opt(&finishing.name_any()).await.unwrap().is_none();
            replaced && removed
        },
    )
    .await;

    // Scale-down to none, then the scale set is deleted.
    decide(0, 2).await;
    eventually("no runners are left", WAIT, || async {
        runners
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    cluster
        .api::<RunnerSet>()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the RunnerSet is gone", WAIT, || async {
        cluster.api::<RunnerSet>().get_opt(NAME).await.unwrap().is_none()
    })
    .await;
    cluster
        .api::<AutoscaleSet>()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the AutoscaleSet is gone", WAIT, || async {
        cluster
            .api::<AutoscaleSet>()
            .get_opt(NAME)
            .await
            .unwrap()
            .is_none()
    })
    .await;

    stop.send_replace(true);
    for task in tasks {
        let _ = tokio::time::timeout(WAIT, task).await;
    }
}

/// What the controller passes on: the listener's Role and the `kubernetes`-mode runners' Role.
fn granted_onward() -> BTreeSet<Access> {
    // JSON rather than literals, so fields the API gains later take their defaults.
    let rs: RunnerSet = object(json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "RunnerSet",
        "metadata": {"name": NAME, "namespace": "ns", "uid": "uid"},
        "spec": {"autoscaleSetRef": {"name": NAME}}
    }));
    let config: ListenerConfig = object(json!({
        "githubConfigURL": "https://github.com/octo-org", "scaleSetID": 1, "scaleSetName": NAME,
        "namespace": "ns", "ephemeralRunnerSet": NAME, "configSecret": format!("{NAME}-listener"),
        "minRunners": 0, "maxRunners": 1, "sessionOwner": format!("ns/{NAME}"),
        "auth": {"token": {"token": "t"}}
    }));
    // The controller's own defaults (a literal would break when the controller adds a field).
    let defaults = Settings::default().listener;
    let listener = build(&rs, &config, &defaults).unwrap();
    let mut out = allowed(&serde_json::to_value(listener.role.rules).unwrap());
    let owner = Owner {
        runner_set: NAME.into(),
        namespace: "ns".into(),
        reference: OwnerReference::default(),
    };
    for mode in [
        ContainerModeType::Kubernetes,
        ContainerModeType::KubernetesNovolume,
    ] {
        let (_, role, _) = kube_mode_rbac(&owner, mode).unwrap();
        out.extend(allowed(&serde_json::to_value(role.rules).unwrap()));
    }
    out
}

fn list(set: &BTreeSet<Access>) -> String {
    set.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_chart_grants_exactly_what_the_controller_uses() {
    let cluster = Target::start().await;
    let (github, ca) = github().await;
    let recorded = Recorded::default();
    let client = client_for(&cluster.kubeconfig, Some(&recorded)).await;

    let lease = LeaseConfig {
        namespace: cluster.namespace.clone(),
        name: "rssc-controller".into(),
        identity: "rbac-test".into(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    };
    let leadership = tokio::time::timeout(WAIT, Leadership::acquire(client.clone(), lease))
        .await
        .expect("the lease is taken");
    scale_set_life(&cluster, client, &github, &ca).await;
    leadership.release().await;

    let docs = Render::new("rssc-controller", "rssc", "rssc-system").docs();
    let cluster_role = allowed(&docs.one("ClusterRole")["rules"]);
    let leader_role = docs
        .of_kind("Role")
        .into_iter()
        .map(|r| allowed(&r["rules"]))
        .find(|rules| rules.iter().any(|a| a.resource == "leases"))
        .expect("a leader-election Role");

    let used = recorded.all();
    let (leases, reconciling): (BTreeSet<Access>, BTreeSet<Access>) =
        used.into_iter().partition(|a| a.resource == "leases");
    assert_eq!(
        leases, leader_role,
        "the leader-election Role is exactly what leader election uses"
    );

    let missing: BTreeSet<Access> = reconciling.difference(&cluster_role).cloned().collect();
    assert!(
        missing.is_empty(),
        "the controller needs, but is not granted: {}",
        list(&missing)
    );

    let onward = granted_onward();
    let unused: BTreeSet<Access> = cluster_role
        .iter()
        .filter(|a| !reconciling.contains(a) && !onward.contains(a))
        // Checked by the OwnerReferencesPermissionEnforcement admission plugin when an owner
        // reference blocks its owner's deletion, not sent as a request.
        .filter(|a| !(a.verb == "update" && a.resource.ends_with("/finalizers")))
        // kube's event recorder patches an Event only when the same one repeats.
        .filter(|a| **a != Access::new("events.k8s.io", "events", "patch"))
        .cloned()
        .collect();
    assert!(
        unused.is_empty(),
        "granted but neither used nor passed on: {}",
        list(&unused)
    );
}

/// Builds the `rssc-listener` binary (a no-op when current) and returns its path.
fn listener_binary() -> std::path::PathBuf {
    rssc_test_support::binaries::build().join("rssc-listener")
}

/// The listener binary, run by the node simulator as its Pod's process, reaches the API through
/// a recording proxy while it takes two jobs, records them on its runners, follows a new limit
/// and stops; the Role the controller gave it must allow everything it did and nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_role_allows_exactly_what_the_listener_uses() {
    let binary = listener_binary();
    let target = Target::start().await;
    let ns = target.namespace.clone();
    let (github, ca) = github().await;
    let github = Arc::new(github);
    let proxy = RecordingProxy::start(target._server.addr()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("rssc-rbac-listener-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, rssc_sim_kube::kubeconfig_yaml(proxy.addr)).unwrap();

    let (stop, tasks) = start_controllers(target.client.clone(), quick_settings());
    let mut sim = SimConfig::new("rbac-node");
    sim.selector = PodSelector {
        namespace: Some(ns.clone()),
        ..PodSelector::default()
    };
    sim.work_dir = dir.join("nodes");
    sim.listener = Some(ListenerSettings {
        binary,
        log_dir: dir.clone(),
        kubeconfig: ListenerKubeconfig::File(kubeconfig),
        max_probe_period: Duration::from_millis(200),
    });
    let nodes = NodeSim::start(target.client.clone(), sim, Some(github.clone()))
        .await
        .expect("the node simulator starts");

    let pp = PostParams::default();
    target
        .api::<ConfigMap>()
        .create(
            &pp,
            &object(json!({"metadata": {"name": "github-ca"}, "data": {"ca.pem": ca}})),
        )
        .await
        .unwrap();
    target
        .api::<Secret>()
        .create(
            &pp,
            &object(json!({"metadata": {"name": "github-token"}, "stringData": {"token": PAT}})),
        )
        .await
        .unwrap();
    let asss: AutoscaleSet = object(json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
        "metadata": {"name": NAME},
        "spec": {
            "githubConfigURL": github.config_url("octo-org"), "scaleSetName": NAME,
            "runnerImage": "ghcr.io/actions/actions-runner:latest", "maxRunners": 3,
            "personalAccessToken": {"tokenSecretRef": {"name": "github-token"}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}}
        }
    }));
    target.api::<AutoscaleSet>().create(&pp, &asss).await.unwrap();
    let rs: RunnerSet = object(json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "RunnerSet",
        "metadata": {"name": NAME}, "spec": {"autoscaleSetRef": {"name": NAME}}
    }));
    target.api::<RunnerSet>().create(&pp, &rs).await.unwrap();
    let runner_sets = target.api::<RunnerSet>();
    eventually("the listener has a session", WAIT, || async {
        runner_sets
            .get(NAME)
            .await
            .unwrap()
            .status
            .and_then(|s| s.listener)
            .is_some_and(|l| l.ready)
    })
    .await;

    for _ in 0..2 {
        github.queue_job(rssc_sim_github::JobSpec::for_labels([NAME]));
    }
    eventually("both jobs ran on runners", WAIT, || async {
        nodes.summary().runners_finished() >= 2
    })
    .await;
    // A new limit reaches the listener through its config Secret, without a restart.
    target
        .api::<AutoscaleSet>()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minRunners": 1}})),
        )
        .await
        .unwrap();
    let sets = target.api::<EphemeralRunnerSet>();
    eventually("the listener keeps one idle runner", WAIT, || async {
        sets.get(NAME).await.unwrap().spec.replicas >= 1
    })
    .await;
    let role = target
        .api::<Role>()
        .get(&format!("{NAME}-listener"))
        .await
        .expect("the controller made the listener's Role");
    let granted = allowed(&serde_json::to_value(role.rules).unwrap());

    runner_sets.delete(NAME, &DeleteParams::default()).await.unwrap();
    eventually("the RunnerSet is gone", WAIT, || async {
        runner_sets.get_opt(NAME).await.unwrap().is_none()
    })
    .await;
    nodes.stop().await;
    stop.send_replace(true);
    for task in tasks {
        let _ = tokio::time::timeout(WAIT, task).await;
    }

    let used = proxy.recorded.all();
    let missing: BTreeSet<Access> = used.difference(&granted).cloned().collect();
    assert!(
        missing.is_empty(),
        "the listener needs, but its Role lacks: {}",
        list(&missing)
    );
    let unused: BTreeSet<Access> = granted.difference(&used).cloned().collect();
    assert!(
        unused.is_empty(),
        "the listener's Role grants, but the listener never used: {}",
        list(&unused)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
