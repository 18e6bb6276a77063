//! Wiring of the reconcilers into kube-runtime controllers.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, channel::mpsc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, trigger_owners},
        metadata_watcher,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use rssc_api::{
    consts::labels,
    v1alpha1::{AutoscaleSet, EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerSetSpec, RunnerSet},
};
use tracing::{debug, warn};

use crate::{
    autoscale_set,
    context::Context,
    credentials, ephemeral_runner, ephemeral_runner_set,
    lean_runners::{LeanRunner, SetRunner, as_full_event},
    outcome_pods::OutcomePod,
    reconcile::Error,
    runner_set, trigger_pace,
};

/// Controller settings with `concurrency` reconciles at once (kube-runtime's default is
/// unbounded; a bound keeps API servers and GitHub from bursts of our own making).
fn config(concurrency: u16) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(concurrency)
}

/// Our objects among shared kinds (Pods, Secrets) carry this selector.
fn ours() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE))
}

/// The RunnerSets in `store` that reference the AutoscaleSet `namespace/name`.
fn referencing(store: &Store<RunnerSet>, namespace: &str, name: &str) -> Vec<ObjectRef<RunnerSet>> {
    store
        .state()
        .iter()
        .filter(|rs| {
            let own = rs.namespace().unwrap_or_default();
            rs.spec.autoscale_set_ref.name == name
                && rs.spec.autoscale_set_ref.namespace_or(&own) == namespace
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// Runs the RunnerSet controller until `shutdown` completes.
pub async fn run_runner_sets(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(ctx.api::<RunnerSet>(), watcher::Config::default())
        .with_config(config(ctx.settings.concurrency));
    let store = controller.store();
    let set_triggers = changed_objects(
        watcher(ctx.api::<EphemeralRunnerSet>(), watcher::Config::default()),
        set_digest,
        |_| false,
    );
    controller
        .owns_stream(set_triggers)
        // The reconcile reads the Deployment's metadata itself; changes only trigger it.
        .owns_stream(metadata_watcher(ctx.api::<Deployment>(), ours()).touched_objects())
        // A change of an AutoscaleSet (registration, limits, template, deletion) concerns the
        // RunnerSets that reference it.
        .watches(ctx.api::<AutoscaleSet>(), watcher::Config::default(), {
            let store = store.clone();
            move |asss| referencing(&store, &asss.namespace().unwrap_or_default(), &asss.name_any())
        })
        // When a RunnerSet goes, another one waiting for the same AutoscaleSet takes over.
        .watches(ctx.api::<RunnerSet>(), watcher::Config::default(), move |rs| {
            let own = rs.namespace().unwrap_or_default();
            let reference = &rs.spec.autoscale_set_ref;
            referencing(&store, reference.namespace_or(&own), &reference.name)
        })
        .graceful_shutdown_on(shutdown)
        .run(runner_set::reconcile, error_policy, ctx)
        .for_each(log_result)
        .await;
}

/// Runs the EphemeralRunnerSet controller until `shutdown` completes.
pub async fn run_ephemeral_runner_sets(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // The set reads its runners from this cache, counting the ones it wrote and the cache does
    // not show yet (see `runner_expectations`); the events that fill the cache are the ones that
    // trigger it, so what triggered a reconcile is in the cache it reads. A set reconciles for
    // its runners' changes at most every SET_TRIGGER_SPACING (its own changes, the listener's
    // decisions among them, still at once).
    let (cache, writer) = reflector::store();
    let runners = watcher(ctx.api::<SetRunner>(), watcher::Config::default())
        .default_backoff()
        .map_ok(as_full_event)
        .reflect(writer)
        .touched_objects();
    let runner_changes = trigger_owners::<EphemeralRunnerSet, _>(runners, (), ()).filter_map(|request| {
        futures::future::ready(match request {
            Ok(request) => Some(request.obj_ref),
            Err(err) => {
                watch_failed(&err);
                None
            }
        })
    });
    Controller::new(ctx.api::<EphemeralRunnerSet>(), watcher::Config::default())
        .with_config(config(ctx.settings.concurrency))
        .reconcile_on(trigger_pace::paced(runner_changes, SET_TRIGGER_SPACING))
        .graceful_shutdown_on(shutdown)
        .run(
            move |set, ctx| ephemeral_runner_set::reconcile(set, ctx, cache.clone()),
            error_policy,
            ctx,
        )
        .for_each(log_result)
        .await;
}

/// How often at most a set reconciles for changes of its runners (see [`trigger_pace`]). When
/// each reconcile listed all the set's runners, that list was a fifth of the controller's CPU
/// in a burst of a thousand runners at 100 ms; at 250 ms a burst took about 60 set reconciles
/// instead of 100, and a lone change still goes at once (docs/benchmarks.md, step 33). The set
/// now reads a cache (step 34); the pacing still spares it a status count per runner event.
const SET_TRIGGER_SPACING: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs the EphemeralRunner controller until `shutdown` completes.
pub async fn run_ephemeral_runners(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (runners, writer) = reflector::store();
    let removed = ctx.clone();
    let trigger = watcher(ctx.api::<LeanRunner>(), watcher::Config::default())
        .map_ok(as_full_event)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(runner_changes_that_matter)
        // A runner the reconciler removed itself has nothing left to reconcile.
        .filter(move |runner| {
            let done = runner.as_ref().is_ok_and(|r| {
                r.uid()
                    .is_some_and(|uid| removed.self_removed.contains(&uid, std::time::Instant::now()))
            });
            futures::future::ready(!done)
        });
    // Runner Pods are cached with only what a reconcile reads of them; each event reaches the
    // cache before it triggers a reconcile, and a Pod change triggers one only when it can
    // change the runner's outcome.
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(ctx.api::<OutcomePod>(), ours())
        .map_ok(as_full_event)
        .reflect(pod_writer);
    Controller::for_stream(trigger, runners)
        .with_config(config(ctx.settings.runner_concurrency))
        .owns_stream(pod_triggers(pod_events))
        .graceful_shutdown_on(shutdown)
        .run(
            move |runner, ctx| ephemeral_runner::reconcile(runner, ctx, pods.clone()),
            error_policy,
            ctx,
        )
        .for_each(log_result)
        .await;
}

/// The objects among `events` whose `digest` changed since their last event, except new ones
/// that are `quiet_when_new`; every object listed when the watch (re)starts, since what happened
/// meanwhile is unknown; and every deletion (a deleted object's last state may equal the one
/// seen before, and its deletion still matters).
fn changed_objects<K>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    digest: fn(&K) -> u64,
    quiet_when_new: fn(&K) -> bool,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send
where
    K: kube::Resource<DynamicType = ()> + Send,
{
    let mut seen: std::collections::HashMap<ObjectRef<K>, u64> = std::collections::HashMap::new();
    events.filter_map(move |event| {
        let trigger = match event {
            Ok(watcher::Event::InitApply(object)) => {
                seen.insert(ObjectRef::from_obj(&object), digest(&object));
                Some(Ok(object))
            }
            Ok(watcher::Event::Apply(object)) => {
                let now = digest(&object);
                let before = seen.insert(ObjectRef::from_obj(&object), now);
                let quiet = before.is_none() && quiet_when_new(&object);
                (before != Some(now) && !quiet).then_some(Ok(object))
            }
            Ok(watcher::Event::Delete(object)) => {
                seen.remove(&ObjectRef::from_obj(&object));
                Some(Ok(object))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(err) => Some(Err(err)),
        };
        futures::future::ready(trigger)
    })
}

/// What of an EphemeralRunnerSet its RunnerSet acts on or reports: all but the listener's
/// decision (the counts and its trace annotation), which changes with nearly every job event
/// and reaches the RunnerSet's summary through the set's status, written at most once a
/// second. Triggered by every decision, the RunnerSet re-read its AutoscaleSet, credentials
/// and listener objects hundreds of times a minute during a burst.
fn set_digest(set: &EphemeralRunnerSet) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut spec = serde_json::to_value(&set.spec).unwrap_or_default();
    if let Some(fields) = spec.as_object_mut() {
        fields.retain(|k, _| !EphemeralRunnerSetSpec::LISTENER_FIELDS.contains(&k.as_str()));
    }
    let mut annotations = set.annotations().clone();
    annotations.remove(rssc_api::consts::annotations::TRACEPARENT);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&(&spec, &set.status, set.labels(), &annotations))
        .unwrap_or_default()
        .hash(&mut hasher);
    set.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    set.finalizers().hash(&mut hasher);
    set.owner_references()
        .iter()
        .map(|o| &o.uid)
        .collect::<Vec<_>>()
        .hash(&mut hasher);
    hasher.finish()
}

/// The runner Pod changes that can change a runner's outcome (see
/// [`crate::runner_outcome::pod_digest`]), and every Pod deletion: a vanished Pod is an outcome
/// too, though its last state may equal the one seen before. A new Pod that has not started yet
/// triggers nothing: the reconcile that created it scheduled its pending timeout. Pods listed
/// when the watch (re)starts always trigger, since what happened meanwhile is unknown.
fn pod_triggers(
    events: impl futures::Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send,
) -> impl futures::Stream<Item = Result<Pod, watcher::Error>> + Send {
    // A Pod just created by a runner's reconcile tells that runner nothing new.
    changed_objects(
        events,
        crate::runner_outcome::pod_digest,
        crate::runner_outcome::just_created,
    )
}

/// What of an EphemeralRunner its reconcile acts on: its spec (generation, which a deletion also
/// bumps), its deletion and its finalizers. Status writes (the controller's own and the
/// listener's job records, four or more per runner) need no reconcile: what they say matters
/// only when the runner's Pod changes, which triggers one anyway. Left unfiltered, they filled
/// the reconcile queue in a burst and new runners waited seconds for their first turn.
fn runner_changes_that_matter(runner: &EphemeralRunner) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    runner.metadata.generation.hash(&mut hasher);
    runner.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    runner.finalizers().hash(&mut hasher);
    Some(hasher.finish())
}

async fn log_result<T: std::fmt::Debug, E: std::error::Error>(
    result: Result<T, kube::runtime::controller::Error<E, watcher::Error>>,
) {
    match result {
        Ok(object) => debug!(?object, "reconciled"),
        // An object deleted between its event and its turn: nothing to do.
        Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
            debug!(%object, "object already gone")
        }
        Err(kube::runtime::controller::Error::QueueError(err)) => watch_failed(&err),
        // The error policy already logged why (at debug level for deletions that wait).
        Err(err) => debug!(error = %err, "reconcile did not finish"),
    }
}

