//! The AutoscaleSet reconciler: registers the scale set with GitHub and keeps it registered,
//! named, grouped and labelled as the spec says; on deletion, waits for the scale set's runners
//! to finish, then removes the scale set from GitHub.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
    },
};
use rssc_api::{
    consts::{conditions as types, field_managers, finalizers, labels, reasons},
    v1alpha1::{
        AutoscaleSet, AutoscaleSetPhase, AutoscaleSetStatus, EphemeralRunner, LabelType, ScaleSetLabel,
    },
};
use rssc_github::{
    ActionsClient, Error as GitHubError, Label, NewScaleSet, RunnerScaleSet, ScaleSetUpdate, wire_labels,
};
use tracing::{info, warn};

use crate::{
    conditions::{self, Status, Update},
    context::Context,
    problem::Problem,
    reconcile::{Error, finalized, timed},
};

/// ID of the runner group every GitHub organization and enterprise has.
const DEFAULT_RUNNER_GROUP_ID: i64 = 1;

/// Reconciles one AutoscaleSet.
pub async fn reconcile(asss: Arc<AutoscaleSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<AutoscaleSet> = Api::namespaced(ctx.client.clone(), &asss.namespace().unwrap_or_default());
    let ctx = ctx.as_ref();
    let object = asss.clone();
    let scale_set = &object.name_any();
    timed(
        ctx,
        "AutoscaleSet",
        object.as_ref(),
        scale_set,
        finalized(
            &api,
            finalizers::AUTOSCALE_SET,
            asss,
            |o| async move { apply(&o, ctx).await },
            |o| async move { cleanup(&o, ctx).await },
        ),
    )
    .await
}

/// How [`crate::version_records::VersionRecords`] names the AutoscaleSet `name` in `namespace`.
pub fn records_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn key(asss: &AutoscaleSet) -> String {
    format!(
        "AutoscaleSet/{}/{}",
        asss.namespace().unwrap_or_default(),
        asss.name_any()
    )
}

