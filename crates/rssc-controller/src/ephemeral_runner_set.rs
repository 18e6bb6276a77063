//! The EphemeralRunnerSet reconciler: turns the listener's decision into EphemeralRunners
//! following [`crate::scale::plan`] — creating concurrently, deleting finished and failed
//! runners at once, and asking GitHub before removing an idle or pending runner, so a runner
//! that took a job in the meantime is kept.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt, TryStreamExt, stream};
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta, chrono::Utc};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, ObjectList, Patch, PatchParams},
    runtime::{controller::Action, reflector::Store},
};
use rssc_api::{
    consts::{annotations, field_managers, finalizers, labels, reasons},
    names,
    v1alpha1::{
        AutoscaleSet, EphemeralRunner, EphemeralRunnerPhase, EphemeralRunnerSet, EphemeralRunnerSetStatus,
        EphemeralRunnerSpec,
    },
};
use rssc_github::Error as GitHubError;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    context::Context,
    decision_clock::{CarriedOut, Seen},
    ephemeral_runner::registered_id,
    lean_runners::SetRunner,
    metrics::ScaleSetLabels,
    reconcile::{Error, timed},
    scale::{Counts, Current, DECISION_SETTLE, Decision, RunnerState, RunnerView, plan},
};

/// How soon a decision that could not be carried out in full is looked at again.
const UNSATISFIED_RECHECK: Duration = Duration::from_secs(5);

/// At most this many EphemeralRunners are created, deleted or removed at once.
const WRITE_CONCURRENCY: usize = 16;

/// Runners waiting because a ResourceQuota refused their Pod.
fn quota_blocked<'a>(runners: impl Iterator<Item = &'a EphemeralRunner>) -> usize {
    runners
        .filter_map(|r| r.status.as_ref())
        .filter(|s| {
            s.phase.is_none_or(|p| p == EphemeralRunnerPhase::Pending)
                && s.reason.as_deref() == Some(reasons::EXCEEDED_QUOTA)
        })
        .count()
}

/// How the plan sees one EphemeralRunner.
pub fn view(runner: &EphemeralRunner) -> RunnerView {
    let status = runner.status.clone().unwrap_or_default();
    let state = match status.phase {
        Some(EphemeralRunnerPhase::Succeeded) => RunnerState::Finished,
        Some(EphemeralRunnerPhase::Failed) => RunnerState::Failed,
        _ if status.job.as_ref().is_some_and(|j| j.result.is_some()) => RunnerState::Finishing,
        _ if status.job.is_some() => RunnerState::Busy,
        Some(EphemeralRunnerPhase::Running) => RunnerState::Idle,
        _ => RunnerState::Pending,
    };
    RunnerView {
        name: runner.name_any(),
        created: runner
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Utc::now),
        state,
        template_hash: runner
            .labels()
            .get(labels::POD_SPEC_HASH)
            .cloned()
            .unwrap_or_default(),
        scale_set_id: runner.spec.runner_config.scale_set_id,
        deleting: runner.metadata.deletion_timestamp.is_some(),
    }
}

/// Reconciles one EphemeralRunnerSet, reading its runners from `cache` (EphemeralRunners read
/// as [`SetRunner`]s).
pub async fn reconcile(
    set: Arc<EphemeralRunnerSet>,
    ctx: Arc<Context>,
    cache: Store<EphemeralRunner>,
) -> Result<Action, Error> {
    let scale_set = &set.spec.runner_config.autoscale_set_ref.name;
    timed(
        &ctx,
        "EphemeralRunnerSet",
        set.as_ref(),
        scale_set,
        reconcile_set(&set, &ctx, &cache),
    )
    .await
}

/// Where a reconcile reads the set's runners from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The set's cache, with its expectations (a list while the cache is not to be trusted).
    Cache,
    /// The API server.
    Listed,
}

/// The cache may not show yet the job records the listener wrote just before its decision
/// (they come on another watch): it can show runners whose jobs ended as busy, and a plan
/// that counts them removes runners the jobs still need, to make them again later (28 of them
/// in one burst of 1,000). Only removing a live runner acts on that lag; a plan that would
/// is made again from the runners as stored.
async fn reconcile_set(
    set: &EphemeralRunnerSet,
    ctx: &Context,
    cache: &Store<EphemeralRunner>,
) -> Result<Action, Error> {
    match reconcile_reading(set, ctx, cache, Read::Cache).await? {
        Some(action) => Ok(action),
        None => Ok(reconcile_reading(set, ctx, cache, Read::Listed)
            .await?
            .unwrap_or_else(Action::await_change)),
    }
}

