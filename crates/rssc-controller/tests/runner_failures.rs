//! How the controller handles runner Pods that fail, against the Kubernetes API (test server or
//! `RSSC_E2E_KUBECONFIG`) and the fake GitHub: a failure before a job retries the Pod with the
//! same registration; an OOM kill replaces the runner; exit 7 fails it with an Event and a
//! condition on the AutoscaleSet; a full ResourceQuota is a condition, and runners start once
//! there is room; a crash after the job started, an eviction, a vanished Pod and a pending
//! timeout deregister and replace the runner; a registration whose Secret was lost
//! (`RunnerExists`) is replaced, not duplicated; a Pod that fails after GitHub removed its runner
//! is replaced, not retried; a Pod create refused with 409 `Conflict` is tried again; a runner
//! that finished drops its own finalizer and keeps those of others.

mod support;

use std::sync::Arc;

use k8s_openapi::api::{
    core::v1::{Pod, ResourceQuota, Secret},
    events::v1::Event,
};
use kube::{
    ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use rssc_api::v1alpha1::{AutoscaleSet, EphemeralRunner, EphemeralRunnerPhase, EphemeralRunnerSet};
use rssc_controller::context::Context;
use support::{Controllers, Reconciler, Target, eventually, github};

async fn pod_exits(t: &Target, pod: &str, code: i32, reason: &str) {
    let status = serde_json::json!({"status": {"phase": "Failed", "containerStatuses": [{
        "name": "runner", "image": "runner", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": reason}}}]}});
    t.api::<Pod>()
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

async fn only_runner(t: &Target) -> Option<EphemeralRunner> {
    let mut all = t
        .api::<EphemeralRunner>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    all.retain(|r| r.metadata.deletion_timestamp.is_none());
    (all.len() == 1).then(|| all.remove(0))
}

/// Waits for the one live runner (other than `other_than`) to have its Pod; returns its name.
async fn one_runner_with_a_pod(t: &Target, other_than: Option<&str>) -> String {
    eventually("a runner with a Pod", || async {
        match only_runner(t).await {
            Some(r) if other_than != Some(r.name_any().as_str()) => pod_uid(t, &r.name_any()).await.is_some(),
            _ => false,
        }
    })
    .await;
    only_runner(t).await.unwrap().name_any()
}

/// Whether an Event with `reason` was emitted in the test's namespace.
async fn has_event(t: &Target, reason: &str) -> bool {
    t.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason))
}

async fn pod_uid(t: &Target, name: &str) -> Option<String> {
    t.api::<Pod>()
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|p| p.metadata.uid)
}

/// Creates the EphemeralRunner `name` of `set` directly, as the EphemeralRunnerSet would.
async fn create_runner(t: &Target, set: &EphemeralRunnerSet, name: &str) {
    let runner = EphemeralRunner::new(
        name,
        rssc_api::v1alpha1::EphemeralRunnerSpec {
            runner_template: set.spec.runner_template.clone(),
            runner_config: set.spec.runner_config.clone(),
        },
    );
    t.api::<EphemeralRunner>()
        .create(&PostParams::default(), &runner)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_retried_replaced_or_failed_as_they_deserve() {
    let t = Target::new("failures").await;
    let support::RunnerSetup {
        fake: _fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, support::settings()).await;
    support::create_runner_set(&t, &asss, 1).await;
    let name = one_runner_with_a_pod(&t, None).await;

    // A failure before any job: the failure is recorded and the Pod comes back, same runner.
    let first_pod = pod_uid(&t, &name).await.unwrap();
    pod_exits(&t, &name, 1, "Error").await;
    eventually("a new Pod for the same runner", || async {
        pod_uid(&t, &name).await.is_some_and(|uid| uid != first_pod)
    })
    .await;
    let runner = t.api::<EphemeralRunner>().get(&name).await.unwrap();
    let failures = runner.status.unwrap().failures;
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].pod_uid.as_str(), failures[0].exit_code),
        (first_pod.as_str(), Some(1))
    );

    // OOM-killed: the runner is failed and replaced by a new one (the decision still wants one).
    pod_exits(&t, &name, 137, "OOMKilled").await;
    eventually("a replacement runner", || async {
        only_runner(&t).await.is_some_and(|r| r.name_any() != name)
    })
    .await;
    eventually("the old runner is gone", || async {
        t.api::<EphemeralRunner>().get_opt(&name).await.unwrap().is_none()
    })
    .await;

    // Exit 7: GitHub no longer takes this runner version; the runner fails with an Event.
    let replacement = only_runner(&t).await.unwrap().name_any();
    eventually("the replacement has a Pod", || async {
        pod_uid(&t, &replacement).await.is_some()
    })
    .await;
    pod_exits(&t, &replacement, 7, "Error").await;
    eventually("a RunnerVersionDeprecated Event", || {
        has_event(&t, "RunnerVersionDeprecated")
    })
    .await;
    eventually("the deprecated runner failed (and is then removed)", || async {
        let failed = t.api::<EphemeralRunner>().get_opt(&replacement).await.unwrap();
        failed.is_none_or(|r| r.status.and_then(|s| s.phase) == Some(EphemeralRunnerPhase::Failed))
    })
    .await;
    eventually(
        "the AutoscaleSet says its runner version is deprecated",
        || async {
            runner_version_supported(&t, &asss.name_any())
                .await
                .is_some_and(|(status, reason, message)| {
                    status == "False" && reason == "RunnerVersionDeprecated" && message.contains(&replacement)
                })
        },
    )
    .await;

    // A restarted controller learns of the record from the AutoscaleSet; a runner that
    // completes its job then shows the version works again.
    controllers.stop().await;
    let controllers = support::start_runner_controllers(&t, support::settings());
    let next = one_runner_with_a_pod(&t, Some(&replacement)).await;
    pod_exits(&t, &next, 0, "Completed").await;
    eventually("the AutoscaleSet's runner version is supported again", || async {
        runner_version_supported(&t, &asss.name_any())
            .await
            .is_some_and(|(status, reason, _)| status == "True" && reason == "RunnerSucceeded")
    })
    .await;

    controllers.stop().await;
}

/// A runner that finished its job drops its own finalizer and no other: a finalizer someone
/// else put on it holds it until they remove theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_runner_keeps_the_finalizers_of_others() {
    const OTHER: &str = "example.com/audit";
    let t = Target::new("other-finalizer").await;
    let support::RunnerSetup {
        fake: _fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, support::settings()).await;
    support::create_runner_set(&t, &asss, 1).await;
    let name = one_runner_with_a_pod(&t, None).await;
    let runners = t.api::<EphemeralRunner>();
    let add: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/metadata/finalizers/-", "value": OTHER}
    ]))
    .unwrap();
    runners
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(add))
        .await
        .unwrap();

    pod_exits(&t, &name, 0, "Completed").await;
    eventually(
        "the runner is deleted, held only by the other finalizer",
        || async {
            runners.get_opt(&name).await.unwrap().is_some_and(|r| {
                r.metadata.deletion_timestamp.is_some() && r.finalizers() == [OTHER.to_owned()]
            })
        },
    )
    .await;
    let drop: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "remove", "path": "/metadata/finalizers/0"}
    ]))
    .unwrap();
    runners
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(drop))
        .await
        .unwrap();
    eventually("the runner is gone once the other finalizer is", || async {
        runners.get_opt(&name).await.unwrap().is_none()
    })
    .await;
    controllers.stop().await;
}