async fn apply(asss: &AutoscaleSet, ctx: &Context) -> Result<Action, Error> {
    let mut status = asss.status.clone().unwrap_or_default();
    ctx.version_records.seen(
        &records_key(asss.namespace().as_deref().unwrap_or_default(), &asss.name_any()),
        status.deprecated_runner_version.is_some(),
    );
    let outcome = register(asss, ctx, &mut status).await;
    let now = Time(k8s_openapi::chrono::Utc::now());
    let generation = asss.metadata.generation;
    let action = match &outcome {
        Ok(registered) => {
            ctx.reset_backoff(&key(asss));
            status.phase = Some(AutoscaleSetPhase::Active);
            for (type_, message) in [
                (
                    types::CREDENTIALS_VALID,
                    "GitHub accepted the credentials".to_owned(),
                ),
                (types::SCALE_SET_REGISTERED, registered.clone()),
            ] {
                conditions::set(
                    &mut status.conditions,
                    Update {
                        type_,
                        status: Status::True,
                        reason: reasons::READY,
                        message,
                    },
                    generation,
                    &now,
                );
            }
            conditions::set(
                &mut status.conditions,
                Update {
                    type_: types::READY,
                    status: Status::True,
                    reason: reasons::READY,
                    message: format!(
                        "scale set {} is registered",
                        status.scale_set_id.unwrap_or_default()
                    ),
                },
                generation,
                &now,
            );
            Action::requeue(ctx.settings.recheck)
        }
        Err(problem) => {
            status.phase = Some(if status.scale_set_id.is_some() {
                AutoscaleSetPhase::Active
            } else {
                AutoscaleSetPhase::Pending
            });
            if !problem.transient {
                status.phase = Some(AutoscaleSetPhase::Error);
            }
            report(asss, ctx, &mut status, problem, &now).await;
            Action::requeue(problem.retry_after.unwrap_or_else(|| ctx.backoff(&key(asss))))
        }
    };
    if runner_version_condition(&mut status, generation, &now) {
        let message = conditions::find(&status.conditions, types::RUNNER_VERSION_SUPPORTED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        event(
            asss,
            ctx,
            EventType::Warning,
            reasons::RUNNER_VERSION_DEPRECATED,
            &message,
        )
        .await;
    }
    status.observed_generation = generation;
    write_status(asss, ctx, status).await?;
    Ok(action)
}

/// Sets `RunnerVersionSupported` from what the runners reported; true when it just turned False.
fn runner_version_condition(status: &mut AutoscaleSetStatus, generation: Option<i64>, now: &Time) -> bool {
    let was_false = conditions::find(&status.conditions, types::RUNNER_VERSION_SUPPORTED)
        .is_some_and(|c| c.status == "False");
    let update = match &status.deprecated_runner_version {
        Some(record) => Update {
            type_: types::RUNNER_VERSION_SUPPORTED,
            status: Status::False,
            reason: reasons::RUNNER_VERSION_DEPRECATED,
            message: format!(
                "runner {} (image {}) exited with code 7 at {}: GitHub no longer accepts its runner version; use a current runner image",
                record.runner,
                record.image,
                record.time.0.to_rfc3339()
            ),
        },
        // Said only once there was something to say.
        None if conditions::find(&status.conditions, types::RUNNER_VERSION_SUPPORTED).is_none() => {
            return false;
        }
        None => Update {
            type_: types::RUNNER_VERSION_SUPPORTED,
            status: Status::True,
            reason: reasons::RUNNER_SUCCEEDED,
            message: "a runner completed a job since the last deprecated-version exit".into(),
        },
    };
    conditions::set(&mut status.conditions, update, generation, now);
    !was_false && status.deprecated_runner_version.is_some()
}

/// Sets the problem's condition and `Ready` to False, and emits a Warning when the reason is new.
async fn report(
    asss: &AutoscaleSet,
    ctx: &Context,
    status: &mut AutoscaleSetStatus,
    problem: &Problem,
    now: &Time,
) {
    let generation = asss.metadata.generation;
    let was = conditions::find(&status.conditions, types::READY).map(|c| c.reason.clone());
    if problem.condition != types::READY {
        conditions::set(
            &mut status.conditions,
            Update {
                type_: problem.condition,
                status: Status::False,
                reason: problem.reason,
                message: problem.message.clone(),
            },
            generation,
            now,
        );
    }
    conditions::set(
        &mut status.conditions,
        Update {
            type_: types::READY,
            status: Status::False,
            reason: problem.reason,
            message: problem.message.clone(),
        },
        generation,
        now,
    );
    warn!(reason = problem.reason, detail = %problem.message, "AutoscaleSet not ready");
    if was.as_deref() != Some(problem.reason) {
        event(asss, ctx, EventType::Warning, problem.reason, &problem.message).await;
    }
}

/// Emits an Event about `asss`; failures are logged, never fatal.
async fn event(asss: &AutoscaleSet, ctx: &Context, type_: EventType, reason: &str, note: &str) {
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &asss.object_ref(&())).await {
        warn!(error = %err, "cannot emit an Event");
    }
}

async fn write_status(
    asss: &AutoscaleSet,
    ctx: &Context,
    status: AutoscaleSetStatus,
) -> Result<(), kube::Error> {
    if asss.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<AutoscaleSet> = Api::namespaced(ctx.client.clone(), &asss.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(field_managers::CONTROLLER.into()),
        ..Default::default()
    };
    api.patch_status(&asss.name_any(), &params, &Patch::Merge(status_patch(&status)))
        .await?;
    Ok(())
}

/// The merge patch that writes `status`, all but `deprecatedRunnerVersion`: the EphemeralRunner
/// reconciler records and clears that, and writing back a cached copy here undid a clear made
/// meanwhile, leaving `RunnerVersionSupported=False` after a runner had succeeded.
fn status_patch(status: &AutoscaleSetStatus) -> serde_json::Value {
    let mut fields = serde_json::to_value(status).expect("a status serializes");
    if let Some(fields) = fields.as_object_mut() {
        fields.remove("deprecatedRunnerVersion");
    }
    serde_json::json!({ "status": fields })
}

