//! How the controller handles runner Pods that fail, against the Kubernetes API (test server or
//! `RSSC_E2E_KUBECONFIG`) and the fake GitHub: a failure before a job retries the Pod with the
//! same registration; an OOM kill replaces the runner; exit 7 fails it with an Event and a
//! condition on the AutoscaleSet; a full ResourceQuota is a condition, and runners start once
//! there is room.

mod support;

use std::sync::Arc;

use k8s_openapi::api::{
    core::v1::{Pod, ResourceQuota},
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

async fn pod_uid(t: &Target, name: &str) -> Option<String> {
    t.api::<Pod>()
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|p| p.metadata.uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_retried_replaced_or_failed_as_they_deserve() {
    let t = Target::new("failures").await;
    let (fake, ca) = github().await;
    let ctx = Arc::new(Context::new(t.client.clone(), support::settings()));
    let controllers = Controllers::start(
        &ctx,
        &[
            Reconciler::AutoscaleSets,
            Reconciler::EphemeralRunnerSets,
            Reconciler::EphemeralRunners,
        ],
    );
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    t.api::<EphemeralRunnerSet>()
        .create(&PostParams::default(), &support::runner_set_for(&t, &asss, 1))
        .await
        .unwrap();
    eventually("a runner with a Pod", || async {
        match only_runner(&t).await {
            Some(r) => pod_uid(&t, &r.name_any()).await.is_some(),
            None => false,
        }
    })
    .await;
    let runner = only_runner(&t).await.unwrap();
    let name = runner.name_any();

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
    eventually("a RunnerVersionDeprecated Event", || async {
        t.api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("RunnerVersionDeprecated"))
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

    // A runner that completes its job shows the version works again.
    eventually("a new runner with a Pod", || async {
        match only_runner(&t).await {
            Some(r) if r.name_any() != replacement => pod_uid(&t, &r.name_any()).await.is_some(),
            _ => false,
        }
    })
    .await;
    let next = only_runner(&t).await.unwrap().name_any();
    pod_exits(&t, &next, 0, "Completed").await;
    eventually("the AutoscaleSet's runner version is supported again", || async {
        runner_version_supported(&t, &asss.name_any())
            .await
            .is_some_and(|(status, reason, _)| status == "True" && reason == "RunnerSucceeded")
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
    let (fake, ca) = github().await;
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
    let ctx = Arc::new(Context::new(t.client.clone(), support::settings()));
    let controllers = Controllers::start(
        &ctx,
        &[
            Reconciler::AutoscaleSets,
            Reconciler::EphemeralRunnerSets,
            Reconciler::EphemeralRunners,
        ],
    );
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    let set = support::runner_set_for(&t, &asss, 2);
    t.api::<EphemeralRunnerSet>()
        .create(&PostParams::default(), &set)
        .await
        .unwrap();

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
