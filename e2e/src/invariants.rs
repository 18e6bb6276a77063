//! The invariants every scenario ends with: each job ran exactly once and completed, no runner
//! was removed while it had a job, nothing is left after the RunnerSet and AutoscaleSet are
//! deleted (on the cluster and on GitHub), and no log holds a planted secret.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::DeleteParams;
use rssc_api::v1alpha1::{AutoscaleSet, EphemeralRunner, EphemeralRunnerSet, RunnerSet};
use rssc_sim_github::JobState;

use crate::{
    Harness, PAT, eventually,
    scenario::{AUTOSCALE_SET, RUNNER_SET, count},
};

/// What a scenario expects at its end.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Jobs that must have run exactly once and succeeded.
    pub jobs: Vec<i64>,
    /// Jobs the scenario failed on purpose by killing their runner mid-job: they ran exactly
    /// once and ended `failed` (GitHub does not run them again).
    pub failed_jobs: Vec<i64>,
    /// RunnerSets to delete before the AutoscaleSet.
    pub runner_sets: Vec<String>,
    /// Secrets planted besides the harness's token, which no log may contain.
    pub secrets: Vec<String>,
}

impl Expect {
    /// These jobs succeeded; the RunnerSet is `ci`.
    pub fn jobs(jobs: &[i64]) -> Self {
        Self {
            jobs: jobs.to_vec(),
            failed_jobs: Vec::new(),
            runner_sets: vec![RUNNER_SET.to_owned()],
            secrets: Vec::new(),
        }
    }
}

/// Every job the fake GitHub knows is one of `expect`'s, completed, run by exactly one runner,
/// never un-assigned for want of a runner, and ended as expected.
pub fn jobs_ran_once(h: &Harness, expect: &Expect) {
    let expected: BTreeSet<i64> = expect.jobs.iter().chain(&expect.failed_jobs).copied().collect();
    h.github.with_state(|s| {
        let known: BTreeSet<i64> = s.jobs.keys().copied().collect();
        assert_eq!(
            known, expected,
            "the fake GitHub holds exactly the scenario's jobs"
        );
        for (id, job) in &s.jobs {
            assert_eq!(job.state, JobState::Completed, "job {id} completed");
            assert_eq!(job.run_count, 1, "job {id} ran exactly once");
            assert!(
                job.reoffers == 0,
                "job {id} was never un-assigned and re-queued for want of a runner"
            );
            let want = if expect.failed_jobs.contains(id) {
                "failed"
            } else {
                "succeeded"
            };
            assert_eq!(job.result.as_deref(), Some(want), "job {id} ended {want}");
        }
    });
}

/// No runner Pod stopped while it ran a job, except those the scenario killed on purpose:
/// a runner removed (its Pod deleted, evicted or killed) mid-job shows as a job taken and never
/// finished. Waits a moment, since a runner records its finish just after GitHub has it.
pub async fn no_busy_runner_removed(h: &Harness, expect: &Expect) {
    let Some(nodes) = h.nodes.as_ref() else {
        return;
    };
    let allowed: BTreeSet<i64> = expect.failed_jobs.iter().copied().collect();
    let interrupted = || -> BTreeSet<i64> {
        nodes
            .summary()
            .pods
            .values()
            .filter_map(|p| p.runner.as_ref())
            .filter(|r| !r.finished)
            .filter_map(|r| r.job_id)
            .filter(|j| !allowed.contains(j))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !interrupted().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let left = interrupted();
    assert!(
        left.is_empty(),
        "runners were stopped while running jobs {left:?}"
    );
}

/// Deletes the RunnerSets and the AutoscaleSet, checks nothing is left anywhere and every
/// invariant holds, then stops the harness.
pub async fn teardown_and_check(h: Harness, expect: Expect) {
    jobs_ran_once(&h, &expect);
    no_busy_runner_removed(&h, &expect).await;
    for rs in &expect.runner_sets {
        h.api::<RunnerSet>()
            .delete(rs, &DeleteParams::default())
            .await
            .unwrap();
    }
    h.api::<AutoscaleSet>()
        .delete(AUTOSCALE_SET, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the RunnerSets and the AutoscaleSet are gone", || async {
        count::<RunnerSet>(&h, "").await == 0 && count::<AutoscaleSet>(&h, "").await == 0
    })
    .await;
    let left = || async {
        let mut left = Vec::new();
        left.extend(names::<EphemeralRunnerSet>(&h, "").await);
        left.extend(names::<EphemeralRunner>(&h, "").await);
        left.extend(names::<Pod>(&h, "scaleset.actions.github.com/component in (runner,listener)").await);
        left.extend(names::<Secret>(&h, "scaleset.actions.github.com/component=runner-jit-config").await);
        left
    };
    let deadline = std::time::Instant::now() + crate::WAIT;
    loop {
        let now = left().await;
        if now.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "EphemeralRunnerSets, runners, runner or listener Pods or JIT Secrets are left: {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    h.github.with_state(|s| {
        assert!(s.scale_sets.is_empty(), "the scale set is gone from GitHub");
        assert!(
            s.runners.is_empty(),
            "no runner registration is left on GitHub: {:?}",
            s.runners.values().map(|r| &r.name).collect::<Vec<_>>()
        );
        assert!(s.sessions.is_empty(), "no message session is left open");
    });
    // Checked again: nothing ran late while everything was torn down.
    jobs_ran_once(&h, &expect);
    no_busy_runner_removed(&h, &expect).await;
    let logs = h.all_logs();
    assert!(!logs.is_empty(), "the processes wrote logs");
    for secret in std::iter::once(PAT).chain(expect.secrets.iter().map(String::as_str)) {
        assert!(!logs.contains(secret), "a planted secret appears in a log");
    }
    h.stop().await;
}

/// `kind/name` of each `K` matching `selector`.
async fn names<K>(h: &Harness, selector: &str) -> Vec<String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    h.api::<K>()
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| format!("{}/{}", K::kind(&()), o.meta().name.clone().unwrap_or_default()))
        .collect()
}
