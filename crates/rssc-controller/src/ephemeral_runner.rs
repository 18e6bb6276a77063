//! The EphemeralRunner reconciler: registers the runner just in time, keeps its JIT
//! configuration in a Secret only its Pod reads, runs the Pod, and acts on how the Pod ends.
//! On deletion it deregisters the runner first (unless the runner did so itself).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::{Pod, Secret},
    apimachinery::pkg::apis::meta::v1::Time,
    chrono::Utc,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};
use rssc_api::{
    consts::{annotations, conditions as types, field_managers, finalizers, labels, reasons},
    v1alpha1::{
        AutoscaleSet, DeprecatedRunnerVersion, EphemeralRunner, EphemeralRunnerPhase, EphemeralRunnerStatus,
        RunnerFailure,
    },
};
use rssc_github::{ActionsClient, Error as GitHubError};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

use crate::{
    autoscale_set::records_key,
    conditions::{self, Status, Update},
    context::Context,
    decision_clock::Finished,
    metrics::ScaleSetLabels,
    problem::Problem,
    reconcile::{Error, already_exists, finalized, timed},
    runner_outcome::{Failure, Outcome, RunnerFacts, classify},
    runner_pod::{JitConfig, Registration, jit_secret, registration_in, runner_pod},
    runner_template::RUNNER_CONTAINER,
};

/// How soon a runner whose Pod create met a conflict looks at its Pod again.
const CONFLICT_RECHECK: Duration = Duration::from_secs(1);

/// The shortest wait before a runner Pod a ResourceQuota refused is tried again.
const QUOTA_RETRY_MIN: Duration = Duration::from_secs(5);

/// Reconciles one EphemeralRunner; `pods` caches the runner Pods (see
/// [`crate::outcome_pods::OutcomePod`]).
pub async fn reconcile(
    runner: Arc<EphemeralRunner>,
    ctx: Arc<Context>,
    pods: Store<Pod>,
) -> Result<Action, Error> {
    let api: Api<EphemeralRunner> =
        Api::namespaced(ctx.client.clone(), &runner.namespace().unwrap_or_default());
    let ctx = ctx.as_ref();
    let pods = &pods;
    let object = runner.clone();
    let scale_set = &object.spec.runner_config.autoscale_set_ref.name;
    timed(
        ctx,
        "EphemeralRunner",
        object.as_ref(),
        scale_set,
        finalized(
            &api,
            finalizers::RUNNER_REGISTRATION,
            runner,
            |o| async move { apply(&o, ctx, pods).await },
            |o| async move { cleanup(&o, ctx).await },
        ),
    )
    .await
}

/// The GitHub client of the runner's AutoscaleSet.
async fn github(runner: &EphemeralRunner, ctx: &Context) -> Result<ActionsClient, Problem> {
    let reference = &runner.spec.runner_config.autoscale_set_ref;
    let namespace = reference
        .namespace_or(runner.metadata.namespace.as_deref().unwrap_or_default())
        .to_owned();
    if let Some(client) = ctx.known_github(&namespace, &reference.name) {
        return Ok(client);
    }
    let api: Api<AutoscaleSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let asss = api
        .get_opt(&reference.name)
        .await
        .map_err(|e| Problem::kube("reading the AutoscaleSet", &e))?;
    let asss = asss.ok_or_else(|| {
        Problem::transient(
            rssc_api::consts::conditions::READY,
            rssc_api::consts::reasons::AUTOSCALE_SET_NOT_FOUND,
            format!("AutoscaleSet {namespace}/{} not found", reference.name),
        )
    })?;
    Ok(ctx.github(&asss).await?.0)
}