/// Makes sure the scale set exists on GitHub as the spec says; returns a summary.
async fn register(
    asss: &AutoscaleSet,
    ctx: &Context,
    status: &mut AutoscaleSetStatus,
) -> Result<String, Problem> {
    let (client, _) = ctx.github(asss).await?;
    let spec = &asss.spec;
    let group_id = runner_group_id(&client, &spec.runner_group).await?;
    status.runner_group_id = Some(group_id);
    let desired_labels = wire_labels(
        &spec.scale_set_name,
        &spec.labels.iter().map(to_wire).collect::<Vec<_>>(),
    );

    let existing = match status.scale_set_id {
        Some(id) => match client.get_scale_set(id).await {
            Ok(set) => Some(set),
            Err(GitHubError::NotFound { .. }) => {
                let note = format!(
                    "scale set {id} no longer exists on GitHub (deleted by hand, or after 7 days without a listener); registering it again"
                );
                info!(autoscaleset = %asss.name_any(), %note);
                event(asss, ctx, EventType::Warning, "ScaleSetRecreated", &note).await;
                None
            }
            Err(e) => return Err(Problem::github("reading the scale set", &e)),
        },
        None => None,
    };
    let existing = match existing {
        Some(set) => Some(set),
        None => client
            .get_scale_set_by_name(group_id, &spec.scale_set_name)
            .await
            .map_err(|e| Problem::github("looking up the scale set", &e))?,
    };
    let set = match existing {
        Some(set) => set,
        None => {
            let labels = desired_labels.iter().skip(1).cloned().collect();
            let created = client
                .create_scale_set(&NewScaleSet {
                    name: spec.scale_set_name.clone(),
                    runner_group_id: group_id,
                    labels,
                    disable_update: true,
                })
                .await
                .map_err(|e| Problem::github("creating the scale set", &e))?;
            let note = format!("registered scale set {} as {:?}", created.id, created.name);
            event(asss, ctx, EventType::Normal, "ScaleSetCreated", &note).await;
            created
        }
    };
    let set = sync(asss, &client, set, group_id, &desired_labels).await?;
    status.scale_set_id = Some(set.id);
    status.labels = set.labels.iter().map(from_wire).collect();
    if !same_labels(&set.labels, &desired_labels) {
        let message = format!(
            "GitHub kept the labels [{}] of scale set {}; labels are fixed when a scale set is created: delete and recreate the AutoscaleSet to change them",
            set.labels
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            set.id
        );
        return Err(Problem::invalid(
            types::SCALE_SET_REGISTERED,
            reasons::LABELS_NOT_APPLIED,
            message,
        ));
    }
    Ok(format!(
        "scale set {} {:?} in runner group {}",
        set.id, set.name, group_id
    ))
}

async fn runner_group_id(client: &ActionsClient, name: &str) -> Result<i64, Problem> {
    if name.eq_ignore_ascii_case("default") {
        return Ok(DEFAULT_RUNNER_GROUP_ID);
    }
    match client.get_runner_group_by_name(name).await {
        Ok(group) => Ok(group.id),
        Err(GitHubError::NotFound { .. }) => Err(Problem::invalid(
            types::SCALE_SET_REGISTERED,
            reasons::RUNNER_GROUP_NOT_FOUND,
            format!(
                "runner group {name:?} does not exist; create it in GitHub's settings or fix runnerGroup"
            ),
        )),
        Err(e) => Err(Problem::github("looking up the runner group", &e)),
    }
}

/// Brings name, group and labels of `set` in line with the spec.
async fn sync(
    asss: &AutoscaleSet,
    client: &ActionsClient,
    set: RunnerScaleSet,
    group_id: i64,
    labels: &[Label],
) -> Result<RunnerScaleSet, Problem> {
    let name = &asss.spec.scale_set_name;
    let update = ScaleSetUpdate {
        name: (set.name != *name).then(|| name.clone()),
        runner_group_id: (set.runner_group_id != group_id).then_some(group_id),
        labels: (!same_labels(&set.labels, labels)).then(|| labels.to_vec()),
    };
    if update == ScaleSetUpdate::default() {
        return Ok(set);
    }
    info!(autoscaleset = %asss.name_any(), scale_set_id = set.id, ?update, "updating the scale set");
    client
        .update_scale_set(set.id, &update)
        .await
        .map_err(|e| Problem::github("updating the scale set", &e))
}