async fn runner_version_supported(t: &Target, name: &str) -> Option<(String, String, String)> {
    let asss = t.api::<AutoscaleSet>().get(name).await.unwrap();
    let condition = asss
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "RunnerVersionSupported")?;
    Some((condition.status, condition.reason, condition.message))
}

async fn pods(t: &Target) -> usize {
    t.api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resource_quota_is_a_condition_and_runners_start_once_there_is_room() {
    let t = Target::new("quota").await;
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}
    }))
    .unwrap();
    t.api::<ResourceQuota>()
        .create(&PostParams::default(), &quota)
        .await
        .unwrap();
    eventually("the quota is in force", || async {
        let quota = t.api::<ResourceQuota>().get("one-pod").await.unwrap();
        quota.status.and_then(|s| s.hard).is_some()
    })
    .await;
    let support::RunnerSetup {
        fake: _fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, support::settings()).await;
    let set = support::create_runner_set(&t, &asss, 2).await;

    eventually("one runner is refused by the quota, with a condition", || async {
        let runners = t
            .api::<EphemeralRunner>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        runners.iter().any(|r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "PodAdmitted"
                        && c.status == "False"
                        && c.reason == "ExceededQuota"
                        && c.message.contains("exceeded quota")
                })
            })
        })
    })
    .await;
    eventually("the EphemeralRunnerSet counts it", || async {
        let set = t.api::<EphemeralRunnerSet>().get(&set.name_any()).await.unwrap();
        set.status.is_some_and(|s| s.quota_blocked_runners == 1)
    })
    .await;
    assert_eq!(pods(&t).await, 1, "the quota holds");

    t.api::<ResourceQuota>()
        .delete("one-pod", &DeleteParams::default())
        .await
        .unwrap();
    eventually("with room, both runners get their Pod", || async {
        pods(&t).await == 2
    })
    .await;
    eventually("nothing is counted as blocked any more", || async {
        let set = t.api::<EphemeralRunnerSet>().get(&set.name_any()).await.unwrap();
        set.status.is_some_and(|s| s.quota_blocked_runners == 0)
    })
    .await;
    let runners = t
        .api::<EphemeralRunner>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    for runner in runners {
        let conditions = runner.status.unwrap_or_default().conditions;
        assert!(
            conditions
                .iter()
                .all(|c| c.type_ != "PodAdmitted" || c.status == "True"),
            "no runner still says its Pod was refused: {conditions:?}"
        );
    }

    controllers.stop().await;
}