async fn apply(runner: &EphemeralRunner, ctx: &Context, cached_pods: &Store<Pod>) -> Result<Action, Error> {
    let namespace = runner.namespace().unwrap_or_default();
    let name = runner.name_any();
    let status = runner.status.clone().unwrap_or_default();
    if matches!(
        status.phase,
        Some(EphemeralRunnerPhase::Succeeded | EphemeralRunnerPhase::Failed)
    ) {
        // Done; the EphemeralRunnerSet removes it.
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);

    // 1. A JIT configuration, kept in the runner's own Secret. The status records the
    // registration only with `Running` (a status write fewer per runner); until then the Secret
    // is where it is, and a recorded ID means the Secret is there. A runner made or registered
    // by this process in this leadership term needs no look at the Secret (`fresh_runners`).
    let uid = runner.uid().unwrap_or_default();
    let now = Instant::now();
    let registration = match status.runner_id {
        Some(runner_id) => Some(Registration {
            runner_id,
            runner_name: status.runner_name.clone(),
        }),
        None => match ctx.fresh_runners.registration(&uid, now) {
            Some(known) => Some(known),
            None => {
                // Made here and never tried: its Secret cannot exist yet.
                let set = crate::fresh_runners::set_key(
                    &namespace,
                    runner.labels().get(labels::RUNNER_SET).map_or("", String::as_str),
                );
                let made_here = ctx
                    .fresh_runners
                    .take_made_soon(&uid, &set, crate::fresh_runners::CREATE_ANSWER_PATIENCE)
                    .await;
                let secret = if made_here {
                    None
                } else {
                    secrets.get_opt(&name).await?
                };
                match secret {
                    None => {
                        if let Some(action) = register(runner, ctx).await? {
                            return Ok(action);
                        }
                        // Registered just now: no Pod can exist yet (it reads the Secret that
                        // did not), so create it in this same reconcile without looking for one.
                        return create_pod(runner, ctx, &status, &pods).await;
                    }
                    Some(secret) => registration_in(&secret),
                }
            }
        },
    };

    // 2. The Pod, and what it says: as cached, which has seen whatever Pod event brought this
    // reconcile. A Pod not cached yet (the controller just started, or its watch restarted)
    // looks missing or older; so do a Pod deleted and made again, and its cached runner.
    let mut pod: Option<Arc<Pod>> = cached_pods.get(&ObjectRef::new(&name).within(&namespace));
    let mut outcome = classify(
        pod.as_deref(),
        facts(&status),
        Utc::now(),
        ctx.settings.pending_timeout,
    );
    // Creating, retrying and replacing a Pod count failures, and the cached runner can lag
    // behind our own last write (a busy watch): decide those, and failing the runner for its
    // version, on the runner and the Pod as stored. Otherwise a crash-looping Pod is retried
    // forever with its failures overwritten, a Pod not cached yet is taken for vanished, and a
    // sidecar's exit is taken for a failed init container (the cache keeps no spec).
    let fresh;
    let (runner, status) = if matches!(
        outcome,
        Outcome::CreatePod | Outcome::RetryPod(_) | Outcome::Replace(_) | Outcome::VersionDeprecated
    ) {
        let api: Api<EphemeralRunner> = Api::namespaced(ctx.client.clone(), &namespace);
        let Some(stored) = api.get_opt(&name).await? else {
            return Ok(Action::await_change());
        };
        fresh = stored;
        pod = pods.get_opt(&name).await?.map(Arc::new);
        let status = fresh.status.clone().unwrap_or_default();
        outcome = classify(
            pod.as_deref(),
            facts(&status),
            Utc::now(),
            ctx.settings.pending_timeout,
        );
        (&fresh, status)
    } else {
        (runner, status)
    };
    if let (Outcome::RetryPod(failure), Some(id)) = (&outcome, registration.as_ref().map(|r| r.runner_id))
        && registration_gone(runner, ctx, id).await
    {
        // Its JIT configuration can never connect again (GitHub removed the runner, e.g. for
        // scale-down just before its Pod failed): a new runner, not another Pod, is what helps.
        outcome = Outcome::Replace(Failure {
            reason: reasons::RUNNER_DEREGISTERED.to_owned(),
            exit_code: failure.exit_code,
            deregister: false,
        });
    }
    match outcome {
        Outcome::CreatePod => create_pod(runner, ctx, &status, &pods).await,
        Outcome::WaitBeforeRetry(wait) => Ok(Action::requeue(wait)),
        Outcome::Pending => Ok(Action::requeue(ctx.settings.pending_timeout)),
        Outcome::Running { .. } => {
            if status.phase != Some(EphemeralRunnerPhase::Running) {
                info!("runner pod running");
                let mut fields = json!({"phase": "Running", "reason": null, "message": null});
                if let (None, Some(registration)) = (status.runner_id, &registration) {
                    fields["runnerId"] = json!(registration.runner_id);
                    fields["runnerName"] = json!(registration.runner_name);
                }
                admitted(runner, &status, &mut fields);
                patch_status(runner, ctx, fields).await?;
                if let Some(created) = &runner.metadata.creation_timestamp {
                    let took = (Utc::now() - created.0).to_std().unwrap_or_default();
                    ctx.metrics.runner_started(&scale_set_labels(runner), took);
                }
            }
            Ok(Action::await_change())
        }
        Outcome::Succeeded => {
            runner_version_works(runner, ctx).await?;
            remove_finished(runner, ctx, pod.as_deref()).await?;
            Ok(Action::await_change())
        }
        Outcome::VersionDeprecated => {
            let message = "GitHub no longer accepts this runner version: update runnerImage";
            event(
                runner,
                ctx,
                EventType::Warning,
                reasons::RUNNER_VERSION_DEPRECATED,
                message,
            )
            .await;
            let image = pod
                .as_ref()
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.containers.iter().find(|c| c.name == RUNNER_CONTAINER))
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            runner_version_deprecated(runner, ctx, &image).await?;
            fail(runner, ctx, reasons::RUNNER_VERSION_DEPRECATED, message).await?;
            Ok(Action::await_change())
        }
        Outcome::RetryPod(failure) => {
            let pod = pod.expect("a failed pod exists");
            let wait = crate::runner_outcome::retry_backoff(status.failures.len() + 1);
            warn!(
                reason = %failure.reason,
                exit_code = failure.exit_code,
                failures = status.failures.len() + 1,
                retry_in_seconds = wait.as_secs(),
                "runner pod failed before taking a job; retrying"
            );
            record_failure(runner, ctx, &pod, &failure).await?;
            pods.delete(&name, &DeleteParams::default())
                .await
                .map(drop)
                .or_else(ignore_not_found)?;
            Ok(Action::requeue(wait))
        }
        Outcome::Replace(failure) => {
            if let Some(pod) = &pod {
                record_failure(runner, ctx, pod, &failure).await?;
            }
            let message = format!("runner replaced: {}", failure.reason);
            event(runner, ctx, EventType::Warning, &failure.reason, &message).await;
            fail(runner, ctx, &failure.reason, &message).await?;
            Ok(Action::await_change())
        }
    }
}

