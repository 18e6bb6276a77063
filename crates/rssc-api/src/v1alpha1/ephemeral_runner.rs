//! `EphemeralRunner`: one just-in-time runner, its JIT Secret and its Pod.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{PodTemplate, RunnerConfig, conditions_schema};

/// One ephemeral runner: registered with GitHub just in time, runs at most one job, then goes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scaleset.actions.github.com",
    version = "v1alpha1",
    kind = "EphemeralRunner",
    namespaced,
    status = "EphemeralRunnerStatus",
    shortname = "er",
    category = "github",
    category = "scaleset",
    doc = "One just-in-time GitHub Actions runner and its Pod.",
    printcolumn = r#"{"name":"Runner ID","type":"integer","jsonPath":".status.runnerId"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".status.job.repository"}"#,
    printcolumn = r#"{"name":"Job","type":"string","priority":1,"jsonPath":".status.job.displayName"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    selectable = ".status.phase",
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("EphemeralRunner names are at most 63 characters: the name is also the Pod's, a label value and the runner's name on GitHub")
)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerSpec {
    /// Pod template of this runner, fixed at creation.
    pub runner_template: PodTemplate,
    /// Registration settings.
    pub runner_config: RunnerConfig,
}

/// Observed state of an EphemeralRunner.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerStatus {
    /// Where the runner is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<EphemeralRunnerPhase>,
    /// Machine-readable reason for the phase, e.g. `PodFailed` or `JitConfigFailed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub reason: Option<String>,
    /// What a person should know about the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// Runner ID on GitHub, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_id: Option<i64>,
    /// Runner name on GitHub (the EphemeralRunner's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_name: Option<String>,
    /// Pod failures so far, oldest first; a runner is retried a bounded number of times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<RunnerFailure>,
    /// The job this runner runs, once GitHub reports it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<RunnerJob>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl EphemeralRunnerStatus {
    /// A runner with a job must not be removed until the job ends.
    pub fn is_busy(&self) -> bool {
        self.job.is_some() && !matches!(self.phase, Some(EphemeralRunnerPhase::Succeeded))
    }
}

/// Lifecycle phase of an EphemeralRunner.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EphemeralRunnerPhase {
    /// Registering with GitHub or waiting for the Pod to run.
    Pending,
    /// The runner process runs (idle or busy, see `job`).
    Running,
    /// The runner finished its job and exited cleanly.
    Succeeded,
    /// The runner failed; see `reason` and `failures`.
    Failed,
}

/// One failed attempt of a runner Pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerFailure {
    /// UID of the Pod that failed.
    #[serde(rename = "podUID")]
    pub pod_uid: String,
    /// When the failure was seen.
    pub time: Time,
    /// Short reason, e.g. `OOMKilled`, `Evicted` or `ImagePullBackOff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub reason: Option<String>,
    /// Exit code of the runner container, if it terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// The job a runner runs, as reported by GitHub's `JobStarted` message.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerJob {
    /// GitHub's runner request ID of the job.
    pub request_id: i64,
    /// GitHub's job ID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job_id: String,
    /// `owner/repository`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// Workflow reference, e.g. `owner/repo/.github/workflows/ci.yml@refs/heads/main`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow_ref: String,
    /// The job's display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// ID of the workflow run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_run_id: Option<i64>,
    /// When the runner took the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// How the job ended (`succeeded`, `failed`, `canceled`), once GitHub reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub result: Option<String>,
    /// When the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}