/// Reconciles the set with its runners read as `read` says; `None` when the plan would remove
/// live runners and they were read from the cache (read them from the API server instead).
async fn reconcile_reading(
    set: &EphemeralRunnerSet,
    ctx: &Context,
    cache: &Store<EphemeralRunner>,
    read: Read,
) -> Result<Option<Action>, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let decision_key = crate::fresh_runners::set_key(&namespace, &set.name_any());
    if set.metadata.deletion_timestamp.is_some() {
        ctx.decisions.forget(&decision_key);
        ctx.set_status_pace.forget(&decision_key);
        ctx.runner_expectations.forget(&decision_key);
        return Ok(Some(Action::await_change()));
    }
    let runners_api: Api<EphemeralRunner> = Api::namespaced(ctx.client.clone(), &namespace);
    let cache = (read == Read::Cache).then_some(cache);
    let runners = read_runners(ctx, &runners_api, cache, set, &decision_key).await?;
    let by_name: BTreeMap<String, &EphemeralRunner> =
        runners.iter().map(|r| (r.name_any(), r.as_ref())).collect();
    let views: Vec<RunnerView> = runners.iter().map(|r| view(r)).collect();
    let seen = Seen {
        sequence: set.spec.patch_sequence,
        job_ends: set.spec.job_ends,
        scale_set_id: set.spec.runner_config.scale_set_id,
        listener_session: set
            .status
            .as_ref()
            .and_then(|s| s.listener.as_ref())
            .and_then(|l| l.session_id.as_deref()),
    };
    let standing = ctx.decisions.standing(&decision_key, seen, Instant::now(), || {
        by_name.keys().cloned().collect()
    });
    let decision_age = standing.age;
    // What this process carried out last, else what the status says (after a restart).
    let status_observed = set.status.as_ref().map_or(0, |s| s.observed_patch_sequence);
    let observed = standing.carried_out.map_or(status_observed, |done| done.sequence);
    let acted_on = match standing.carried_out {
        Some(done) => done.is(set.spec.patch_sequence, set.spec.replicas),
        None => status_observed == set.spec.patch_sequence,
    };
    let decision = Decision {
        replicas: usize::try_from(set.spec.replicas.max(0)).unwrap_or(0),
        beyond_max: usize::try_from(set.spec.beyond_max.max(0)).unwrap_or(0),
        sequence: set.spec.patch_sequence,
        acted_on,
        settled: decision_age >= DECISION_SETTLE,
        uncounted_finishes: standing.uncounted_finishes,
        unfinished_ends: standing.unfinished_ends,
        max_runners: set
            .spec
            .max_runners
            .map(|max| usize::try_from(max.max(0)).unwrap_or(0)),
    };
    let template_hash = set
        .spec
        .runner_template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.get(labels::POD_SPEC_HASH).cloned())
        .unwrap_or_default();
    let current = Current {
        template_hash: &template_hash,
        scale_set_id: set.spec.runner_config.scale_set_id,
    };
    let plan = plan(decision, &views, &current, Utc::now(), ctx.settings.pending_grace);
    if read == Read::Cache && (plan.scale_down > 0 || !plan.replace.is_empty()) {
        debug!(set = %set.name_any(), "removing runners: reading them from the API server first");
        return Ok(None);
    }
    if plan.waiting_for_finishing > 0 || plan.held_for_finishes > 0 || plan.deferred > 0 {
        // Why runners the decision asks for are not made yet, term by term (debug: at the
        // maximum it is every reconcile of a draining set).
        debug!(set = %set.name_any(), replicas = decision.replicas, sequence = decision.sequence,
            runners = views.len(), creating = plan.create,
            waiting_for_finishing = plan.waiting_for_finishing, held_for_finishes = plan.held_for_finishes,
            deferred_until_settled = plan.deferred, uncounted_finishes = decision.uncounted_finishes,
            unfinished_ends = decision.unfinished_ends, job_ends = set.spec.job_ends,
            "runners held back");
    }

    let noted = Noted {
        expectations: &ctx.runner_expectations,
        set: &decision_key,
    };
    stream::iter(plan.delete.clone())
        .map(|name| {
            let api = runners_api.clone();
            async move { delete(&api, &name, noted).await }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let mut removed = 0;
    if !plan.replace.is_empty() || plan.scale_down > 0 {
        let github = github_for(set, ctx).await;
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let remove_all = |names: Vec<&String>| {
            let runners: Vec<EphemeralRunner> = names.into_iter().map(|n| by_name[n].clone()).collect();
            remove_concurrently(
                runners_api.clone(),
                secrets.clone(),
                runners,
                github.clone(),
                noted,
            )
        };
        remove_all(plan.replace.iter().collect()).await?;
        // Candidates in order, as many at once as are still to go; one GitHub says is busy is
        // kept and the next one is tried.
        let mut candidates = plan.scale_down_candidates.iter();
        while removed < plan.scale_down {
            let batch: Vec<&String> = candidates.by_ref().take(plan.scale_down - removed).collect();
            if batch.is_empty() {
                break;
            }
            removed += remove_all(batch).await?;
        }
    }

    // Runners made for this decision carry the traces of the jobs it was made for, one each.
    let traceparents: Vec<String> = set
        .annotations()
        .get(annotations::TRACEPARENT)
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let created = stream::iter(0..plan.create)
        .map(|i| create(&runners_api, ctx, set, &decision_key, traceparents.get(i)))
        .buffer_unordered(WRITE_CONCURRENCY)
        .filter_map(|r| async move { r.err() })
        .collect::<Vec<_>>()
        .await;
    let all_created = created.is_empty();
    for err in &created {
        warn!(set = %set.name_any(), error = %err, "creating a runner failed");
    }
    let counts = Counts::of(&views);
    if plan.create > 0 || !plan.delete.is_empty() || removed > 0 {
        info!(set = %set.name_any(), replicas = decision.replicas, sequence = decision.sequence,
            pending = counts.pending, idle = counts.idle, busy = counts.busy, deleting = counts.deleting,
            created = plan.create - created.len(), deleted = plan.delete.len(), replaced = plan.replace.len(),
            scaled_down = removed, uncounted_finishes = decision.uncounted_finishes,
            unfinished_ends = decision.unfinished_ends,
            job_ends = set.spec.job_ends, "runners adjusted");
    }

    let config = &set.spec.runner_config;
    let labels =
        ScaleSetLabels::for_config_url(&config.scale_set_name, &namespace, &config.github_config_url);
    ctx.metrics
        .runners(&labels, counts.pending, counts.idle + counts.busy, counts.failed);
    // A decision counts as done only when carried out in full; scale-down that had to spare
    // pending runners within their grace, runners GitHub said are busy, or runners waiting for
    // finishing ones to go, is tried again.
    let satisfied = all_created && removed >= plan.scale_down && plan.waiting_for_finishing == 0;
    let observed_sequence = if satisfied { decision.sequence } else { observed };
    if satisfied {
        let done = CarriedOut {
            sequence: decision.sequence,
            replicas: set.spec.replicas,
        };
        ctx.decisions.carried_out(&decision_key, done);
    }
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let known = set.status.clone().unwrap_or_default();
    let status = EphemeralRunnerSetStatus {
        current_runners: to_i32(counts.current()),
        pending_runners: to_i32(counts.pending),
        idle_runners: to_i32(counts.idle),
        busy_runners: to_i32(counts.busy),
        failed_runners: to_i32(counts.failed),
        deleting_runners: to_i32(counts.deleting),
        quota_blocked_runners: to_i32(quota_blocked(runners.iter().map(AsRef::as_ref))),
        observed_patch_sequence: observed_sequence,
        observed_generation: set.metadata.generation,
        ..known.clone()
    };
    // Every runner change and every decision brings a reconcile; during a burst the status is
    // written at most once a second (see `status_pace`).
    let changed = status != known;
    let status_wait = changed
        .then(|| ctx.set_status_pace.claim(&decision_key, Instant::now()))
        .flatten();
    if changed && status_wait.is_none() {
        let patch = json!({"status": {
            "currentRunners": status.current_runners,
            "pendingRunners": status.pending_runners,
            "idleRunners": status.idle_runners,
            "busyRunners": status.busy_runners,
            "failedRunners": status.failed_runners,
            "deletingRunners": status.deleting_runners,
            "quotaBlockedRunners": status.quota_blocked_runners,
            "observedPatchSequence": status.observed_patch_sequence,
            "observedGeneration": status.observed_generation,
        }});
        let api: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let params = PatchParams {
            field_manager: Some(field_managers::CONTROLLER.into()),
            ..Default::default()
        };
        crate::writes::patch_status_unread(&ctx.client, &api, &set.name_any(), &params, &Patch::Merge(patch))
            .await?;
    }
    if let Some(err) = created.into_iter().next() {
        return Err(err.into());
    }
    let recheck = if !satisfied {
        Some(UNSATISFIED_RECHECK)
    } else if plan.deferred > 0 {
        // Look again once the decision has settled: runners still missing then are created.
        Some(
            DECISION_SETTLE
                .saturating_sub(decision_age)
                .max(Duration::from_secs(1)),
        )
    } else {
        None
    };
    // A finish whose end the listener never reports stops holding a runner back after the
    // pairing window; no watch event says so, so look again then.
    let finishes_expire = (plan.held_for_finishes > 0)
        .then_some(standing.finishes_expire_in)
        .flatten()
        .map(|wait| wait.max(Duration::from_secs(1)));
    // A held-back status write is made by the reconcile after the wait.
    Ok(Some(
        match recheck
            .into_iter()
            .chain(status_wait)
            .chain(finishes_expire)
            .min()
        {
            Some(wait) => Action::requeue(wait),
            None => Action::await_change(),
        },
    ))
}

/// Where a set notes the runners it deletes (see [`crate::runner_expectations`]).
#[derive(Clone, Copy)]
struct Noted<'a> {
    expectations: &'a crate::runner_expectations::RunnerExpectations,
    set: &'a str,
}