/// Creates the runner's Pod; a Pod already there is left alone.
async fn create_pod(
    runner: &EphemeralRunner,
    ctx: &Context,
    status: &EphemeralRunnerStatus,
    pods: &Api<Pod>,
) -> Result<Action, Error> {
    let name = runner.name_any();
    let pod =
        runner_pod(runner, &ctx.settings.user_agent).expect("runners read from the API have a name and UID");
    match crate::writes::create_unread(&ctx.client, pods, &pod)
        .instrument(info_span!("pod.create"))
        .await
    {
        Ok(_) => {
            info!(runner = %name, "runner pod created");
            if status.reason.as_deref() == Some(reasons::EXCEEDED_QUOTA) {
                let mut fields = json!({"reason": null, "message": null});
                admitted(runner, status, &mut fields);
                patch_status(runner, ctx, fields).await?;
            }
        }
        // There already: its events bring the next reconcile.
        Err(e) if already_exists(&e) => {}
        // Any other conflict made no Pod, and no Pod event will come: look again shortly.
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(CONFLICT_RECHECK)),
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("exceeded quota") => {
            return quota_exceeded(runner, ctx, status, &e.message).await;
        }
        Err(kube::Error::Api(e)) if e.code == 422 => {
            // The template is invalid; no retry can fix it.
            fail(runner, ctx, "InvalidPod", &e.message).await?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    }
    // The new Pod's own creation triggers no reconcile (see `controllers::pod_triggers`): this
    // is what looks at it again should it never start.
    Ok(Action::requeue(ctx.settings.pending_timeout))
}

