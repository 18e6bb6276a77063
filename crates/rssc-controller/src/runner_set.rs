//! The RunnerSet reconciler: binds one AutoscaleSet, and runs it — the EphemeralRunnerSet with
//! the resolved runner template, and the listener (config Secret, ServiceAccount, Role,
//! RoleBinding, Deployment). One RunnerSet per AutoscaleSet: GitHub allows one message session
//! per scale set, so a second RunnerSet waits and says which one holds it.

use std::{sync::Arc, time::Instant};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{PersistentVolumeClaim, Secret, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    chrono::Utc,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::controller::Action,
};
use rssc_api::{
    consts::{conditions as types, field_managers, finalizers, labels, reasons},
    listener_config::ListenerConfig,
    names,
    v1alpha1::{
        AutoscaleSet, EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerSetSpec, NamespacedRef,
        RunnerConfig, RunnerSet, RunnerSetStatus,
    },
};
use serde::Serialize;
use serde_json::json;
use tracing::info;

use crate::{
    applied,
    conditions::{self, Status, Update},
    context::Context,
    listener,
    problem::Problem,
    reconcile::{Error, finalized, timed},
    runner_support,
    runner_template::{TemplateSource, resolve},
};

/// Reconciles one RunnerSet.
pub async fn reconcile(rs: Arc<RunnerSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<RunnerSet> = Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let ctx = ctx.as_ref();
    let object = rs.clone();
    let scale_set = &object.spec.autoscale_set_ref.name;
    timed(
        ctx,
        "RunnerSet",
        object.as_ref(),
        scale_set,
        finalized(
            &api,
            finalizers::RUNNER_SET,
            rs,
            |o| async move { apply(&o, ctx).await },
            |o| async move { cleanup(&o, ctx).await },
        ),
    )
    .await
}

fn key(rs: &RunnerSet) -> String {
    format!(
        "RunnerSet/{}/{}",
        rs.namespace().unwrap_or_default(),
        rs.name_any()
    )
}

async fn apply(rs: &RunnerSet, ctx: &Context) -> Result<Action, Error> {
    let mut status = rs.status.clone().unwrap_or_default();
    let outcome = run(rs, ctx, &mut status).await;
    let now = Time(Utc::now());
    let generation = rs.metadata.generation;
    let action = match outcome {
        Ok(()) => {
            ctx.reset_backoff(&key(rs));
            conditions::set(
                &mut status.conditions,
                Update {
                    type_: types::READY,
                    status: Status::True,
                    reason: reasons::READY,
                    message: "the listener and the runners are set up".into(),
                },
                generation,
                &now,
            );
            Action::await_change()
        }
        Err(problem) => {
            conditions::set(
                &mut status.conditions,
                Update {
                    type_: types::READY,
                    status: Status::False,
                    reason: problem.reason,
                    message: problem.message.clone(),
                },
                generation,
                &now,
            );
            Action::requeue(problem.retry_after.unwrap_or_else(|| ctx.backoff(&key(rs))))
        }
    };
    status.observed_generation = generation;
    write_status(rs, ctx, status).await?;
    Ok(action)
}

/// The AutoscaleSet `rs` references, if it exists.
async fn autoscale_set(rs: &RunnerSet, ctx: &Context) -> Result<(String, Option<AutoscaleSet>), kube::Error> {
    let reference = &rs.spec.autoscale_set_ref;
    let namespace = reference
        .namespace_or(rs.metadata.namespace.as_deref().unwrap_or_default())
        .to_owned();
    let api: Api<AutoscaleSet> = Api::namespaced(ctx.client.clone(), &namespace);
    Ok((namespace, api.get_opt(&reference.name).await?))
}