/// The set's runners: from `cache`, with the runners the set created or deleted that the cache
/// does not show yet (see [`crate::runner_expectations`]); listed from the API server without a
/// cache, or while the cache is not filled yet or is behind.
async fn read_runners(
    ctx: &Context,
    api: &Api<EphemeralRunner>,
    cache: Option<&Store<EphemeralRunner>>,
    set: &EphemeralRunnerSet,
    key: &str,
) -> Result<Vec<Arc<EphemeralRunner>>, kube::Error> {
    let uid = set.metadata.uid.as_deref().unwrap_or_default();
    let owned = |r: &EphemeralRunner| r.owner_references().iter().any(|o| o.uid == uid);
    let filled = cache.filter(|c| c.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok()));
    if let Some(cache) = filled {
        let cached = cache.state().into_iter().filter(|r| owned(r)).collect();
        let patience = crate::runner_expectations::PATIENCE;
        match ctx
            .runner_expectations
            .apply(key, cached, Instant::now(), patience)
        {
            Some(runners) => return Ok(runners),
            None => {
                debug!(set = %set.name_any(), "the cache of runners is behind the set's own writes; listing them")
            }
        }
    }
    let selector = format!("{}={}", labels::RUNNER_SET, set.name_any());
    let listed: Vec<Arc<EphemeralRunner>> = list_runners(ctx, api, &selector)
        .await?
        .into_iter()
        .filter(|r| owned(r))
        .map(Arc::new)
        .collect();
    ctx.runner_expectations.settle_listed(key, &listed);
    Ok(listed)
}