/// Whether GitHub says the runner `id` no longer exists; any other answer (or none) keeps the
/// usual retry.
async fn registration_gone(runner: &EphemeralRunner, ctx: &Context, id: i64) -> bool {
    let Ok(client) = github(runner, ctx).await else {
        return false;
    };
    matches!(
        client.get_runner(id).await,
        Err(GitHubError::RunnerNotFound { .. })
    )
}

/// What classifying the runner's Pod needs from the runner's status.
fn facts(status: &EphemeralRunnerStatus) -> RunnerFacts {
    RunnerFacts {
        registered: true,
        has_job: status.job.is_some(),
        was_running: status.phase == Some(EphemeralRunnerPhase::Running),
        failures: status.failures.len(),
        last_failure: status.failures.last().map(|f| f.time.0),
    }
}

/// Adds `PodAdmitted=True` to a status patch if an earlier quota refusal is on record (runners
/// that were never refused carry no such condition, which saves a write per runner).
fn admitted(runner: &EphemeralRunner, status: &EphemeralRunnerStatus, fields: &mut Value) {
    let mut conditions = status.conditions.clone();
    let refused = conditions::find(&conditions, types::POD_ADMITTED).is_some_and(|c| c.status != "True");
    if refused {
        conditions::set(
            &mut conditions,
            Update {
                type_: types::POD_ADMITTED,
                status: Status::True,
                reason: reasons::READY,
                message: "the runner Pod was admitted".into(),
            },
            runner.metadata.generation,
            &Time(Utc::now()),
        );
        fields["conditions"] = json!(conditions);
    }
}

/// A ResourceQuota refused the runner's Pod: say so in a condition (and once in an Event),
/// then retry with backoff; quota frees up as other Pods end.
async fn quota_exceeded(
    runner: &EphemeralRunner,
    ctx: &Context,
    status: &EphemeralRunnerStatus,
    message: &str,
) -> Result<Action, Error> {
    warn!(detail = %message, "ResourceQuota is full; retrying");
    let first = status.reason.as_deref() != Some(reasons::EXCEEDED_QUOTA);
    let mut conditions = status.conditions.clone();
    conditions::set(
        &mut conditions,
        Update {
            type_: types::POD_ADMITTED,
            status: Status::False,
            reason: reasons::EXCEEDED_QUOTA,
            message: message.to_owned(),
        },
        runner.metadata.generation,
        &Time(Utc::now()),
    );
    patch_status(
        runner,
        ctx,
        json!({"reason": reasons::EXCEEDED_QUOTA, "message": message, "conditions": conditions}),
    )
    .await?;
    if first {
        event(runner, ctx, EventType::Warning, reasons::EXCEEDED_QUOTA, message).await;
    }
    let key = format!(
        "EphemeralRunner/{}/{}",
        runner.namespace().unwrap_or_default(),
        runner.name_any()
    );
    Ok(Action::requeue(ctx.backoff(&key).max(QUOTA_RETRY_MIN)))
}

/// The AutoscaleSet a runner belongs to: its API, name and key in `ctx.version_records`.
fn autoscale_set_api(runner: &EphemeralRunner, ctx: &Context) -> (Api<AutoscaleSet>, String, String) {
    let reference = &runner.spec.runner_config.autoscale_set_ref;
    let namespace = reference.namespace_or(runner.metadata.namespace.as_deref().unwrap_or_default());
    (
        Api::namespaced(ctx.client.clone(), namespace),
        reference.name.clone(),
        records_key(namespace, &reference.name),
    )
}

