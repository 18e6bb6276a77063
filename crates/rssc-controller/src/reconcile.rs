//! What the reconcilers share: their error type, running a reconcile under a finalizer, and
//! recording its metrics.

use std::{
    fmt::Debug,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    Api, Resource,
    runtime::{
        controller::Action,
        finalizer::{self, Event},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{Instrument, debug, info_span};

use crate::context::Context;

/// Error of a reconcile (problems with an object's spec or with GitHub go to its status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer, or the reconcile under it, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// A deletion waits (for runners to finish, for GitHub); an error keeps the finalizer.
    #[error("waiting: {0}")]
    Waiting(String),
    /// The cache still showed the finalizer, but the stored object no longer holds it (or is
    /// gone): cleanup has nothing to do, and removing the finalizer again would be a wasted write.
    #[error("already finalized")]
    AlreadyFinalized,
}

impl Error {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self.own() {
            Error::Kube(_) => "kubernetes",
            Error::Finalizer(_) | Error::AlreadyFinalized => "finalizer",
            Error::Waiting(_) => "waiting",
        }
    }

    /// The reconcile's own error, seen through kube-runtime's finalizer wrapper.
    pub fn own(&self) -> &Error {
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.own(),
                _ => self,
            },
            other => other,
        }
    }
}

/// Whether a create failed because the object is already there. Only the `AlreadyExists`
/// reason says so: a create answered `Conflict` (or anything else) made nothing, so a
/// reconcile that took it for "exists" would wait for events of an object that never comes.
pub fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == 409 && r.reason == "AlreadyExists")
}

/// Runs `apply` or, once the object is being deleted, `cleanup` under the finalizer `name`.
pub async fn finalized<K, FA, FC>(
    api: &Api<K>,
    name: &str,
    object: Arc<K>,
    apply: impl FnOnce(Arc<K>) -> FA,
    cleanup: impl FnOnce(Arc<K>) -> FC,
) -> Result<Action, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    FA: Future<Output = Result<Action, Error>>,
    FC: Future<Output = Result<Action, Error>>,
{
    finalizer::finalizer(api, name, object, |event| async move {
        match event {
            Event::Apply(object) => apply(object).await,
            Event::Cleanup(object) => cleanup(object).await,
        }
    })
    .await
    .or_else(|e| match e {
        // The cache still showed the object, but it is already gone: nothing is left to do.
        finalizer::Error::RemoveFinalizer(kube::Error::Api(ref response)) if response.code == 404 => {
            Ok(Action::await_change())
        }
        finalizer::Error::CleanupFailed(Error::AlreadyFinalized) => Ok(Action::await_change()),
        // The finalizer list changed since the cache read it: the patch, which tests that
        // list, was refused. Usually a reconcile triggered right after the one that added the
        // finalizer, before the watch showed it; the change's watch event is on its way, and
        // a new object's first reconciles otherwise logged a warning and counted an error.
        finalizer::Error::AddFinalizer(kube::Error::Api(ref response))
            if response.code == 422 || response.code == 409 =>
        {
            debug!(error = %response.message, "the finalizer list changed meanwhile; looking again");
            Ok(Action::requeue(FINALIZER_RECHECK))
        }
        e => Err(Error::Finalizer(Box::new(e))),
    })
}

/// When a reconcile whose finalizer patch met a newer finalizer list looks again, should no
/// watch event bring it sooner.
const FINALIZER_RECHECK: Duration = Duration::from_secs(1);

/// Runs one reconcile of `object` (of `kind`, serving the AutoscaleSet `scale_set`) in a span
/// naming all three, so every log line it writes says which object and scale set it is about,
/// and records its count, duration and error category.
pub async fn timed<K: Resource>(
    ctx: &Context,
    kind: &'static str,
    object: &K,
    scale_set: &str,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let meta = object.meta();
    let span = info_span!(
        "reconcile",
        kind,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        object = meta.name.as_deref().unwrap_or_default(),
        scale_set,
        "otel.status_code" = tracing::field::Empty,
        "otel.status_description" = tracing::field::Empty,
    );
    // Reconciles for a job join its trace: a runner made for one job as a child, a decision
    // made for several by links.
    if let Some(traceparents) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(rssc_api::consts::annotations::TRACEPARENT))
    {
        rssc_runtime::telemetry::join(&span, traceparents);
    }
    let started = Instant::now();
    let result = reconcile.instrument(span.clone()).await;
    if let Err(err) = &result
        && !matches!(err.own(), Error::Waiting(_))
    {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", err.to_string());
    }
    ctx.metrics.reconciled(
        kind,
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(kube::core::ErrorResponse {
            status: "Failure".into(),
            message: String::new(),
            reason: reason.into(),
            code,
        })
    }

    #[test]
    fn only_already_exists_means_the_object_is_there() {
        assert!(already_exists(&api_error(409, "AlreadyExists")));
        assert!(
            !already_exists(&api_error(409, "Conflict")),
            "a refused create made nothing"
        );
        assert!(!already_exists(&api_error(500, "InternalError")));
    }
}