/// The set's runners as stored, read without their Pod templates and managed fields, which
/// made up most of the time and memory of a reconcile with a thousand runners.
async fn list_runners(
    ctx: &Context,
    api: &Api<EphemeralRunner>,
    selector: &str,
) -> Result<Vec<EphemeralRunner>, kube::Error> {
    let request = kube::core::Request::new(api.resource_url())
        .list(&ListParams::default().labels(selector))
        .map_err(kube::Error::BuildRequest)?;
    let listed: ObjectList<SetRunner> = ctx.client.request(request).await?;
    Ok(listed.items.into_iter().map(EphemeralRunner::from).collect())
}

async fn github_for(set: &EphemeralRunnerSet, ctx: &Context) -> Option<rssc_github::ActionsClient> {
    let reference = &set.spec.runner_config.autoscale_set_ref;
    let namespace = reference
        .namespace_or(set.metadata.namespace.as_deref().unwrap_or_default())
        .to_owned();
    if let Some(client) = ctx.known_github(&namespace, &reference.name) {
        return Some(client);
    }
    let api: Api<AutoscaleSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let asss = api.get_opt(&reference.name).await.ok().flatten()?;
    match ctx.github(&asss).await {
        Ok((client, _)) => Some(client),
        Err(problem) => {
            warn!(detail = %problem.message, "no GitHub client; runners are removed only once GitHub can be asked");
            None
        }
    }
}

