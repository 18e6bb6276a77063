//! Wiring of the reconcilers into kube-runtime controllers.

use std::sync::Arc;

use futures::{StreamExt, channel::mpsc};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    runtime::{Controller, WatchStreamExt, controller::Action, metadata_watcher, reflector::Store, watcher},
};
use rssc_api::v1alpha1::AutoscaleSet;
use tracing::{debug, warn};

use crate::{autoscale_set, context::Context, credentials};

/// Runs the AutoscaleSet controller until `shutdown` completes.
pub async fn run_autoscale_sets(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<AutoscaleSet> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let (secret_changed, secret_changes) = mpsc::channel::<()>(16);
    let secrets = tokio::spawn(watch_referenced_secrets(
        ctx.clone(),
        controller.store(),
        secret_changed,
    ));
    controller
        .reconcile_all_on(secret_changes)
        .graceful_shutdown_on(shutdown)
        .run(autoscale_set::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(object = %object.name, "reconciled"),
                Err(err) => warn!(error = %err, "reconcile failed"),
            }
        })
        .await;
    secrets.abort();
}

/// Follows Secrets (metadata only, nothing cached) and asks for a reconcile when one that an
/// AutoscaleSet references changes, so rotated or newly created credentials apply at once.
async fn watch_referenced_secrets(
    ctx: Arc<Context>,
    store: Store<AutoscaleSet>,
    mut changed: mpsc::Sender<()>,
) {
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let mut events = std::pin::pin!(
        metadata_watcher(secrets, watcher::Config::default())
            .default_backoff()
            .touched_objects()
    );
    while let Some(event) = events.next().await {
        let Ok(secret) = event else { continue };
        let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        let referenced = store.state().iter().any(|asss| {
            let own = asss.namespace().unwrap_or_default();
            let credentials = credentials::credentials_secret(&asss.spec)
                .is_ok_and(|(r, _)| r.name == name && r.namespace_or(&own) == namespace);
            let proxy = own == namespace
                && asss.spec.proxy.as_ref().is_some_and(|p| {
                    [&p.http, &p.https]
                        .into_iter()
                        .flatten()
                        .any(|s| s.credential_secret_ref.as_deref() == Some(name.as_str()))
                });
            credentials || proxy
        });
        if referenced && changed.try_send(()).is_err() {
            debug!("a reconcile of all AutoscaleSets is already queued");
        }
    }
}

fn error_policy(asss: Arc<AutoscaleSet>, err: &autoscale_set::Error, ctx: Arc<Context>) -> Action {
    let key = format!(
        "AutoscaleSet/{}/{}",
        asss.namespace().unwrap_or_default(),
        asss.name_any()
    );
    warn!(error = %err, category = err.category(), "AutoscaleSet reconcile failed; retrying");
    Action::requeue(ctx.backoff(&key))
}