/// Logs a failed watch, which is retried after a backoff. A watch that keeps failing (no
/// permission to list, an answer it cannot follow) leaves the controller blind to what it
/// watches, so that is a warning; an expired resource version is not: long watches meet one in
/// normal operation, and the retry lists the objects again.
fn watch_failed(err: &watcher::Error) {
    match err {
        watcher::Error::WatchError(e) if e.code == 410 => {
            debug!(error = %err, "a watch expired; listing again")
        }
        _ => warn!(error = %err, "watching failed; retrying"),
    }
}

/// Runs the AutoscaleSet controller until `shutdown` completes.
pub async fn run_autoscale_sets(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<AutoscaleSet> = ctx.api();
    let controller =
        Controller::new(api, watcher::Config::default()).with_config(config(ctx.settings.concurrency));
    let (secret_changed, secret_changes) = mpsc::channel::<()>(16);
    let secrets = tokio::spawn(watch_referenced_secrets(
        ctx.clone(),
        controller.store(),
        secret_changed,
    ));
    controller
        .reconcile_all_on(secret_changes)
        // A listener that lost its scale set reports not ready on its EphemeralRunnerSet: check
        // the registration now (and register the scale set again) rather than at the next recheck.
        .watches(ctx.api::<EphemeralRunnerSet>(), watcher::Config::default(), |set| {
            let listener_down = set
                .status
                .as_ref()
                .and_then(|s| s.listener.as_ref())
                .is_some_and(|l| !l.ready);
            let own = set.namespace().unwrap_or_default();
            let reference = &set.spec.runner_config.autoscale_set_ref;
            listener_down.then(|| ObjectRef::new(&reference.name).within(reference.namespace_or(&own)))
        })
        .graceful_shutdown_on(shutdown)
        .run(autoscale_set::reconcile, error_policy, ctx)
        .for_each(log_result)
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
    let secrets: Api<Secret> = ctx.api();
    let mut events = std::pin::pin!(
        metadata_watcher(secrets, watcher::Config::default())
            .default_backoff()
            .touched_objects()
    );
    while let Some(event) = events.next().await {
        let secret = match event {
            Ok(secret) => secret,
            Err(err) => {
                watch_failed(&err);
                continue;
            }
        };
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

/// What to do after a failed reconcile: a deletion that waits looks again shortly; anything
/// else backs off per object.
fn error_policy<K>(object: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    let key = format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    );
    if let Error::Waiting(why) = err.own() {
        debug!(%why, object = %key, "deletion waits");
        return Action::requeue(DRAIN_RECHECK);
    }
    warn!(error = %err, category = err.category(), object = %key, "reconcile failed; retrying");
    Action::requeue(ctx.backoff(&key))
}

/// How often a deletion that waits (for runners, or for GitHub) looks again.
const DRAIN_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use rssc_api::v1alpha1::{EphemeralRunnerPhase, EphemeralRunnerStatus, RunnerJob};

    use super::*;

    /// What `log` writes, at every level.
    fn logged(log: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_failed_watch_is_a_warning_and_an_expired_one_is_not() {
        let failed = logged(|| watch_failed(&watcher::Error::NoResourceVersion));
        assert!(
            failed.contains(" WARN ") && failed.contains("watching failed; retrying"),
            "{failed}"
        );
        let expired = watcher::Error::WatchError(kube::core::ErrorResponse {
            status: "Failure".into(),
            message: "too old resource version: 5 (9)".into(),
            reason: "Expired".into(),
            code: 410,
        });
        let expired = logged(|| watch_failed(&expired));
        assert!(
            expired.contains(" DEBUG ") && !expired.contains("WARN"),
            "{expired}"
        );
    }

    #[tokio::test]
    async fn only_pod_changes_that_can_change_the_outcome_trigger_and_every_deletion_does() {
        let pod = |rv: &str, phase: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "r", "namespace": "ns", "resourceVersion": rv},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let named = |name: &str, rv: &str, phase: &str| -> Pod {
            let mut p = pod(rv, phase);
            p.metadata.name = Some(name.into());
            p
        };
        let events = futures::stream::iter([
            // Listed when the watch starts: always looked at.
            Ok(watcher::Event::InitApply(named("listed", "1", "Pending"))),
            // Just created: its creator already scheduled what follows.
            Ok(watcher::Event::Apply(pod("2", "Pending"))),
            Ok(watcher::Event::Apply(pod("3", "Pending"))),
            Ok(watcher::Event::Apply(pod("4", "Running"))),
            Ok(watcher::Event::Delete(pod("4", "Running"))),
            // First seen already running or failed (a missed event): looked at.
            Ok(watcher::Event::Apply(named("late", "5", "Failed"))),
        ]);
        let seen: Vec<String> = pod_triggers(events)
            .map(|p| p.unwrap().resource_version().unwrap())
            .collect()
            .await;
        assert_eq!(seen, ["1", "4", "4", "5"]);
    }

    #[test]
    fn status_writes_do_not_trigger_a_runner_reconcile_but_deletion_and_finalizers_do() {
        let mut runner: EphemeralRunner = serde_json::from_value(serde_json::json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "EphemeralRunner",
            "metadata": {"name": "r", "generation": 1, "finalizers": ["f"]},
            "spec": {"runnerTemplate": {"spec": {"containers": []}},
                     "runnerConfig": {"autoscaleSetRef": {"name": "a"}, "githubConfigURL": "https://github.com/o",
                                      "scaleSetID": 1, "scaleSetName": "s"}}
        }))
        .unwrap();
        let created = runner_changes_that_matter(&runner);
        runner.status = Some(EphemeralRunnerStatus {
            phase: Some(EphemeralRunnerPhase::Running),
            runner_id: Some(3),
            job: Some(RunnerJob::default()),
            ..Default::default()
        });
        runner.metadata.resource_version = Some("9".into());
        assert_eq!(runner_changes_that_matter(&runner), created, "status only");

        let mut deleted = runner.clone();
        deleted.metadata.deletion_timestamp = Some(Time(k8s_openapi::chrono::Utc::now()));
        deleted.metadata.generation = Some(2);
        assert_ne!(runner_changes_that_matter(&deleted), created);
        let mut released = runner.clone();
        released.metadata.finalizers = None;
        assert_ne!(runner_changes_that_matter(&released), created);
    }

    #[test]
    fn a_set_triggers_its_runner_set_on_status_and_template_changes_but_not_on_decisions() {
        let mut set: EphemeralRunnerSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "EphemeralRunnerSet",
            "metadata": {"name": "ci", "namespace": "ns", "generation": 1},
            "spec": {"replicas": 1, "patchSequence": 1,
                     "runnerTemplate": {"spec": {"containers": [{"name": "runner", "image": "a"}]}},
                     "runnerConfig": {"autoscaleSetRef": {"name": "a"}, "githubConfigURL": "https://github.com/o",
                                      "scaleSetID": 1, "scaleSetName": "s"}}
        }))
        .unwrap();
        let before = set_digest(&set);
        set.spec.replicas = 40;
        set.spec.patch_sequence = 9;
        set.spec.job_ends = 3;
        set.spec.beyond_max = 2;
        set.metadata.generation = Some(5);
        set.annotations_mut().insert(
            rssc_api::consts::annotations::TRACEPARENT.into(),
            "00-t-s-01".into(),
        );
        assert_eq!(set_digest(&set), before, "a decision alone");

        let mut counted = set.clone();
        counted.status = Some(rssc_api::v1alpha1::EphemeralRunnerSetStatus {
            busy_runners: 1,
            ..Default::default()
        });
        assert_ne!(set_digest(&counted), before);
        let mut edited = set.clone();
        edited.spec.runner_template.spec.containers[0].image = Some("b".into());
        assert_ne!(set_digest(&edited), before);
        let mut deleting = set.clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::chrono::Utc::now()));
        assert_ne!(set_digest(&deleting), before);
    }
}
