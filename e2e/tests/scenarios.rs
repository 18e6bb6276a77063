//! End-to-end scenarios: the real binaries, from `kubectl apply` of an AutoscaleSet and a
//! RunnerSet to jobs done and everything cleaned up, with the invariants checked at the end.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use rssc_api::v1alpha1::{AutoscaleSet, EphemeralRunner, RunnerSet};
use rssc_e2e::{Harness, PAT, eventually};
use rssc_sim_github::{JobSpec, JobState};

async fn manifests(h: &Harness, min_runners: i32, max_runners: i32) {
    h.apply::<AutoscaleSet>(serde_json::json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
        "metadata": {"name": "linux"},
        "spec": {
            "githubConfigURL": h.github.config_url("octo-org"), "scaleSetName": "linux",
            "minRunners": min_runners, "maxRunners": max_runners,
            "runnerImage": "ghcr.io/actions/actions-runner:latest",
            "personalAccessToken": {"tokenSecretRef": {"name": "github-token"}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}}
        }
    }))
    .await;
    // Pinned to the simulated nodes, so the same manifests work on a real cluster.
    let placement = serde_json::json!({
        "nodeSelector": {"sim.rssc.dev/node": "true"},
        "tolerations": [{"key": "sim.rssc.dev/node", "operator": "Exists", "effect": "NoSchedule"}]
    });
    h.apply::<RunnerSet>(serde_json::json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "RunnerSet",
        "metadata": {"name": "ci"},
        "spec": {"autoscaleSetRef": {"name": "linux"}, "runnerTemplate": {"spec": placement}, "listenerTemplate": placement}
    }))
    .await;
}

async fn listener_ready(h: &Harness) -> bool {
    let rs = h.api::<RunnerSet>().get("ci").await.unwrap();
    rs.status.and_then(|s| s.listener).is_some_and(|l| l.ready)
}

async fn count<K>(h: &Harness, selector: &str) -> usize
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    h.api::<K>()
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .len()
}

/// Deletes the RunnerSet and the AutoscaleSet, then checks nothing is left anywhere.
async fn teardown_and_check(h: Harness, jobs: &[i64]) {
    h.fake_jobs_ran_once(jobs);
    h.api::<RunnerSet>()
        .delete("ci", &DeleteParams::default())
        .await
        .unwrap();
    h.api::<AutoscaleSet>()
        .delete("linux", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the RunnerSet and AutoscaleSet are gone", || async {
        h.api::<RunnerSet>().get_opt("ci").await.unwrap().is_none()
            && h.api::<AutoscaleSet>().get_opt("linux").await.unwrap().is_none()
    })
    .await;
    eventually("no runner, runner Pod or JIT Secret is left", || async {
        count::<EphemeralRunner>(&h, "").await == 0
            && count::<Pod>(&h, "scaleset.actions.github.com/component=runner").await == 0
            && count::<Secret>(&h, "scaleset.actions.github.com/component=runner-jit-config").await == 0
    })
    .await;
    h.github.with_state(|s| {
        assert!(s.scale_sets.is_empty(), "the scale set is gone from GitHub");
        assert!(s.runners.is_empty(), "no runner registration is left on GitHub");
        assert!(s.sessions.is_empty(), "no message session is left open");
    });
    let logs = h.all_logs();
    assert!(!logs.is_empty(), "the processes wrote logs");
    assert!(!logs.contains(PAT), "a planted secret appears in a log");
    h.stop().await;
}

trait Invariants {
    fn fake_jobs_ran_once(&self, jobs: &[i64]);
}

impl Invariants for Harness {
    fn fake_jobs_ran_once(&self, jobs: &[i64]) {
        self.github.with_state(|s| {
            for id in jobs {
                let job = &s.jobs[id];
                assert_eq!(job.state, JobState::Completed, "job {id} completed");
                assert_eq!(job.run_count, 1, "job {id} ran exactly once");
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_from_zero_runners_and_back_to_zero() {
    let h = Harness::start("one-job").await;
    manifests(&h, 0, 5).await;
    eventually("the listener has a session", || async {
        listener_ready(&h).await
    })
    .await;
    assert_eq!(
        count::<EphemeralRunner>(&h, "").await,
        0,
        "no runner without a job (minRunners 0)"
    );

    let job = h.github.queue_job(JobSpec::for_labels(["linux"]));
    let done = h
        .github
        .wait_until(rssc_e2e::WAIT, |s| {
            s.jobs.get(&job).is_some_and(|j| j.state == JobState::Completed)
        })
        .await;
    assert!(done, "the job ran to completion");
    eventually("back to zero runners", || async {
        count::<EphemeralRunner>(&h, "").await == 0
    })
    .await;
    teardown_and_check(h, &[job]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_runners_idle_headroom_is_held_while_jobs_come_and_go() {
    let h = Harness::start("min-runners").await;
    manifests(&h, 2, 10).await;
    eventually("two idle runners", || async {
        count::<EphemeralRunner>(&h, "").await == 2
    })
    .await;
    let jobs: Vec<i64> = (0..3)
        .map(|_| h.github.queue_job(JobSpec::for_labels(["linux"])))
        .collect();
    let done = h
        .github
        .wait_until(rssc_e2e::WAIT, |s| {
            jobs.iter()
                .all(|j| s.jobs.get(j).is_some_and(|j| j.state == JobState::Completed))
        })
        .await;
    assert!(done, "all jobs ran");
    eventually("back to the two idle runners", || async {
        count::<EphemeralRunner>(&h, "").await == 2
    })
    .await;
    teardown_and_check(h, &jobs).await;
}
