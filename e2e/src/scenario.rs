//! What scenarios share: the AutoscaleSet and RunnerSet they apply, jobs, counts and waits.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ListParams;
use rssc_api::v1alpha1::{AutoscaleSet, EphemeralRunner, RunnerSet};
use rssc_sim_github::{JobSpec, JobState};
use serde_json::{Value, json};

use crate::{Harness, WAIT, eventually};

/// Name of the AutoscaleSet every scenario applies; also its scale set's name and job label.
pub const AUTOSCALE_SET: &str = "linux";
/// Name of the RunnerSet most scenarios apply.
pub const RUNNER_SET: &str = "ci";
/// How long most scenario jobs run: long enough for the runner to be seen busy.
pub const JOB: Duration = Duration::from_millis(1500);

/// Where runner and listener Pods go: the simulated nodes (so the same manifests work on a real
/// cluster, where a real scheduler places them).
pub fn placement() -> Value {
    json!({
        "nodeSelector": {"sim.rssc.dev/node": "true"},
        "tolerations": [{"key": "sim.rssc.dev/node", "operator": "Exists", "effect": "NoSchedule"}]
    })
}

/// The AutoscaleSet manifest `linux` with these bounds, using the token Secret `token_secret`.
pub fn autoscale_set(h: &Harness, min_runners: i32, max_runners: i32, token_secret: &str) -> Value {
    json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
        "metadata": {"name": AUTOSCALE_SET},
        "spec": {
            "githubConfigURL": h.github.config_url("octo-org"), "scaleSetName": AUTOSCALE_SET,
            "minRunners": min_runners, "maxRunners": max_runners,
            "runnerImage": "ghcr.io/actions/actions-runner:latest",
            "personalAccessToken": {"tokenSecretRef": {"name": token_secret}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}}
        }
    })
}

/// A RunnerSet manifest `name` binding the AutoscaleSet, with `pod_spec` merged into its runner
/// template's Pod spec (placement is always added).
pub fn runner_set(name: &str, pod_spec: Value) -> Value {
    let mut spec = placement();
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), pod_spec) {
        spec.extend(extra);
    }
    json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "RunnerSet",
        "metadata": {"name": name},
        "spec": {
            "autoscaleSetRef": {"name": AUTOSCALE_SET},
            "runnerTemplate": {"spec": spec},
            "listenerTemplate": placement()
        }
    })
}

/// Applies the AutoscaleSet (with the harness's token Secret) and the RunnerSet `ci`.
pub async fn apply_sets(h: &Harness, min_runners: i32, max_runners: i32) {
    h.apply::<AutoscaleSet>(autoscale_set(h, min_runners, max_runners, "github-token"))
        .await;
    h.apply::<RunnerSet>(runner_set(RUNNER_SET, json!({}))).await;
}

/// Applies the sets and waits until the listener holds a session.
pub async fn apply_sets_and_wait_for_listener(h: &Harness, min_runners: i32, max_runners: i32) {
    apply_sets(h, min_runners, max_runners).await;
    eventually("the listener has a session", || listener_ready(h, RUNNER_SET)).await;
}

/// Whether the RunnerSet reports its listener ready (it holds a session).
pub async fn listener_ready(h: &Harness, runner_set: &str) -> bool {
    let rs = h.api::<RunnerSet>().get_opt(runner_set).await.ok().flatten();
    rs.and_then(|r| r.status)
        .and_then(|s| s.listener)
        .is_some_and(|l| l.ready)
}

/// How many `K` match `selector` (`""` for all).
pub async fn count<K>(h: &Harness, selector: &str) -> usize
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

/// EphemeralRunners that are not being deleted.
pub async fn live_runners(h: &Harness) -> Vec<EphemeralRunner> {
    h.api::<EphemeralRunner>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Queues `n` jobs for the scale set, each running `duration`.
pub fn queue_jobs(h: &Harness, n: usize, duration: Duration) -> Vec<i64> {
    (0..n)
        .map(|_| {
            h.github
                .queue_job(JobSpec::for_labels([AUTOSCALE_SET]).with_duration(duration))
        })
        .collect()
}

/// Waits until every one of `jobs` completed on the fake GitHub, for at most `limit`.
pub async fn wait_jobs_done(h: &Harness, jobs: &[i64], limit: Duration) {
    let started = std::time::Instant::now();
    let done = h
        .github
        .wait_until(limit, |s| {
            jobs.iter()
                .all(|j| s.jobs.get(j).is_some_and(|j| j.state == JobState::Completed))
        })
        .await;
    if !done {
        let states = h.github.with_state(|s| {
            let mut by_state = std::collections::BTreeMap::<String, usize>::new();
            for j in jobs {
                *by_state.entry(format!("{:?}", s.jobs[j].state)).or_default() += 1;
            }
            by_state
        });
        panic!(
            "{} jobs did not complete within {limit:?}: {states:?}",
            jobs.len()
        );
    }
    eprintln!(
        "[e2e] {} jobs completed: after {:.1?}",
        jobs.len(),
        started.elapsed()
    );
}

/// Waits for the default time until every one of `jobs` completed.
pub async fn wait_jobs(h: &Harness, jobs: &[i64]) {
    wait_jobs_done(h, jobs, WAIT).await;
}

/// The condition `type_` of the RunnerSet `name`, if set.
pub async fn runner_set_condition(h: &Harness, name: &str, type_: &str) -> Option<Condition> {
    h.api::<RunnerSet>()
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
}

/// The condition `type_` of the AutoscaleSet, if set.
pub async fn autoscale_set_condition(h: &Harness, type_: &str) -> Option<Condition> {
    h.api::<AutoscaleSet>()
        .get_opt(AUTOSCALE_SET)
        .await
        .ok()
        .flatten()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
}

/// The scale set's id on the fake GitHub, once registered.
pub fn scale_set_id(h: &Harness) -> Option<i64> {
    h.github.with_state(|s| {
        s.scale_sets
            .values()
            .find(|ss| ss.name == AUTOSCALE_SET)
            .map(|ss| ss.id)
    })
}
