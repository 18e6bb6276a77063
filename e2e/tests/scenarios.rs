//! End-to-end scenarios without injected faults: the real binaries, from applying an
//! AutoscaleSet and a RunnerSet to jobs done and everything cleaned up, with the invariants
//! checked at the end (`rssc_e2e::invariants`).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use rssc_api::v1alpha1::{AutoscaleSet, EphemeralRunner, EphemeralRunnerSet, RunnerSet};
use rssc_e2e::{
    Harness, eventually,
    invariants::{Expect, teardown_and_check},
    scenario::{
        AUTOSCALE_SET, JOB, RUNNER_SET, apply_sets_and_wait_for_listener, count, listener_ready,
        live_runners, queue_jobs, runner_set, runner_set_condition, wait_jobs,
    },
};
use serde_json::json;

const POD_SPEC_HASH: &str = "scaleset.actions.github.com/pod-spec-hash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_from_zero_runners_and_back_to_zero() {
    let h = Harness::start("one-job").await;
    apply_sets_and_wait_for_listener(&h, 0, 5).await;
    assert_eq!(
        count::<EphemeralRunner>(&h, "").await,
        0,
        "no runner without a job (minRunners 0)"
    );
    let jobs = queue_jobs(&h, 1, JOB);
    wait_jobs(&h, &jobs).await;
    eventually("back to zero runners", || async {
        count::<EphemeralRunner>(&h, "").await == 0
    })
    .await;
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_runners_idle_headroom_is_held_while_jobs_come_and_go() {
    let h = Harness::start("min-runners").await;
    apply_sets_and_wait_for_listener(&h, 3, 10).await;
    eventually("three idle runners", || async {
        live_runners(&h).await.len() == 3
    })
    .await;
    // Jobs trickle in; the headroom never drops below three runners while they come and go.
    let mut jobs = Vec::new();
    for _ in 0..6 {
        jobs.extend(queue_jobs(&h, 1, JOB));
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(700) {
            let live = live_runners(&h).await.len();
            assert!(live >= 3, "the idle headroom fell to {live} runners");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_jobs(&h, &jobs).await;
    eventually("back to the three idle runners", || async {
        live_runners(&h).await.len() == 3 && count::<EphemeralRunner>(&h, "").await == 3
    })
    .await;
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_template_change_during_a_burst() {
    let h = Harness::start("template").await;
    apply_sets_and_wait_for_listener(&h, 0, 10).await;
    let jobs = queue_jobs(&h, 30, Duration::from_secs(4));
    let busy_pods = || {
        h.nodes
            .as_ref()
            .unwrap()
            .summary()
            .pods
            .into_iter()
            .filter(|(_, p)| {
                p.runner
                    .as_ref()
                    .is_some_and(|r| r.job_id.is_some() && !r.finished)
            })
            .map(|(k, _)| k.rsplit('/').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    eventually("five runners are busy", || async { busy_pods().len() >= 5 }).await;

    // Change the runner template while runners are busy.
    let busy_at_change = busy_pods();
    let old_hash = template_hash(&h).await;
    h.apply::<RunnerSet>(runner_set(
        RUNNER_SET,
        json!({"containers": [{"name": "runner", "env": [{"name": "TEMPLATE", "value": "v2"}]}]}),
    ))
    .await;
    eventually("the EphemeralRunnerSet has the new template", || async {
        template_hash(&h).await != old_hash
    })
    .await;
    let changed_at = Utc::now();
    let new_hash = template_hash(&h).await;

    // Record every runner while the burst drains: name → (created, template hash).
    let mut seen: BTreeMap<String, (DateTime<Utc>, String)> = BTreeMap::new();
    let deadline = Instant::now() + rssc_e2e::WAIT;
    loop {
        for r in h
            .api::<EphemeralRunner>()
            .list(&Default::default())
            .await
            .unwrap()
        {
            let created = r.metadata.creation_timestamp.clone().unwrap().0;
            let hash = r
                .metadata
                .labels
                .unwrap_or_default()
                .remove(POD_SPEC_HASH)
                .unwrap_or_default();
            seen.insert(r.metadata.name.unwrap(), (created, hash));
        }
        let done = h.github.with_state(|s| {
            jobs.iter()
                .all(|j| s.jobs[j].state == rssc_sim_github::JobState::Completed)
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the burst did not drain in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Busy runners finished their jobs on the old template; runners made after the change
    // (a reconcile in flight at the change may still use the old one) use the new one.
    let summary = h.nodes.as_ref().unwrap().summary();
    for name in &busy_at_change {
        let pod = summary
            .pod(&h.namespace, name)
            .expect("the busy runner's pod is known");
        assert!(
            pod.runner.as_ref().is_some_and(|r| r.finished),
            "busy runner {name} finished its job on the old template"
        );
    }
    let slack = k8s_openapi::chrono::Duration::seconds(3);
    let late_old: Vec<&String> = seen
        .iter()
        .filter(|(_, (created, hash))| *created > changed_at + slack && *hash != new_hash)
        .map(|(n, _)| n)
        .collect();
    assert!(
        late_old.is_empty(),
        "runners made after the change use the old template: {late_old:?}"
    );
    let new_ran_jobs = seen
        .iter()
        .filter(|(_, (_, hash))| *hash == new_hash)
        .filter(|(n, _)| {
            summary
                .pod(&h.namespace, n)
                .and_then(|p| p.runner.as_ref())
                .is_some_and(|r| r.finished)
        })
        .count();
    assert!(new_ran_jobs > 0, "runners with the new template ran jobs");
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

async fn template_hash(h: &Harness) -> String {
    h.api::<EphemeralRunnerSet>()
        .get_opt(RUNNER_SET)
        .await
        .unwrap()
        .and_then(|s| s.spec.runner_template.metadata)
        .and_then(|m| m.labels.get(POD_SPEC_HASH).cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_and_max_runners_change_live_without_a_listener_restart() {
    let h = Harness::start("live-bounds").await;
    apply_sets_and_wait_for_listener(&h, 0, 2).await;
    let listener = |h: &Harness| {
        let s = h.nodes.as_ref().unwrap().summary();
        s.pods
            .values()
            .filter(|p| p.kind == rssc_sim_node::PodKind::Listener && !p.deleted)
            .map(|p| (p.uid.clone(), p.restarts))
            .collect::<Vec<_>>()
    };
    let before = listener(&h);
    assert_eq!(before.len(), 1, "one listener Pod runs");

    let jobs = queue_jobs(&h, 6, Duration::from_secs(8));
    eventually("two runners, as maxRunners allows", || async {
        live_runners(&h).await.len() == 2
    })
    .await;
    let bounds = |min: i32, max: i32| {
        json!({"apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
               "spec": {"minRunners": min, "maxRunners": max}})
    };
    h.api::<AutoscaleSet>()
        .patch(
            AUTOSCALE_SET,
            &PatchParams::default(),
            &Patch::Merge(bounds(0, 6)),
        )
        .await
        .unwrap();
    let raised = Instant::now();
    rssc_test_support::eventually(
        "six runners after maxRunners went to 6",
        Duration::from_secs(20),
        || async { live_runners(&h).await.len() == 6 },
    )
    .await;
    eprintln!("maxRunners 2 → 6 took effect in {:?}", raised.elapsed());
    wait_jobs(&h, &jobs).await;

    h.api::<AutoscaleSet>()
        .patch(
            AUTOSCALE_SET,
            &PatchParams::default(),
            &Patch::Merge(bounds(2, 6)),
        )
        .await
        .unwrap();
    rssc_test_support::eventually(
        "two idle runners after minRunners went to 2",
        Duration::from_secs(20),
        || async { live_runners(&h).await.len() == 2 },
    )
    .await;
    assert_eq!(
        listener(&h),
        before,
        "the same listener Pod ran throughout, never restarted"
    );
    assert!(listener_ready(&h, RUNNER_SET).await);
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_set_on_the_same_autoscale_set_is_refused() {
    let h = Harness::start("two-runnersets").await;
    apply_sets_and_wait_for_listener(&h, 0, 5).await;
    h.apply::<RunnerSet>(runner_set("ci-2", json!({}))).await;
    eventually(
        "the second RunnerSet reports AutoscaleSetInUse naming the holder",
        || async {
            runner_set_condition(&h, "ci-2", "Ready").await.is_some_and(|c| {
                c.status == "False"
                    && c.reason == "AutoscaleSetInUse"
                    && c.message
                        .contains(&format!("RunnerSet {}/{RUNNER_SET}", h.namespace))
            })
        },
    )
    .await;
    // The holder keeps working; the second got no listener and no runners.
    let jobs = queue_jobs(&h, 2, JOB);
    wait_jobs(&h, &jobs).await;
    assert!(
        listener_ready(&h, RUNNER_SET).await,
        "the holder's listener still runs"
    );
    assert_eq!(
        count::<k8s_openapi::api::apps::v1::Deployment>(&h, "scaleset.actions.github.com/runnerset=ci-2")
            .await,
        0,
        "the refused RunnerSet has no listener"
    );
    assert_eq!(
        count::<EphemeralRunner>(&h, "scaleset.actions.github.com/runnerset=ci-2").await,
        0,
        "the refused RunnerSet has no runners"
    );
    let mut expect = Expect::jobs(&jobs);
    expect.runner_sets.push("ci-2".to_owned());
    teardown_and_check(h, expect).await;
}