/// Records on the AutoscaleSet that a runner exited with code 7, so its owner sees it in the
/// scale set's conditions (the AutoscaleSet reconciler turns this into `RunnerVersionSupported`).
async fn runner_version_deprecated(
    runner: &EphemeralRunner,
    ctx: &Context,
    image: &str,
) -> Result<(), Error> {
    let (api, name, asss_key) = autoscale_set_api(runner, ctx);
    let record = DeprecatedRunnerVersion {
        image: image.to_owned(),
        runner: runner.name_any(),
        time: Time(Utc::now()),
    };
    let patch = json!({"status": {"deprecatedRunnerVersion": record}});
    match api
        .patch_status(&name, &controller_params(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {
            ctx.version_records.seen(&asss_key, true);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A runner completed its job: if the AutoscaleSet says runners exit as deprecated, that is
/// no longer so. Only AutoscaleSets that may hold such a record are read
/// ([`crate::version_records`]).
async fn runner_version_works(runner: &EphemeralRunner, ctx: &Context) -> Result<(), Error> {
    let (api, name, asss_key) = autoscale_set_api(runner, ctx);
    if !ctx.version_records.may_hold(&asss_key) {
        return Ok(());
    }
    let recorded = api
        .get_opt(&name)
        .await?
        .and_then(|a| a.status)
        .and_then(|s| s.deprecated_runner_version);
    if recorded.is_some() {
        let patch = json!({"status": {"deprecatedRunnerVersion": null}});
        api.patch_status(&name, &controller_params(), &Patch::Merge(patch))
            .await?;
    }
    ctx.version_records.seen(&asss_key, false);
    Ok(())
}

fn controller_params() -> PatchParams {
    PatchParams {
        field_manager: Some(field_managers::CONTROLLER.into()),
        ..Default::default()
    }
}

/// Gets a JIT configuration for the runner and stores it in the runner's Secret;
/// `Some` ends the reconcile there (a problem to retry), `None` goes on to the Pod.
async fn register(runner: &EphemeralRunner, ctx: &Context) -> Result<Option<Action>, Error> {
    let name = runner.name_any();
    let config = &runner.spec.runner_config;
    let client = match github(runner, ctx).await {
        Ok(client) => client,
        Err(problem) => return problem_status(runner, ctx, &problem).await.map(Some),
    };
    let work_folder = config.work_folder.as_deref().unwrap_or("_work");
    let jit = match client
        .generate_jit_config(config.scale_set_id, &name, work_folder)
        .instrument(info_span!("github.generate_jit_config"))
        .await
    {
        Ok(jit) => jit,
        Err(GitHubError::RunnerExists { .. }) => {
            // A previous attempt registered it but its Secret was lost: remove that registration
            // if it is ours, then try again.
            match client.get_runner_by_name(&name).await {
                Ok(Some(existing)) if existing.runner_scale_set_id == config.scale_set_id => {
                    if let Err(err) = client.remove_runner(existing.id).await {
                        warn!(runner = %name, error = %err, "cannot remove the runner's earlier registration; trying again");
                    }
                    return Ok(Some(Action::requeue(Duration::from_secs(1))));
                }
                Ok(Some(_)) => {
                    let message = format!("a runner named {name} belongs to another scale set");
                    fail(runner, ctx, "RunnerNameTaken", &message).await?;
                    return Ok(Some(Action::await_change()));
                }
                Ok(None) => return Ok(Some(Action::requeue(Duration::from_secs(1)))),
                Err(e) => {
                    return problem_status(runner, ctx, &Problem::github("looking up the runner", &e))
                        .await
                        .map(Some);
                }
            }
        }
        Err(e) => {
            return problem_status(
                runner,
                ctx,
                &Problem::github("generating the JIT configuration", &e),
            )
            .await
            .map(Some);
        }
    };
    let secret = jit_secret(
        runner,
        &JitConfig {
            encoded: jit.encoded_jit_config.expose().clone(),
            runner_id: jit.runner.id,
            runner_name: jit.runner.name.clone(),
            scale_set_id: config.scale_set_id,
        },
    )
    .expect("runners read from the API have a name and UID");
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &runner.namespace().unwrap_or_default());
    match crate::writes::create_unread(&ctx.client, &secrets, &secret)
        .instrument(info_span!("secret.create"))
        .await
    {
        Ok(_) => {
            if let Some(uid) = runner.uid() {
                let registration = Registration {
                    runner_id: jit.runner.id,
                    runner_name: Some(jit.runner.name.clone()),
                };
                ctx.fresh_runners.registered(&uid, registration, Instant::now());
            }
        }
        // A 409 Conflict made no Secret: recording the registration now would leave the Pod
        // nothing to read, and nothing looks for the Secret once the runner ID is recorded.
        Err(e) if already_exists(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(None)
}

async fn problem_status(runner: &EphemeralRunner, ctx: &Context, problem: &Problem) -> Result<Action, Error> {
    warn!(reason = problem.reason, detail = %problem.message, "runner not registered");
    patch_status(
        runner,
        ctx,
        json!({"reason": problem.reason, "message": problem.message}),
    )
    .await?;
    let key = format!(
        "EphemeralRunner/{}/{}",
        runner.namespace().unwrap_or_default(),
        runner.name_any()
    );
    Ok(Action::requeue(
        problem.retry_after.unwrap_or_else(|| ctx.backoff(&key)),
    ))
}

async fn record_failure(
    runner: &EphemeralRunner,
    ctx: &Context,
    pod: &Pod,
    failure: &Failure,
) -> Result<(), Error> {
    let mut failures = runner.status.clone().unwrap_or_default().failures;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if failures.iter().any(|f| f.pod_uid == uid) {
        return Ok(());
    }
    failures.push(RunnerFailure {
        pod_uid: uid,
        time: Time(Utc::now()),
        reason: Some(failure.reason.clone()),
        exit_code: failure.exit_code,
    });
    // The list is written whole, so it must extend the list as stored: the resourceVersion makes
    // a write from a stale read fail (409) and the reconcile retry with the current one, instead
    // of dropping earlier failures and retrying a broken Pod past the limit.
    let api: Api<EphemeralRunner> =
        Api::namespaced(ctx.client.clone(), &runner.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {"resourceVersion": runner.metadata.resource_version},
        "status": {"failures": failures, "phase": "Pending", "reason": failure.reason},
    });
    crate::writes::patch_status_unread(
        &ctx.client,
        &api,
        &runner.name_any(),
        &controller_params(),
        &Patch::Merge(patch),
    )
    .await?;
    ctx.metrics.pod_failed(&scale_set_labels(runner), &failure.reason);
    Ok(())
}

async fn fail(runner: &EphemeralRunner, ctx: &Context, reason: &str, message: &str) -> Result<(), Error> {
    patch_status(
        runner,
        ctx,
        json!({"phase": "Failed", "reason": reason, "message": message}),
    )
    .await?;
    ctx.metrics.runner_failed(&scale_set_labels(runner), reason);
    Ok(())
}

/// The metric labels of the runner's scale set.
fn scale_set_labels(runner: &EphemeralRunner) -> ScaleSetLabels {
    let config = &runner.spec.runner_config;
    ScaleSetLabels::for_config_url(
        &config.scale_set_name,
        runner.metadata.namespace.as_deref().unwrap_or_default(),
        &config.github_config_url,
    )
}

/// Records how long after its job finished a runner is removed (runners without a finished
/// job, e.g. idle runners scaled down, are not measured). A runner removed as soon as it exited
/// can be gone before the listener records its job's end: its exit, which follows the job's
/// end, stands in for it then.
fn record_removal(runner: &EphemeralRunner, ctx: &Context, exited: Option<&Time>) {
    if let Some(uid) = runner.uid() {
        ctx.fresh_runners.forget(&uid);
    }
    let finished = runner
        .status
        .as_ref()
        .and_then(|s| s.job.as_ref())
        .and_then(|j| j.finished_at.as_ref())
        .or(exited);
    if let Some(finished) = finished {
        let took = (Utc::now() - finished.0).to_std().unwrap_or_default();
        ctx.metrics.runner_removed(&scale_set_labels(runner), took);
    }
}

/// Merge-patches only the status fields the controller owns (the listener owns `job`).
async fn patch_status(runner: &EphemeralRunner, ctx: &Context, fields: Value) -> Result<(), Error> {
    let api: Api<EphemeralRunner> =
        Api::namespaced(ctx.client.clone(), &runner.namespace().unwrap_or_default());
    crate::writes::patch_status_unread(
        &ctx.client,
        &api,
        &runner.name_any(),
        &controller_params(),
        &Patch::Merge(json!({ "status": fields })),
    )
    .await?;
    Ok(())
}

async fn event(runner: &EphemeralRunner, ctx: &Context, type_: EventType, reason: &str, note: &str) {
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &runner.object_ref(&())).await {
        warn!(error = %err, "cannot emit an Event");
    }
}

fn ignore_not_found(err: kube::Error) -> Result<(), kube::Error> {
    match err {
        kube::Error::Api(e) if e.code == 404 => Ok(()),
        other => Err(other),
    }
}

/// Removes a runner that finished its job and deregistered itself. Nothing is left to wait
/// for, so rather than recording `Succeeded` for the EphemeralRunnerSet to delete it and then
/// removing the finalizer in another reconcile, this deletes it and drops the finalizer at once:
/// one write and two watch round trips fewer per job. Its Pod and Secret go with it.
async fn remove_finished(runner: &EphemeralRunner, ctx: &Context, pod: Option<&Pod>) -> Result<(), Error> {
    let name = runner.name_any();
    let namespace = runner.namespace().unwrap_or_default();
    let api: Api<EphemeralRunner> = Api::namespaced(ctx.client.clone(), &namespace);
    let set = runner.labels().get(labels::RUNNER_SET);
    let set_key = set.map(|set| format!("{namespace}/{set}"));
    // The set's decisions count the job until the listener counts its end (see
    // `decision_clock`). Noted before the deletion: the set's reconcile that the deletion's
    // watch event starts must not find the runner gone and its finish not yet noted, or it
    // makes a runner too many.
    let finished = Finished {
        name: &name,
        scale_set_id: runner.spec.runner_config.scale_set_id,
    };
    if let Some(key) = &set_key {
        ctx.decisions.runner_finished(key, finished, Instant::now());
    }
    // This reconcile finishes the runner off; its deletion's event needs no reconcile of its own.
    let uid = runner.uid().unwrap_or_default();
    ctx.self_removed.note(&uid, Instant::now());
    let deleted =
        crate::writes::delete_reading_finalizers(&ctx.client, &api, &name, &DeleteParams::background()).await;
    let held_by = match deleted {
        // Still there, held by its finalizers.
        Ok(Some(finalizers)) => finalizers,
        // Gone at once.
        Ok(None) => return Ok(()),
        // Gone already, its job finished all the same.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => {
            if let Some(key) = &set_key {
                ctx.decisions.runner_finish_undone(key, finished, Instant::now());
            }
            ctx.self_removed.forget(&uid);
            return Err(e.into());
        }
    };
    info!(runner = %name, "runner finished; removing it");
    let exited = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == RUNNER_CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref());
    record_removal(runner, ctx, exited);
    // Other finalizers stay: the patch holds only while the finalizers are those read, so one
    // added meanwhile is never dropped, and a status write meanwhile (the listener recording
    // the job's end, which often lands between the deletion and this patch) does not fail it.
    let mut current = held_by;
    for _ in 0..FINALIZER_ATTEMPTS {
        let kept: Vec<&String> = current
            .iter()
            .filter(|f| f.as_str() != finalizers::RUNNER_REGISTRATION)
            .collect();
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "replace", "path": "/metadata/finalizers", "value": kept},
        ]))
        .expect("a JSON patch of two operations");
        let patch = Patch::Json::<()>(patch);
        match crate::writes::patch_unread(&ctx.client, &api, &name, &PatchParams::default(), &patch).await {
            Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => return Ok(()),
            // The finalizers changed meanwhile (the test failed: 422), or a conflict: read again.
            Err(kube::Error::Api(kube::core::ErrorResponse { code: 409 | 422, .. })) => {
                match api.get_opt(&name).await? {
                    Some(stored) if stored.uid() == runner.uid() => current = stored.finalizers().to_vec(),
                    _ => return Ok(()),
                }
            }
            Err(e) => {
                ctx.self_removed.forget(&uid);
                return Err(e.into());
            }
        }
    }
    // Still conflicting: its deletion's own reconcile removes the finalizer.
    ctx.self_removed.forget(&uid);
    Err(Error::Waiting(
        "the runner keeps changing; its finalizer is removed on the next look".into(),
    ))
}