fn same_labels(a: &[Label], b: &[Label]) -> bool {
    let key = |l: &Label| (l.name.to_ascii_lowercase(), l.label_type.to_ascii_lowercase());
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

fn to_wire(label: &ScaleSetLabel) -> Label {
    match label.type_ {
        LabelType::System => Label::system(label.name.clone()),
        LabelType::User => Label::user(label.name.clone()),
    }
}

fn from_wire(label: &Label) -> ScaleSetLabel {
    let type_ = if label.label_type.eq_ignore_ascii_case("user") {
        LabelType::User
    } else {
        LabelType::System
    };
    ScaleSetLabel {
        type_,
        name: label.name.clone(),
    }
}

/// Deletion: wait until no runner of this scale set is left, then remove it from GitHub.
async fn cleanup(asss: &AutoscaleSet, ctx: &Context) -> Result<Action, Error> {
    let runners: Api<EphemeralRunner> = ctx.api();
    let selector = format!("{}={}", labels::AUTOSCALE_SET, asss.name_any());
    let left = runners
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .len();
    if left > 0 {
        let mut status = asss.status.clone().unwrap_or_default();
        status.phase = Some(AutoscaleSetPhase::Deleting);
        let now = Time(k8s_openapi::chrono::Utc::now());
        conditions::set(
            &mut status.conditions,
            Update {
                type_: types::READY,
                status: Status::False,
                reason: reasons::DRAINING,
                message: format!(
                    "waiting for {left} runners to finish before removing the scale set from GitHub"
                ),
            },
            asss.metadata.generation,
            &now,
        );
        write_status(asss, ctx, status).await?;
        return Err(Error::Waiting(format!("{left} runners left")));
    }
    if let Some(id) = asss.status.as_ref().and_then(|s| s.scale_set_id) {
        let removed = match ctx.github(asss).await {
            Ok((client, _)) => match client.delete_scale_set(id).await {
                Ok(()) | Err(GitHubError::NotFound { .. }) => Ok(()),
                Err(e) => Err(Problem::github("removing the scale set", &e)),
            },
            Err(problem) => Err(problem),
        };
        if let Err(problem) = removed {
            // Keep the finalizer: a scale set left on GitHub would hold its name. Deleting the
            // credentials first blocks this; the condition says so.
            let mut status = asss.status.clone().unwrap_or_default();
            let now = Time(k8s_openapi::chrono::Utc::now());
            report(asss, ctx, &mut status, &problem, &now).await;
            write_status(asss, ctx, status).await?;
            return Ok(Action::requeue(
                problem.retry_after.unwrap_or_else(|| ctx.backoff(&key(asss))),
            ));
        }
        event(
            asss,
            ctx,
            EventType::Normal,
            "ScaleSetDeleted",
            &format!("removed scale set {id} from GitHub"),
        )
        .await;
    }
    ctx.forget_github(&asss.namespace().unwrap_or_default(), &asss.name_any());
    ctx.reset_backoff(&key(asss));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_patch_leaves_the_runners_record_alone() {
        let status = AutoscaleSetStatus {
            deprecated_runner_version: Some(rssc_api::v1alpha1::DeprecatedRunnerVersion {
                image: "runner:2.300.0".into(),
                runner: "ci-runner-x".into(),
                time: Time(k8s_openapi::chrono::Utc::now()),
            }),
            scale_set_id: Some(4),
            ..Default::default()
        };
        let patch = status_patch(&status);
        assert_eq!(patch["status"]["scaleSetID"], 4);
        assert!(patch["status"].get("deprecatedRunnerVersion").is_none());
    }

    #[test]
    fn runner_version_condition_appears_on_exit_7_and_clears_after_a_success() {
        let now = Time(k8s_openapi::chrono::Utc::now());
        let mut status = AutoscaleSetStatus::default();
        assert!(!runner_version_condition(&mut status, Some(1), &now));
        assert!(status.conditions.is_empty(), "nothing to say before any report");

        status.deprecated_runner_version = Some(rssc_api::v1alpha1::DeprecatedRunnerVersion {
            image: "runner:2.300.0".into(),
            runner: "ci-abcde".into(),
            time: now.clone(),
        });
        assert!(
            runner_version_condition(&mut status, Some(1), &now),
            "newly False"
        );
        let c = conditions::find(&status.conditions, types::RUNNER_VERSION_SUPPORTED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "RunnerVersionDeprecated")
        );
        assert!(c.message.contains("runner:2.300.0") && c.message.contains("ci-abcde"));
        assert!(
            !runner_version_condition(&mut status, Some(1), &now),
            "already said"
        );

        status.deprecated_runner_version = None;
        assert!(!runner_version_condition(&mut status, Some(1), &now));
        let c = conditions::find(&status.conditions, types::RUNNER_VERSION_SUPPORTED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "RunnerSucceeded")
        );
    }

    #[test]
    fn labels_compare_without_order_or_case() {
        let a = [Label::system("linux"), Label::user("GPU")];
        let b = [Label::user("gpu"), Label::system("Linux")];
        assert!(same_labels(&a, &b));
        assert!(!same_labels(&a, &[Label::system("linux")]));
        assert!(
            !same_labels(&a, &[Label::system("linux"), Label::system("gpu")]),
            "types matter"
        );
    }

    #[test]
    fn label_types_round_trip() {
        let user = ScaleSetLabel {
            type_: LabelType::User,
            name: "gpu".into(),
        };
        assert_eq!(from_wire(&to_wire(&user)), user);
    }
}