/// The RunnerSet that holds the AutoscaleSet: the oldest one referencing it.
async fn holder(
    rs: &RunnerSet,
    ctx: &Context,
    asss_namespace: &str,
) -> Result<Option<RunnerSet>, kube::Error> {
    let all: Api<RunnerSet> = ctx.api();
    let mut candidates: Vec<RunnerSet> = all
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|other| {
            let ns = other.namespace().unwrap_or_default();
            other.metadata.deletion_timestamp.is_none()
                && other.spec.autoscale_set_ref.name == rs.spec.autoscale_set_ref.name
                && other.spec.autoscale_set_ref.namespace_or(&ns) == asss_namespace
        })
        .collect();
    candidates.sort_by_key(|c| {
        (
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            c.namespace(),
            c.name_any(),
        )
    });
    Ok(candidates.into_iter().next())
}

async fn run(rs: &RunnerSet, ctx: &Context, status: &mut RunnerSetStatus) -> Result<(), Problem> {
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let kube = |what: &'static str| move |e: kube::Error| Problem::kube(what, &e);
    let (asss_namespace, asss) = autoscale_set(rs, ctx)
        .await
        .map_err(kube("reading the AutoscaleSet"))?;
    let asss_name = &rs.spec.autoscale_set_ref.name;
    let Some(asss) = asss else {
        return Err(Problem::invalid(
            types::READY,
            reasons::AUTOSCALE_SET_NOT_FOUND,
            format!("AutoscaleSet {asss_namespace}/{asss_name} does not exist"),
        ));
    };
    if let Some(holder) = holder(rs, ctx, &asss_namespace)
        .await
        .map_err(kube("listing RunnerSets"))?
        && holder.metadata.uid != rs.metadata.uid
    {
        return Err(Problem::invalid(
            types::READY,
            reasons::AUTOSCALE_SET_IN_USE,
            format!(
                "AutoscaleSet {asss_namespace}/{asss_name} is run by RunnerSet {}/{}; GitHub allows one listener per scale set",
                holder.namespace().unwrap_or_default(),
                holder.name_any()
            ),
        ));
    }
    if let Some(group) = &rs.spec.runner_group
        && !group.eq_ignore_ascii_case(&asss.spec.runner_group)
    {
        return Err(Problem::invalid(
            types::READY,
            reasons::RUNNER_GROUP_MISMATCH,
            format!(
                "runnerGroup {group:?} differs from the AutoscaleSet's {:?}",
                asss.spec.runner_group
            ),
        ));
    }
    if asss.metadata.deletion_timestamp.is_some() {
        stop(rs, ctx).await.map_err(kube("stopping the listener"))?;
        return Err(Problem::transient(
            types::READY,
            reasons::DRAINING,
            format!("AutoscaleSet {asss_namespace}/{asss_name} is being deleted; runners finish their jobs"),
        ));
    }
    let Some(scale_set_id) = asss.status.as_ref().and_then(|s| s.scale_set_id) else {
        return Err(Problem::transient(
            types::READY,
            reasons::PENDING,
            format!("waiting for AutoscaleSet {asss_namespace}/{asss_name} to register its scale set"),
        ));
    };
    let inputs = ctx.github_inputs(&asss).await?;

    // The runners.
    let template = resolve(
        TemplateSource {
            autoscale_set_name: asss_name,
            autoscale_set: &asss.spec,
            runner_set_name: &name,
            runner_set: &rs.spec,
        },
        &ctx.settings.runners,
    )
    .map_err(|e| Problem::invalid(types::READY, reasons::INVALID_TEMPLATE, e.to_string()))?;
    let set_name = names::ephemeral_runner_set(&name);
    let set = EphemeralRunnerSet {
        metadata: owned_meta(rs, &set_name, rssc_api::consts::components::RUNNER_SET),
        spec: EphemeralRunnerSetSpec {
            replicas: 0,
            patch_sequence: 0,
            job_ends: 0,
            job_ends_through: None,
            beyond_max: 0,
            max_runners: Some(asss.spec.max_runners),
            runner_template: template.template,
            runner_config: RunnerConfig {
                autoscale_set_ref: NamespacedRef {
                    name: asss_name.clone(),
                    namespace: Some(asss_namespace.clone()),
                },
                github_config_url: asss.spec.github_config_url.clone(),
                scale_set_id,
                scale_set_name: asss.spec.scale_set_name.clone(),
                work_folder: None,
            },
        },
        status: None,
    };
    // The listener owns the decision: apply everything else.
    let mut body = serde_json::to_value(&set).expect("serializes");
    body["spec"]
        .as_object_mut()
        .expect("spec is an object")
        .retain(|k, _| !EphemeralRunnerSetSpec::LISTENER_FIELDS.contains(&k.as_str()));

    // What the runners lean on: proxy environment, job-Pod permissions, cache claims.
    let owner = runner_support::Owner {
        runner_set: name.clone(),
        namespace: namespace.clone(),
        reference: rs
            .controller_owner_ref(&())
            .expect("RunnerSets read from the API have a UID"),
    };
    let proxy_secret = inputs
        .proxy
        .as_ref()
        .map(|proxy| runner_support::proxy_secret(&owner, proxy));
    let mode = asss
        .spec
        .container_mode
        .as_ref()
        .map(|m| m.type_)
        .unwrap_or_default();
    let kube_mode_rbac = runner_support::kube_mode_rbac(&owner, mode);
    let claims: Vec<(String, PersistentVolumeClaim)> = asss
        .spec
        .persistent_volumes
        .iter()
        .map(|volume| {
            (
                names::cache_claim(&name, &volume.name),
                runner_support::cache_claim(&owner, volume),
            )
        })
        .collect();

    // The listener.
    let config = ListenerConfig {
        github_config_url: asss.spec.github_config_url.clone(),
        scale_set_id,
        scale_set_name: asss.spec.scale_set_name.clone(),
        namespace: namespace.clone(),
        ephemeral_runner_set: set_name.clone(),
        config_secret: names::listener(&name),
        min_runners: asss.spec.min_runners,
        max_runners: asss.spec.max_runners,
        session_owner: format!("{namespace}/{name}"),
        auth: inputs.auth,
        proxy: inputs.proxy.clone(),
        ca_bundle: inputs.ca_bundle.clone(),
    };
    let objects = listener::build(rs, &config, &ctx.settings.listener)
        .expect("RunnerSets read from the API have a name and UID");

    // Apply only what changed since the last apply (or everything, once the EphemeralRunnerSet
    // or the listener Deployment is missing or the last apply is older than the resync period).
    let sets: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = sets
        .get_opt(&set_name)
        .await
        .map_err(kube("reading the EphemeralRunnerSet"))?;
    let fingerprint = applied::fingerprint(&[
        body.clone(),
        json(&proxy_secret),
        json(&kube_mode_rbac),
        json(&claims),
        json(&objects.config),
        json(&objects.service_account),
        json(&objects.role),
        json(&objects.role_binding),
        json(&objects.deployment),
    ]);
    let listener_name = names::listener(&name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let listener_exists = deployments
        .get_metadata_opt(&listener_name)
        .await
        .map_err(kube("reading the listener Deployment"))?
        .is_some_and(|d| d.metadata.deletion_timestamp.is_none());
    let applied_key = applied::key(&namespace, &name);
    let now = Instant::now();
    if current.is_none() || !listener_exists || !ctx.applied.is_current(&applied_key, fingerprint, now) {
        apply_object::<EphemeralRunnerSet>(ctx, &namespace, &set_name, &body)
            .await
            .map_err(kube("applying the EphemeralRunnerSet"))?;
        if let Some(secret) = &proxy_secret {
            apply_typed::<Secret>(ctx, &namespace, &names::runner_proxy_secret(&name), secret)
                .await
                .map_err(kube("applying the runners' proxy Secret"))?;
        }
        if let Some((account, role, binding)) = &kube_mode_rbac {
            let rbac_name = names::runner_kube_mode_account(&name);
            apply_typed::<ServiceAccount>(ctx, &namespace, &rbac_name, account)
                .await
                .map_err(kube("applying the runners' ServiceAccount"))?;
            apply_typed::<Role>(ctx, &namespace, &rbac_name, role)
                .await
                .map_err(kube("applying the runners' Role"))?;
            apply_typed::<RoleBinding>(ctx, &namespace, &rbac_name, binding)
                .await
                .map_err(kube("applying the runners' RoleBinding"))?;
        }
        let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        for (claim_name, claim) in &claims {
            // A claim's spec is immutable once bound: create it once, then leave it be.
            if claims_api
                .get_opt(claim_name)
                .await
                .map_err(kube("reading a cache claim"))?
                .is_none()
            {
                apply_typed::<PersistentVolumeClaim>(ctx, &namespace, claim_name, claim)
                    .await
                    .map_err(kube("creating a cache claim"))?;
            }
        }
        apply_typed::<Secret>(ctx, &namespace, &listener_name, &objects.config)
            .await
            .map_err(kube("applying the listener config"))?;
        apply_typed::<ServiceAccount>(ctx, &namespace, &listener_name, &objects.service_account)
            .await
            .map_err(kube("applying the listener ServiceAccount"))?;
        apply_typed::<Role>(ctx, &namespace, &listener_name, &objects.role)
            .await
            .map_err(kube("applying the listener Role"))?;
        apply_typed::<RoleBinding>(ctx, &namespace, &listener_name, &objects.role_binding)
            .await
            .map_err(kube("applying the listener RoleBinding"))?;
        apply_typed::<Deployment>(ctx, &namespace, &listener_name, &objects.deployment)
            .await
            .map_err(kube("applying the listener Deployment"))?;
        ctx.applied.record(&applied_key, fingerprint, now);
    }

    // Status from the runners' and the listener's own reports.
    if let Some(current) = current {
        let s = current.status.clone().unwrap_or_default();
        status.desired_runners = current.spec.replicas;
        status.current_runners = s.current_runners;
        status.pending_runners = s.pending_runners;
        status.idle_runners = s.idle_runners;
        status.busy_runners = s.busy_runners;
        status.failed_runners = s.failed_runners;
        status.quota_blocked_runners = s.quota_blocked_runners;
        if let Some(update) = admission_condition(status) {
            conditions::set(
                &mut status.conditions,
                update,
                rs.metadata.generation,
                &Time(Utc::now()),
            );
        }
        status.listener = s.listener.clone();
        let ready = s.listener.as_ref().is_some_and(|l| l.ready);
        let labels = crate::metrics::ScaleSetLabels::for_config_url(
            &asss.spec.scale_set_name,
            &namespace,
            &asss.spec.github_config_url,
        );
        ctx.metrics.listener(&labels, ready);
        conditions::set(
            &mut status.conditions,
            Update {
                type_: types::LISTENER_READY,
                status: if ready { Status::True } else { Status::False },
                reason: if ready { reasons::READY } else { reasons::PENDING },
                message: if ready {
                    "the listener has a message session".into()
                } else {
                    "the listener has no message session yet".into()
                },
            },
            rs.metadata.generation,
            &Time(Utc::now()),
        );
    }
    Ok(())
}

/// `PodAdmitted`: False while a ResourceQuota refuses runner Pods; said only once it was False.
fn admission_condition(status: &RunnerSetStatus) -> Option<Update<'static>> {
    let blocked = status.quota_blocked_runners;
    if blocked > 0 {
        return Some(Update {
            type_: types::POD_ADMITTED,
            status: Status::False,
            reason: reasons::EXCEEDED_QUOTA,
            message: format!(
                "{blocked} runner Pod(s) refused by a ResourceQuota; retrying with backoff (see the EphemeralRunners' PodAdmitted condition)"
            ),
        });
    }
    conditions::find(&status.conditions, types::POD_ADMITTED).map(|_| Update {
        type_: types::POD_ADMITTED,
        status: Status::True,
        reason: reasons::READY,
        message: "runner Pods are admitted".into(),
    })
}

