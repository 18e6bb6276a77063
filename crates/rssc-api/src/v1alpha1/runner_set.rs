//! `RunnerSet`: the runtime of one AutoscaleSet (its listener and its runners).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ListenerTemplate, NamespacedRef, RunnerPodTemplate, conditions_schema};

/// Binds one AutoscaleSet and runs it: the listener that polls GitHub and the runners it asks
/// for. At most one RunnerSet binds a given AutoscaleSet, because GitHub allows one message
/// session per scale set.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scaleset.actions.github.com",
    version = "v1alpha1",
    kind = "RunnerSet",
    namespaced,
    status = "RunnerSetStatus",
    shortname = "rns",
    category = "github",
    category = "scaleset",
    doc = "Runs one AutoscaleSet: its listener and its ephemeral runners.",
    printcolumn = r#"{"name":"AutoscaleSet","type":"string","jsonPath":".spec.autoscaleSetRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Listener","type":"boolean","jsonPath":".status.listener.ready"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredRunners"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentRunners"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pendingRunners"}"#,
    printcolumn = r#"{"name":"Idle","type":"integer","jsonPath":".status.idleRunners"}"#,
    printcolumn = r#"{"name":"Busy","type":"integer","jsonPath":".status.busyRunners"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failedRunners"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Last Poll","type":"date","priority":1,"jsonPath":".status.listener.lastSuccessfulPollTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    selectable = ".spec.autoscaleSetRef.name",
    validation = Rule::new("self.metadata.name.size() <= 50")
        .message("RunnerSet names are at most 50 characters: runners are named <runnerset>-runner-<5 characters>, which must fit 63"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("RunnerSet names must be DNS labels (lower-case letters, digits and '-'): they name the listener and the runner Pods")
)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSetSpec {
    /// The AutoscaleSet this RunnerSet runs; its namespace defaults to the RunnerSet's.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "autoscaleSetRef is immutable: create a new RunnerSet to run another AutoscaleSet"
    }]))]
    pub autoscale_set_ref: NamespacedRef,
    /// If set, must equal the AutoscaleSet's `runnerGroup`; a mismatch is reported in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub runner_group: Option<String>,
    /// Merged over the AutoscaleSet's `runnerTemplate`: maps by key, lists by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_template: Option<RunnerPodTemplate>,
    /// Overrides for the listener Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_template: Option<ListenerTemplate>,
}

/// Observed state of a RunnerSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSetStatus {
    /// All runners that exist now.
    #[serde(default)]
    pub current_runners: i32,
    /// Runners not yet registered or whose Pod is not running yet.
    #[serde(default)]
    pub pending_runners: i32,
    /// Running runners without a job.
    #[serde(default)]
    pub idle_runners: i32,
    /// Runners with a job.
    #[serde(default)]
    pub busy_runners: i32,
    /// Runners that failed and wait for a retry or removal.
    #[serde(default)]
    pub failed_runners: i32,
    /// Runners the listener asks for.
    #[serde(default)]
    pub desired_runners: i32,
    /// Pending runners whose Pod a ResourceQuota refused (retried with backoff).
    #[serde(default)]
    pub quota_blocked_runners: i32,
    /// State of the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerStatus>,
    /// `Ready`, `ListenerReady` and `PodAdmitted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the listener reports about its message session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener has a session and polled recently.
    #[serde(default)]
    pub ready: bool,
    /// When the last long poll completed without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_poll_time: Option<Time>,
    /// How often the message session had to be created again (evictions, conflicts, restarts).
    #[serde(default)]
    pub session_restarts: i32,
    /// Last message acknowledged; a restarted listener resumes after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_id: Option<i64>,
    /// ID of the open message session, so a restarted listener can close a session its
    /// predecessor left behind instead of waiting out a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub session_id: Option<String>,
}