/// Removes `runners` as [`remove`] does, several at once; how many were removed.
async fn remove_concurrently(
    api: Api<EphemeralRunner>,
    secrets: Api<Secret>,
    runners: Vec<EphemeralRunner>,
    github: Option<rssc_github::ActionsClient>,
    noted: Noted<'_>,
) -> Result<usize, kube::Error> {
    let removed = stream::iter(runners)
        .map(|runner| {
            let (api, secrets, github) = (api.clone(), secrets.clone(), github.clone());
            async move { remove(&api, &secrets, &runner, github.as_ref(), noted).await }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<Vec<bool>>()
        .await?;
    Ok(removed.into_iter().filter(|r| *r).count())
}

/// Removes an idle or pending runner after GitHub agrees; false if it turned out busy or
/// GitHub could not be asked.
async fn remove(
    api: &Api<EphemeralRunner>,
    secrets: &Api<Secret>,
    runner: &EphemeralRunner,
    github: Option<&rssc_github::ActionsClient>,
    noted: Noted<'_>,
) -> Result<bool, kube::Error> {
    let name = runner.name_any();
    if let Some(runner_id) = registered_id(runner, secrets).await? {
        let Some(github) = github else { return Ok(false) };
        match github.remove_runner(runner_id).await {
            Ok(()) | Err(GitHubError::RunnerNotFound { .. } | GitHubError::NotFound { .. }) => {}
            Err(GitHubError::JobStillRunning { .. }) => {
                info!(runner = %name, "GitHub says the runner has a job; keeping it");
                return Ok(false);
            }
            Err(err) => {
                warn!(runner = %name, error = %err, "cannot deregister the runner; keeping it for now");
                return Ok(false);
            }
        }
        // Deregistered: its finalizer need not ask GitHub again.
        let mark = json!({"metadata": {"annotations": {annotations::DEREGISTERED: "true"}}});
        let client = api.clone().into_client();
        crate::writes::patch_unread(&client, api, &name, &PatchParams::default(), &Patch::Merge(mark))
            .await?;
    }
    delete(api, &name, noted).await?;
    Ok(true)
}

/// Deletes the runner `name` (gone already counts as deleted) and notes it in `noted`.
async fn delete(api: &Api<EphemeralRunner>, name: &str, noted: Noted<'_>) -> Result<(), kube::Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    noted.expectations.deleted(noted.set, name, Instant::now());
    Ok(())
}

/// Creates a runner. A Kubernetes 1.30 API server answers `AlreadyExists` when the name it
/// generated is taken (later ones try other names first); with a thousand runners that
/// happens in a few bursts in a hundred, and left to the next reconcile it held the runner
/// back by a second or more, so the create is sent again for a new name. The runner made is
/// noted in [`crate::fresh_runners`], before the create counts as answered: its first
/// reconcile need not look for its Secret; and in [`crate::runner_expectations`], so that the
/// set counts it before its cache shows it. `key` is the set's
/// [`crate::fresh_runners::set_key`].
async fn create(
    api: &Api<EphemeralRunner>,
    ctx: &Context,
    set: &EphemeralRunnerSet,
    key: &str,
    traceparent: Option<&String>,
) -> Result<(), kube::Error> {
    let runner = new_runner(set, traceparent);
    let _creating = ctx.fresh_runners.creating(key);
    let mut attempts = 1;
    loop {
        match crate::writes::create::<_, SetRunner>(&ctx.client, api, &runner).await {
            Err(kube::Error::Api(e)) if e.reason == "AlreadyExists" && attempts < NAME_ATTEMPTS => {
                attempts += 1;
            }
            Ok(made) => {
                let made = EphemeralRunner::from(made);
                let now = Instant::now();
                if let Some(uid) = made.uid() {
                    ctx.fresh_runners.made(&uid, now);
                }
                ctx.runner_expectations.created(key, made, now);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Names a runner create tries before it gives up for this reconcile.
const NAME_ATTEMPTS: usize = 4;

/// A new runner of `set` (its name generated by the server), joining the trace `traceparent`.
fn new_runner(set: &EphemeralRunnerSet, traceparent: Option<&String>) -> EphemeralRunner {
    let mut runner_annotations = BTreeMap::from([(
        annotations::PATCH_SEQUENCE.to_owned(),
        set.spec.patch_sequence.to_string(),
    )]);
    if let Some(traceparent) = traceparent {
        runner_annotations.insert(annotations::TRACEPARENT.to_owned(), traceparent.clone());
    }
    let template_meta = set.spec.runner_template.metadata.clone().unwrap_or_default();
    let mut runner_labels = template_meta.labels.clone();
    runner_labels.insert(labels::RUNNER_SET.to_owned(), set.name_any());
    EphemeralRunner {
        metadata: ObjectMeta {
            generate_name: Some(names::ephemeral_runner_prefix(&set.name_any())),
            namespace: set.namespace(),
            labels: Some(runner_labels),
            annotations: Some(runner_annotations),
            owner_references: set.controller_owner_ref(&()).map(|o| vec![o]),
            // Born with its finalizer: the runner reconciler registers it on its first look
            // instead of spending a write and a watch round trip adding it.
            finalizers: Some(vec![finalizers::RUNNER_REGISTRATION.to_owned()]),
            ..Default::default()
        },
        spec: EphemeralRunnerSpec {
            runner_template: set.spec.runner_template.clone(),
            runner_config: set.spec.runner_config.clone(),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use rssc_api::v1alpha1::{EphemeralRunnerStatus, RunnerJob};

    use super::*;

    fn runner(phase: Option<EphemeralRunnerPhase>, job: bool) -> EphemeralRunner {
        let mut r: EphemeralRunner = serde_json::from_value(json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "EphemeralRunner",
            "metadata": {"name": "r", "labels": {labels::POD_SPEC_HASH: "h"}},
            "spec": {"runnerTemplate": {"spec": {"containers": []}},
                     "runnerConfig": {"autoscaleSetRef": {"name": "a"}, "githubConfigURL": "https://github.com/o",
                                      "scaleSetID": 1, "scaleSetName": "s"}}
        }))
        .unwrap();
        r.status = Some(EphemeralRunnerStatus {
            phase,
            job: job.then(RunnerJob::default),
            ..Default::default()
        });
        r
    }

    #[test]
    fn new_runners_are_born_with_their_finalizer_and_the_decision() {
        let set: EphemeralRunnerSet = serde_json::from_value(json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "EphemeralRunnerSet",
            "metadata": {"name": "ci", "namespace": "ns", "uid": "u1"},
            "spec": {"replicas": 2, "patchSequence": 7,
                     "runnerTemplate": {"metadata": {"labels": {labels::POD_SPEC_HASH: "h"}}, "spec": {"containers": []}},
                     "runnerConfig": {"autoscaleSetRef": {"name": "a"}, "githubConfigURL": "https://github.com/o",
                                      "scaleSetID": 1, "scaleSetName": "s"}}
        }))
        .unwrap();
        let runner = new_runner(&set, Some(&"00-trace-span-01".to_owned()));
        assert_eq!(runner.finalizers(), [finalizers::RUNNER_REGISTRATION]);
        assert_eq!(runner.metadata.generate_name.as_deref(), Some("ci-runner-"));
        assert_eq!(runner.labels()[labels::RUNNER_SET], "ci");
        assert_eq!(runner.labels()[labels::POD_SPEC_HASH], "h");
        assert_eq!(runner.annotations()[annotations::PATCH_SEQUENCE], "7");
        assert_eq!(runner.annotations()[annotations::TRACEPARENT], "00-trace-span-01");
        assert_eq!(runner.owner_references()[0].uid, "u1");
    }

    #[test]
    fn views_follow_phase_and_job() {
        use EphemeralRunnerPhase::*;
        assert_eq!(view(&runner(None, false)).state, RunnerState::Pending);
        assert_eq!(view(&runner(Some(Pending), false)).state, RunnerState::Pending);
        assert_eq!(view(&runner(Some(Running), false)).state, RunnerState::Idle);
        assert_eq!(view(&runner(Some(Running), true)).state, RunnerState::Busy);
        assert_eq!(
            view(&runner(Some(Pending), true)).state,
            RunnerState::Busy,
            "a job marks it busy at once"
        );
        let mut done = runner(Some(Running), true);
        done.status.as_mut().unwrap().job.as_mut().unwrap().result = Some("succeeded".into());
        assert_eq!(view(&done).state, RunnerState::Finishing, "its job ended");
        assert_eq!(view(&runner(Some(Succeeded), true)).state, RunnerState::Finished);
        assert_eq!(view(&runner(Some(Failed), false)).state, RunnerState::Failed);
        assert_eq!(view(&runner(None, false)).template_hash, "h");
    }
}
