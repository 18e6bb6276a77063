//! The RunnerSet controller against the Kubernetes API (test server or `RSSC_E2E_KUBECONFIG`)
//! and the fake GitHub: it runs its AutoscaleSet (listener objects and EphemeralRunnerSet),
//! refuses a second RunnerSet on the same AutoscaleSet, applies limit changes without restarting
//! the listener, and cleans up on deletion.

mod support;

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{PersistentVolumeClaim, Secret, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rssc_api::{
    consts::{annotations, labels},
    listener_config::{CONFIG_KEY, ListenerConfig},
    v1alpha1::{AutoscaleSet, EphemeralRunnerSet, RunnerSet},
};
use rssc_controller::context::Context;
use rssc_sim_github::FakeGitHub;
use support::{Controllers, PAT, Reconciler, Target, eventually, github};

fn runner_set(name: &str) -> RunnerSet {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "RunnerSet",
        "metadata": {"name": name},
        "spec": {"autoscaleSetRef": {"name": "linux"},
                 "runnerTemplate": {"spec": {"nodeSelector": {"pool": "ci"}}}}
    }))
    .unwrap()
}

async fn ready_reason(t: &Target, name: &str) -> Option<(String, String)> {
    let rs = t.api::<RunnerSet>().get_opt(name).await.unwrap()?;
    let condition = rs.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
    Some((condition.status, condition.reason))
}

async fn listener_config(t: &Target) -> ListenerConfig {
    let secret = t.api::<Secret>().get("ci-listener").await.unwrap();
    serde_json::from_slice(&secret.data.unwrap()[CONFIG_KEY].0).unwrap()
}

async fn config_hash(t: &Target) -> String {
    let deployment = t.api::<Deployment>().get("ci-listener").await.unwrap();
    deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[annotations::LISTENER_CONFIG_HASH]
        .clone()
}

