//! The listener's side of Kubernetes: the few writes it makes and what it reads back after a
//! restart. Behind a trait so the session loop is tested against the fake GitHub with an
//! in-memory cluster as well as against a Kubernetes API server.

use std::{future::Future, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use rssc_api::{
    consts::field_managers,
    v1alpha1::{EphemeralRunner, EphemeralRunnerSet, MessageMark, RunnerJob},
};

use crate::{
    patches::{self, SessionState},
    scaler::Decision,
};

/// What a restarted listener reads back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredState {
    /// The sequence of the last decision written.
    pub last_sequence: i64,
    /// The runners the last decision asked for.
    pub replicas: i32,
    /// The runners the last decision left out for the maximum.
    pub beyond_max: i32,
    /// The job ends of the last decision written.
    pub job_ends: i64,
    /// The last message whose job ends `job_ends` counts.
    pub job_ends_through: Option<MessageMark>,
    /// The session state and message cursor written last.
    pub session: SessionState,
}

/// Error talking to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
#[error("kubernetes API: {action}: {source}")]
pub struct ClusterError {
    action: &'static str,
    #[source]
    source: kube::Error,
}

impl ClusterError {
    /// Bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match &self.source {
            kube::Error::Api(status) if status.code == 404 => "not_found",
            kube::Error::Api(status) if status.code == 403 => "forbidden",
            kube::Error::Api(status) if status.code == 409 => "conflict",
            kube::Error::Api(_) => "api_error",
            _ => "connection",
        }
    }
}

/// The Kubernetes operations of a listener.
pub trait Cluster: Send + Sync {
    /// Reads the last decision sequence and session state.
    fn read_state(&self) -> impl Future<Output = Result<StoredState, ClusterError>> + Send;
    /// Writes a decision to the EphemeralRunnerSet's spec.
    fn write_decision(
        &self,
        decision: Decision,
        traceparents: &[String],
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Writes a decision to the EphemeralRunnerSet's spec if it still holds decision
    /// `previous`; false when another was written meanwhile.
    fn write_decision_after(
        &self,
        decision: Decision,
        previous: i64,
    ) -> impl Future<Output = Result<bool, ClusterError>> + Send;
    /// Writes the session state to the EphemeralRunnerSet's status.
    fn write_session_state(
        &self,
        state: &SessionState,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Records the job a runner started on its EphemeralRunner; a runner that is already gone
    /// is not an error.
    fn record_job_started(
        &self,
        runner_name: &str,
        job: &RunnerJob,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Records how a runner's job ended on its EphemeralRunner; a runner already gone is not
    /// an error.
    fn record_job_completed(
        &self,
        runner_name: &str,
        result: &str,
        finished_at: Option<&Time>,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
}

/// The listener's cluster through the Kubernetes API.
#[derive(Clone)]
pub struct KubeCluster {
    sets: Api<EphemeralRunnerSet>,
    runners: Api<EphemeralRunner>,
    name: String,
}

impl KubeCluster {
    /// The EphemeralRunnerSet `name` in `namespace` and its runners.
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            sets: Api::namespaced(client.clone(), namespace),
            runners: Api::namespaced(client, namespace),
            name: name.to_owned(),
        }
    }
}

/// Merge patches, attributed to the listener's field manager.
fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(field_managers::LISTENER.to_owned()),
        ..Default::default()
    }
}

/// Waits before the 2nd, 3rd and 4th attempt to record a job on its runner.
const RECORD_RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
];

impl KubeCluster {
    /// Records a job on its runner, retrying briefly on errors that pass (a conflict, a server
    /// error, a dropped connection): a lost record leaves the runner's status wrong until its Pod
    /// ends, and a later record (the job's end) may depend on it.
    async fn patch_runner(&self, runner_name: &str, patch: serde_json::Value) -> Result<(), ClusterError> {
        let mut waits = RECORD_RETRIES.iter();
        loop {
            match self
                .runners
                .patch_status(runner_name, &params(), &Patch::Merge(patch.clone()))
                .await
            {
                Ok(_) => return Ok(()),
                // The runner may already be gone (finished, or never ours); nothing to record.
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
                Err(source) => match waits.next() {
                    Some(wait) if passes(&source) => tokio::time::sleep(*wait).await,
                    _ => {
                        return Err(ClusterError {
                            action: "record job",
                            source,
                        });
                    }
                },
            }
        }
    }
}

/// Whether trying the same write again can succeed.
fn passes(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => status.code == 409 || status.code == 429 || status.code >= 500,
        kube::Error::Service(_) | kube::Error::HyperError(_) => true,
        _ => false,
    }
}

impl Cluster for KubeCluster {
    async fn read_state(&self) -> Result<StoredState, ClusterError> {
        let set = self.sets.get(&self.name).await.map_err(|source| ClusterError {
            action: "read",
            source,
        })?;
        let listener = set.status.and_then(|s| s.listener).unwrap_or_default();
        Ok(StoredState {
            last_sequence: set.spec.patch_sequence,
            replicas: set.spec.replicas,
            beyond_max: set.spec.beyond_max,
            job_ends: set.spec.job_ends,
            job_ends_through: set.spec.job_ends_through,
            session: SessionState {
                ready: false,
                last_successful_poll: listener.last_successful_poll_time,
                session_restarts: listener.session_restarts,
                last_message_id: listener.last_message_id,
                session_id: listener.session_id,
            },
        })
    }

    async fn write_decision(&self, decision: Decision, traceparents: &[String]) -> Result<(), ClusterError> {
        self.sets
            .patch(
                &self.name,
                &params(),
                &Patch::Merge(patches::decision(decision, traceparents)),
            )
            .await
            .map(drop)
            .map_err(|source| ClusterError {
                action: "write decision",
                source,
            })
    }

    async fn write_decision_after(&self, decision: Decision, previous: i64) -> Result<bool, ClusterError> {
        let patch: json_patch::Patch =
            serde_json::from_value(patches::decision_after(decision, previous)).expect("a valid JSON patch");
        match self
            .sets
            .patch(&self.name, &params(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => Ok(true),
            // The test failed: another decision is there.
            Err(kube::Error::Api(status)) if status.code == 422 || status.code == 409 => Ok(false),
            Err(source) => Err(ClusterError {
                action: "write decision",
                source,
            }),
        }
    }

    async fn write_session_state(&self, state: &SessionState) -> Result<(), ClusterError> {
        self.sets
            .patch_status(
                &self.name,
                &params(),
                &Patch::Merge(patches::session_state(state)),
            )
            .await
            .map(drop)
            .map_err(|source| ClusterError {
                action: "write session state",
                source,
            })
    }

    async fn record_job_started(&self, runner_name: &str, job: &RunnerJob) -> Result<(), ClusterError> {
        self.patch_runner(runner_name, patches::job_started(job)).await
    }

    async fn record_job_completed(
        &self,
        runner_name: &str,
        result: &str,
        finished_at: Option<&Time>,
    ) -> Result<(), ClusterError> {
        self.patch_runner(runner_name, patches::job_completed(result, finished_at))
            .await
    }
}