async fn registration(t: &Target, name: &str) -> Option<i64> {
    support::registered_id(t, name).await
}

/// Waits for the one runner to be registered with a Pod; returns its name and runner ID.
async fn the_runner_with_a_pod(t: &Target, not: &[String]) -> (String, i64) {
    eventually("a (new) registered runner with a Pod", || async {
        match only_runner(t).await {
            Some(r) if !not.contains(&r.name_any()) => {
                registration(t, &r.name_any()).await.is_some() && pod_uid(t, &r.name_any()).await.is_some()
            }
            _ => false,
        }
    })
    .await;
    let name = only_runner(t).await.unwrap().name_any();
    let id = registration(t, &name).await.unwrap();
    (name, id)
}

/// Waits until `name` is gone, a new runner replaced it, and GitHub no longer knows `id`.
async fn replaced_and_deregistered(t: &Target, fake: &rssc_sim_github::FakeGitHub, name: &str, id: i64) {
    eventually(&format!("{name} is gone and deregistered"), || async {
        t.api::<EphemeralRunner>().get_opt(name).await.unwrap().is_none()
            && !fake.with_state(|s| s.runners.contains_key(&id))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_that_lose_their_job_or_pod_are_deregistered_and_replaced() {
    let t = Target::new("lost-runners").await;
    let support::RunnerSetup {
        fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, support::settings()).await;
    support::create_runner_set(&t, &asss, 1).await;
    let mut seen = Vec::new();

    // A crash after the job started: the JIT configuration is spent.
    let (name, id) = the_runner_with_a_pod(&t, &seen).await;
    let job = serde_json::json!({"status": {"job": {"requestId": 1, "jobId": "job-1"}}});
    t.api::<EphemeralRunner>()
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(job))
        .await
        .unwrap();
    pod_exits(&t, &name, 1, "Error").await;
    replaced_and_deregistered(&t, &fake, &name, id).await;
    seen.push(name);

    // Evicted.
    let (name, id) = the_runner_with_a_pod(&t, &seen).await;
    let evicted = serde_json::json!({"status": {"phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory."}});
    t.api::<Pod>()
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(evicted))
        .await
        .unwrap();
    replaced_and_deregistered(&t, &fake, &name, id).await;
    seen.push(name);

    // The Pod of a running runner vanishes (node lost, deleted by hand).
    let (name, id) = the_runner_with_a_pod(&t, &seen).await;
    support::pod_runs(&t, &name).await;
    eventually("the runner is Running", || async {
        t.api::<EphemeralRunner>()
            .get(&name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            == Some(EphemeralRunnerPhase::Running)
    })
    .await;
    t.api::<Pod>()
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    replaced_and_deregistered(&t, &fake, &name, id).await;
    seen.push(name);

    let (_, _) = the_runner_with_a_pod(&t, &seen).await;
    controllers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_pending_past_the_timeout_is_replaced() {
    let t = Target::new("pending-timeout").await;
    let settings = rssc_controller::context::Settings {
        pending_timeout: std::time::Duration::from_secs(2),
        ..support::settings()
    };
    let support::RunnerSetup {
        fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, settings).await;
    support::create_runner_set(&t, &asss, 1).await;
    // No node runs the Pod, so it stays Pending.
    let (name, id) = the_runner_with_a_pod(&t, &[]).await;
    replaced_and_deregistered(&t, &fake, &name, id).await;
    eventually("a PendingTimeout Event says why", || {
        has_event(&t, "PendingTimeout")
    })
    .await;
    controllers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_whose_secret_was_lost_is_replaced_not_duplicated() {
    let t = Target::new("runner-exists").await;
    let (fake, ca) = github().await;
    let ctx = Arc::new(Context::new(t.client.clone(), support::settings()));
    let controllers = Controllers::start(&ctx, &[Reconciler::AutoscaleSets, Reconciler::EphemeralRunners]);
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    let set = support::runner_set_for(&t, &asss, 1);

    // A JIT configuration was issued for this runner name, but the controller stopped before its
    // Secret was written: GitHub knows the name, Kubernetes has no Secret.
    let github = rssc_github::ActionsClient::new(
        rssc_github::GitHubConfig::parse(&asss.spec.github_config_url).unwrap(),
        rssc_github::Credentials::token(rssc_github::Secret::new(support::PAT.into())).unwrap(),
        rssc_github::ClientOptions {
            root_ca_pem: vec![ca.clone()],
            ..support::github_options()
        },
    )
    .unwrap();
    let name = "ci-runner-lost1";
    let earlier = github
        .generate_jit_config(set.spec.runner_config.scale_set_id, name, "_work")
        .await
        .unwrap()
        .runner
        .id;

    create_runner(&t, &set, name).await;
    eventually(
        "the runner is registered anew, with its Secret and Pod",
        || async {
            registration(&t, name).await.is_some_and(|id| id != earlier) && pod_uid(&t, name).await.is_some()
        },
    )
    .await;
    let id = registration(&t, name).await.unwrap();
    fake.with_state(|s| {
        assert!(
            !s.runners.contains_key(&earlier),
            "the stale registration was removed"
        );
        assert_eq!(
            s.runners.values().filter(|r| r.name == name).count(),
            1,
            "one registration for the name"
        );
        assert!(s.runners.contains_key(&id));
    });
    controllers.stop().await;
}

/// A Pod that fails after GitHub removed its runner (scale-down racing the Pod's exit) would fail
/// again with the same JIT configuration: the runner is replaced at once, not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_github_removed_is_replaced_not_retried() {
    let t = Target::new("deregistered").await;
    let support::RunnerSetup {
        fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, support::settings()).await;
    support::create_runner_set(&t, &asss, 1).await;
    let (name, id) = the_runner_with_a_pod(&t, &[]).await;
    let first_pod = pod_uid(&t, &name).await.unwrap();
    fake.with_state(|s| s.runners.remove(&id))
        .expect("GitHub had the runner");
    pod_exits(&t, &name, 1, "Error").await;
    let (replacement, _) = the_runner_with_a_pod(&t, std::slice::from_ref(&name)).await;
    assert_ne!(replacement, name);
    assert!(
        pod_uid(&t, &name).await.is_none_or(|uid| uid == first_pod),
        "no second Pod was made for the removed runner"
    );
    eventually("the old runner is gone", || async {
        t.api::<EphemeralRunner>().get_opt(&name).await.unwrap().is_none()
    })
    .await;
    controllers.stop().await;
}

/// Runs one EphemeralRunner `name` with its controller talking through the fault proxy with the
/// binary's own client, while the proxy refuses the first `times` creates of `resource` with
/// `code`; returns once the runner has a Pod and a Secret holding the registration its status
/// records.
async fn runner_despite_refused_creates(test: &str, name: &str, resource: &str, code: u16, times: usize) {
    let t = Target::new(test).await;
    let (fake, ca) = github().await;
    let proxy = rssc_test_support::fault_proxy::FaultProxy::in_front_of(&t.kubeconfig)
        .await
        .unwrap();
    let mut config = kube::Config::new(proxy.url().parse().unwrap());
    config.default_namespace = t.namespace.clone();
    let client =
        rssc_runtime::kube_client::client_for(config, &rssc_runtime::kube_client::KubeArgs::default())
            .unwrap();
    let ctx = Arc::new(Context::new(client, support::settings()));
    let controllers = Controllers::start(&ctx, &[Reconciler::AutoscaleSets, Reconciler::EphemeralRunners]);
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    let set = support::runner_set_for(&t, &asss, 1);
    fake.clear_calls();

    proxy.faults().refuse("create", resource, code, times);
    create_runner(&t, &set, name).await;
    let secret_runner_id = || async {
        t.api::<Secret>()
            .get_opt(name)
            .await
            .unwrap()
            .and_then(|s| s.data)
            .and_then(|d| d.get("runnerId").cloned())
            .and_then(|v| String::from_utf8(v.0).ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    eventually(
        "the runner has a Pod and a Secret with the registration it records",
        || async {
            let recorded = registration(&t, name).await;
            pod_uid(&t, name).await.is_some() && recorded.is_some() && secret_runner_id().await == recorded
        },
    )
    .await;
    let refused = proxy
        .faults()
        .codes("create", resource)
        .into_iter()
        .filter(|c| *c == code)
        .count();
    assert_eq!(refused, times, "each refusal was met");
    if code == 429 {
        // Flow control did nothing with the request: the client sends it again, and the
        // reconcile neither fails nor registers the runner a second time.
        let jit_calls = fake
            .calls()
            .iter()
            .filter(|c| c.path.ends_with("/generatejitconfig"))
            .count();
        assert_eq!(
            jit_calls, 1,
            "one JIT configuration, the throttled create sent again"
        );
    }
    let id = registration(&t, name).await.unwrap();
    fake.with_state(|s| {
        let registered: Vec<i64> = s
            .runners
            .values()
            .filter(|r| r.name == name)
            .map(|r| r.id)
            .collect();
        assert_eq!(registered, [id], "one registration, the one recorded");
    });
    controllers.stop().await;
}

/// A create of the runner's Pod answered 409 `Conflict` made no Pod (unlike `AlreadyExists`),
/// and no Pod event will come to wake the runner: it is tried again until the Pod exists. Taking
/// such an answer for "exists" left a registered runner without a Pod until something else
/// touched it, while a job assigned to the scale set waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pod_create_is_tried_again() {
    // More refusals than the runner's own writes trigger reconciles.
    runner_despite_refused_creates("pod-refused", "ci-runner-podrefused", "pods", 409, 3).await;
}

/// A create of the runner's JIT Secret answered 409 `Conflict` made no Secret: the runner is
/// not recorded as registered with a Secret that does not exist (its Pod could never start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_create_is_tried_again() {
    runner_despite_refused_creates("secret-refused", "ci-runner-secretrefused", "secrets", 409, 1).await;
}

/// The API server's flow control (API Priority and Fairness) rejects a request it will not
/// queue with 429 and `Retry-After`, having done nothing with it: the controller's client sends
/// it again after that wait, so a busy control plane slows a runner down without failing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_the_api_server_throttles_are_sent_again() {
    runner_despite_refused_creates("secret-throttled", "ci-runner-secretthrottled", "secrets", 429, 2).await;
}