fn owned_meta(rs: &RunnerSet, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: rs.namespace(),
        labels: Some(
            [
                (labels::RUNNER_SET.to_owned(), rs.name_any()),
                (
                    labels::AUTOSCALE_SET.to_owned(),
                    rs.spec.autoscale_set_ref.name.clone(),
                ),
                (labels::COMPONENT.to_owned(), component.to_owned()),
                (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
            ]
            .into(),
        ),
        owner_references: rs.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

fn json(object: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(object).expect("serializes")
}

fn apply_params() -> PatchParams {
    PatchParams::apply(field_managers::CONTROLLER).force()
}

async fn apply_typed<K>(ctx: &Context, namespace: &str, name: &str, object: &K) -> Result<(), kube::Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let mut body = serde_json::to_value(object).expect("serializes");
    body["apiVersion"] = json!(K::api_version(&()));
    body["kind"] = json!(K::kind(&()));
    apply_object::<K>(ctx, namespace, name, &body).await
}

async fn apply_object<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    body: &serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(name, &apply_params(), &Patch::Apply(body))
        .await
        .map(drop)
}

async fn write_status(rs: &RunnerSet, ctx: &Context, status: RunnerSetStatus) -> Result<(), kube::Error> {
    if rs.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<RunnerSet> = Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(field_managers::CONTROLLER.into()),
        ..Default::default()
    };
    api.patch_status(
        &rs.name_any(),
        &params,
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(drop)
}