/// How many times a finished runner's finalizer removal is tried against concurrent changes.
const FINALIZER_ATTEMPTS: usize = 3;

/// The runner's ID on GitHub: recorded in its status once it ran, in its Secret before that;
/// `None` if it never registered.
pub async fn registered_id(
    runner: &EphemeralRunner,
    secrets: &Api<Secret>,
) -> Result<Option<i64>, kube::Error> {
    if let Some(id) = runner.status.as_ref().and_then(|s| s.runner_id) {
        return Ok(Some(id));
    }
    let secret = secrets.get_opt(&runner.name_any()).await?;
    Ok(secret.as_ref().and_then(registration_in).map(|r| r.runner_id))
}

/// Whether the runner's Pod says the runner exited 0, which it does only after deregistering.
async fn exited_cleanly(runner: &EphemeralRunner, ctx: &Context) -> Result<bool, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &runner.namespace().unwrap_or_default());
    let pod = pods.get_opt(&runner.name_any()).await?;
    let status = runner.status.clone().unwrap_or_default();
    let outcome = classify(
        pod.as_ref(),
        facts(&status),
        Utc::now(),
        ctx.settings.pending_timeout,
    );
    // Without a Pod the outcome is never `Succeeded`.
    Ok(outcome == Outcome::Succeeded)
}