/// Starts the fake GitHub, stores its CA and a token in the test's namespace, and returns it
/// with the `linux` AutoscaleSet that registers there; `spec` adds to its spec.
async fn fake_and_autoscale_set(t: &Target, spec: serde_json::Value) -> (Arc<FakeGitHub>, AutoscaleSet) {
    let (fake, ca) = github().await;
    t.config_map("github-ca", &[("ca.pem", &ca)]).await;
    t.secret("github-token", &[("token", PAT)]).await;
    let mut asss = serde_json::json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
        "metadata": {"name": "linux"},
        "spec": {
            "githubConfigURL": fake.config_url("octo-org"), "scaleSetName": "linux",
            "runnerImage": "ghcr.io/actions/actions-runner:2.330.0",
            "personalAccessToken": {"tokenSecretRef": {"name": "github-token"}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}}
        }
    });
    for (key, value) in spec.as_object().expect("a spec object") {
        asss["spec"][key] = value.clone();
    }
    (fake, serde_json::from_value(asss).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_its_autoscale_set_and_only_one_runner_set_may() {
    let t = Target::new("runnerset").await;
    let (fake, asss) = fake_and_autoscale_set(
        &t,
        serde_json::json!({
            "minRunners": 1, "maxRunners": 5,
            "containerMode": {"type": "kubernetes", "kubernetesModeWorkVolumeClaim": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
            "persistentVolumes": [{"name": "tools", "size": "5Gi", "mountPath": "/opt/tools"}],
            "proxy": {"https": {"url": "http://proxy.example:3128", "credentialSecretRef": "proxy-creds"},
                      "noProxy": ["127.0.0.1"]}
        }),
    )
    .await;
    t.secret("proxy-creds", &[("username", "ci"), ("password", "s3cret")])
        .await;

    let ctx = Arc::new(Context::new(t.client.clone(), support::settings()));
    let controllers = Controllers::start(
        &ctx,
        &[
            Reconciler::AutoscaleSets,
            Reconciler::RunnerSets,
            Reconciler::EphemeralRunnerSets,
            Reconciler::EphemeralRunners,
        ],
    );

    // The RunnerSet first: it waits for its AutoscaleSet and says so.
    t.api::<RunnerSet>()
        .create(&PostParams::default(), &runner_set("ci"))
        .await
        .unwrap();
    eventually("AutoscaleSetNotFound", || async {
        ready_reason(&t, "ci").await == Some(("False".into(), "AutoscaleSetNotFound".into()))
    })
    .await;
    t.api::<AutoscaleSet>()
        .create(&PostParams::default(), &asss)
        .await
        .unwrap();
    eventually("the RunnerSet is ready", || async {
        ready_reason(&t, "ci").await == Some(("True".into(), "Ready".into()))
    })
    .await;

    // Its listener: config Secret, identity, permissions and a Deployment, all owned by it.
    let config = listener_config(&t).await;
    assert_eq!((config.min_runners, config.max_runners), (1, 5));
    assert_eq!(config.ephemeral_runner_set, "ci");
    assert_eq!(config.session_owner, format!("{}/ci", t.namespace));
    assert!(
        t.api::<ServiceAccount>()
            .get_opt("ci-listener")
            .await
            .unwrap()
            .is_some()
    );
    assert!(t.api::<Role>().get_opt("ci-listener").await.unwrap().is_some());
    assert!(
        t.api::<RoleBinding>()
            .get_opt("ci-listener")
            .await
            .unwrap()
            .is_some()
    );
    let deployment = t.api::<Deployment>().get("ci-listener").await.unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(1));

    // What its runners lean on: job-Pod permissions, the cache claim, the proxy environment.
    assert!(
        t.api::<ServiceAccount>()
            .get_opt("ci-kube-mode")
            .await
            .unwrap()
            .is_some()
    );
    assert!(t.api::<Role>().get_opt("ci-kube-mode").await.unwrap().is_some());
    assert!(
        t.api::<RoleBinding>()
            .get_opt("ci-kube-mode")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        t.api::<PersistentVolumeClaim>()
            .get_opt("ci-cache-tools")
            .await
            .unwrap()
            .is_some()
    );
    let proxy = t
        .api::<Secret>()
        .get("ci-runner-proxy")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(proxy["https_proxy"].0, b"http://ci:s3cret@proxy.example:3128");

    // Its runners: the resolved template, merged over the AutoscaleSet's.
    let set = t.api::<EphemeralRunnerSet>().get("ci").await.unwrap();
    let template = set.spec.runner_template;
    assert_eq!(template.spec.node_selector.unwrap()["pool"], "ci");
    assert_eq!(
        template.spec.containers[0].image.as_deref(),
        Some("ghcr.io/actions/actions-runner:2.330.0")
    );
    assert_eq!(template.metadata.unwrap().labels[labels::RUNNER_SET], "ci");
    assert_eq!(
        set.spec.runner_config.scale_set_id,
        t.api::<AutoscaleSet>()
            .get("linux")
            .await
            .unwrap()
            .status
            .unwrap()
            .scale_set_id
            .unwrap()
    );

    // A second RunnerSet on the same AutoscaleSet is refused, naming the holder.
    t.api::<RunnerSet>()
        .create(&PostParams::default(), &runner_set("second"))
        .await
        .unwrap();
    eventually("AutoscaleSetInUse", || async {
        ready_reason(&t, "second").await == Some(("False".into(), "AutoscaleSetInUse".into()))
    })
    .await;
    let second = t.api::<RunnerSet>().get("second").await.unwrap();
    let message = &second.status.unwrap().conditions[0].message;
    assert!(message.contains("/ci"), "{message}");
    assert!(
        t.api::<Deployment>()
            .get_opt("second-listener")
            .await
            .unwrap()
            .is_none()
    );

    // Limits change: the config follows without a listener restart; the image changes the runners.
    let hash = config_hash(&t).await;
    let patch = serde_json::json!({"spec": {"minRunners": 2, "maxRunners": 9}});
    t.api::<AutoscaleSet>()
        .patch("linux", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    eventually("the listener config has the new limits", || async {
        let c = listener_config(&t).await;
        (c.min_runners, c.max_runners) == (2, 9)
    })
    .await;
    assert_eq!(
        config_hash(&t).await,
        hash,
        "limit changes do not restart the listener"
    );
    let patch = serde_json::json!({"spec": {"runnerImage": "ghcr.io/actions/actions-runner:2.331.0"}});
    t.api::<AutoscaleSet>()
        .patch("linux", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    eventually("new runners use the new image", || async {
        let set = t.api::<EphemeralRunnerSet>().get("ci").await.unwrap();
        set.spec.runner_template.spec.containers[0].image.as_deref()
            == Some("ghcr.io/actions/actions-runner:2.331.0")
    })
    .await;

    // Deleting the first lets the second take over; deleting everything leaves nothing.
    t.api::<RunnerSet>()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the second RunnerSet takes over", || async {
        ready_reason(&t, "second").await == Some(("True".into(), "Ready".into()))
    })
    .await;
    t.api::<RunnerSet>()
        .delete("second", &DeleteParams::default())
        .await
        .unwrap();
    t.api::<AutoscaleSet>()
        .delete("linux", &DeleteParams::default())
        .await
        .unwrap();
    eventually("everything is gone", || async {
        t.api::<RunnerSet>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
            && t.api::<AutoscaleSet>()
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty()
    })
    .await;
    assert!(
        fake.with_state(|s| s.scale_sets.is_empty()),
        "the scale set was removed from GitHub"
    );

    controllers.stop().await;
}

/// Runner count changes reconcile the RunnerSet, but its unchanged listener objects and
/// EphemeralRunnerSet are not applied again each time; a listener Deployment deleted by hand
/// comes back at once. The controllers talk through the fault proxy, which counts their
/// requests on the test server and on a real cluster alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_objects_are_not_applied_again_and_a_deleted_deployment_returns() {
    let t = Target::new("runnerset-economy").await;
    let (_fake, asss) =
        fake_and_autoscale_set(&t, serde_json::json!({"minRunners": 0, "maxRunners": 5})).await;
    let proxy = rssc_test_support::fault_proxy::FaultProxy::in_front_of(&t.kubeconfig)
        .await
        .unwrap();
    let ctx = Arc::new(Context::new(proxy.client(&t.namespace), support::settings()));
    let controllers = Controllers::start(&ctx, &[Reconciler::AutoscaleSets, Reconciler::RunnerSets]);
    t.api::<AutoscaleSet>()
        .create(&PostParams::default(), &asss)
        .await
        .unwrap();
    t.api::<RunnerSet>()
        .create(&PostParams::default(), &runner_set("ci"))
        .await
        .unwrap();
    eventually("the RunnerSet is ready", || async {
        ready_reason(&t, "ci").await == Some(("True".into(), "Ready".into()))
    })
    .await;

    // Ten runner count changes, each mirrored into the RunnerSet's status.
    let applies = || proxy.faults().codes("patch", "deployments").len();
    let before = applies();
    for pending in 1..=10 {
        let status = serde_json::json!({"status": {"pendingRunners": pending}});
        t.api::<EphemeralRunnerSet>()
            .patch_status("ci", &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
        eventually("the RunnerSet mirrors the count", || async {
            t.api::<RunnerSet>()
                .get("ci")
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.pending_runners == pending)
        })
        .await;
    }
    assert_eq!(
        applies(),
        before,
        "the unchanged listener Deployment was not applied again over 10 count changes"
    );

    t.api::<Deployment>()
        .delete("ci-listener", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the listener Deployment is back", || async {
        t.api::<Deployment>()
            .get_opt("ci-listener")
            .await
            .unwrap()
            .is_some_and(|d| d.metadata.deletion_timestamp.is_none())
    })
    .await;
    controllers.stop().await;
}

/// A reconcile that reads its object from a cache not yet showing the finalizer the reconcile
/// before it added is no error: the finalizer patch tests the list, the server refuses it,
/// and the reconcile looks again (a new RunnerSet's first reconciles logged a warning and
/// counted a reconcile error for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalizer_the_cache_does_not_show_yet_is_no_reconcile_error() {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::controller::Action;

    const FINALIZER: &str = "example.com/cleanup";
    let t = Target::new("finalizer-meanwhile").await;
    let api = t.api::<ConfigMap>();
    let mut object = ConfigMap::default();
    object.metadata.name = Some("cm".into());
    object.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let stored = api.create(&PostParams::default(), &object).await.unwrap();
    let mut cached = stored.clone();
    cached.metadata.finalizers = None;

    let action = rssc_controller::reconcile::finalized(
        &api,
        FINALIZER,
        Arc::new(cached),
        |_| async { panic!("no reconcile before the finalizer is seen") },
        |_| async { panic!("the object is not being deleted") },
    )
    .await
    .expect("no error");
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));

    let unfinalized = serde_json::json!({"metadata": {"finalizers": null}});
    api.patch("cm", &PatchParams::default(), &Patch::Merge(unfinalized))
        .await
        .unwrap();
}