/// Stops the listener and asks for no runners; busy runners finish their jobs.
async fn stop(rs: &RunnerSet, ctx: &Context) -> Result<(), kube::Error> {
    let namespace = rs.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    match deployments
        .delete(&names::listener(&rs.name_any()), &DeleteParams::background())
        .await
    {
        Ok(_) => info!(runnerset = %rs.name_any(), "listener stopped"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    let sets: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let set_name = names::ephemeral_runner_set(&rs.name_any());
    if let Some(set) = sets.get_opt(&set_name).await?
        && set.spec.replicas != 0
    {
        let patch = json!({"spec": {"replicas": 0, "patchSequence": set.spec.patch_sequence + 1}});
        let params = PatchParams {
            field_manager: Some(field_managers::CONTROLLER.into()),
            ..Default::default()
        };
        sets.patch(&set_name, &params, &Patch::Merge(patch)).await?;
    }
    Ok(())
}

/// Deletion: stop the listener, let the runners finish, then let garbage collection take the
/// rest (everything is owned by the RunnerSet).
async fn cleanup(rs: &RunnerSet, ctx: &Context) -> Result<Action, Error> {
    stop(rs, ctx).await?;
    let runners: Api<EphemeralRunner> =
        Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let selector = format!("{}={}", labels::RUNNER_SET, rs.name_any());
    let left = runners
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .len();
    if left > 0 {
        return Err(Error::Waiting(format!("{left} runners left")));
    }
    ctx.reset_backoff(&key(rs));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_admission_is_reported_only_once_a_quota_refused_a_pod() {
        let mut status = RunnerSetStatus::default();
        assert!(admission_condition(&status).is_none());
        status.quota_blocked_runners = 3;
        let refused = admission_condition(&status).unwrap();
        assert_eq!(
            (refused.status, refused.reason),
            (Status::False, reasons::EXCEEDED_QUOTA)
        );
        assert!(refused.message.starts_with("3 runner Pod(s)"));
        conditions::set(&mut status.conditions, refused, None, &Time(Utc::now()));
        status.quota_blocked_runners = 0;
        let admitted = admission_condition(&status).unwrap();
        assert_eq!(admitted.status, Status::True);
    }
}