/// Deletion: deregister the runner unless it did so itself; a runner with a job is waited for
/// (an error keeps the finalizer, and the error policy retries).
async fn cleanup(runner: &EphemeralRunner, ctx: &Context) -> Result<Action, Error> {
    let status = runner.status.clone().unwrap_or_default();
    let deregistered = runner
        .annotations()
        .get(annotations::DEREGISTERED)
        .is_some_and(|v| v == "true");
    if status.phase == Some(EphemeralRunnerPhase::Succeeded) || deregistered {
        // It exited 0 after its job and removed itself from GitHub, or scale-down already
        // removed it; asking again is waste.
        record_removal(runner, ctx, None);
        return Ok(Action::await_change());
    }
    // The cached runner can lag: one that finished is already gone, with its finalizer, by the
    // time a reconcile of its deletion runs; asking GitHub about it would be waste.
    let api: Api<EphemeralRunner> =
        Api::namespaced(ctx.client.clone(), &runner.namespace().unwrap_or_default());
    let holds_finalizer = api.get_opt(&runner.name_any()).await?.is_some_and(|stored| {
        stored
            .finalizers()
            .iter()
            .any(|f| f == finalizers::RUNNER_REGISTRATION)
    });
    if !holds_finalizer {
        // Deleted by `remove_finished`, which recorded it and dropped the finalizer.
        return Err(Error::AlreadyFinalized);
    }
    if exited_cleanly(runner, ctx).await? {
        // It exited 0, so it deregistered itself; usually `remove_finished` deleted it and
        // recorded it, and only its finalizer was left (that patch met a conflict).
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &runner.namespace().unwrap_or_default());
    let Some(runner_id) = registered_id(runner, &secrets).await? else {
        // Never registered: nothing to remove from GitHub.
        record_removal(runner, ctx, None);
        return Ok(Action::await_change());
    };
    let client = github(runner, ctx)
        .await
        .map_err(|problem| Error::Waiting(problem.message))?;
    match client.remove_runner(runner_id).await {
        Ok(()) | Err(GitHubError::RunnerNotFound { .. } | GitHubError::NotFound { .. }) => {
            record_removal(runner, ctx, None);
            Ok(Action::await_change())
        }
        Err(GitHubError::JobStillRunning { .. }) => {
            info!(runner = %runner.name_any(), "the runner still has a job; waiting for it to finish");
            Err(Error::Waiting("the runner still has a job".into()))
        }
        Err(e) => Err(Error::Waiting(e.to_string())),
    }
}
