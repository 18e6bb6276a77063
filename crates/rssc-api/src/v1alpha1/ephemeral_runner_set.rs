//! `EphemeralRunnerSet`: the listener's replica decisions, turned into runners by the
//! controller.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    common::{PodTemplate, RunnerConfig},
    runner_set::ListenerStatus,
};

/// A RunnerSet's runners. The listener writes its decision (`replicas`, `beyondMax`,
/// `patchSequence`, `jobEnds`, `jobEndsThrough`); the controller writes the rest and creates
/// or removes EphemeralRunners to match, never removing a busy one.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scaleset.actions.github.com",
    version = "v1alpha1",
    kind = "EphemeralRunnerSet",
    namespaced,
    status = "EphemeralRunnerSetStatus",
    shortname = "ers",
    category = "github",
    category = "scaleset",
    doc = "The runners of one RunnerSet and the listener's latest replica decision.",
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentRunners"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pendingRunners"}"#,
    printcolumn = r#"{"name":"Idle","type":"integer","jsonPath":".status.idleRunners"}"#,
    printcolumn = r#"{"name":"Busy","type":"integer","jsonPath":".status.busyRunners"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failedRunners"}"#,
    printcolumn = r#"{"name":"Patch","type":"integer","priority":1,"jsonPath":".spec.patchSequence"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 50")
        .message("EphemeralRunnerSet names are at most 50 characters: runners are named <name>-runner-<5 characters>, which must fit 63")
)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerSetSpec {
    /// Runners wanted, as last decided by the listener.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Runners the listener's count left out of `replicas` because of `maxRunners`: while
    /// jobs wait beyond the maximum, a runner that finished is replaced even before the
    /// listener counts its job's end.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub beyond_max: i32,
    /// Increases with every listener decision, so the controller can tell a new decision from
    /// one it already acted on (it records the sequence on the runners it creates).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub patch_sequence: i64,
    /// Ends of jobs that ran on the set's runners, as the listener has counted them so far (a
    /// running sum). The controller pairs them with the runners it saw finish, so it does not
    /// make a finished runner again for a decision whose statistics still count its job.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub job_ends: i64,
    /// The last message whose job ends `jobEnds` counts. GitHub delivers a message again
    /// until it is acknowledged, and the listener acknowledges after writing its decision: a
    /// listener restarted in between reads this back and does not count the message's ends
    /// a second time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_ends_through: Option<MessageMark>,
    /// The most runners that may exist at once, finishing ones included (the AutoscaleSet's
    /// `maxRunners`, copied by the controller). Absent, no more than `replicas`: new runners
    /// then wait for finishing ones to go even below the maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_runners: Option<i32>,
    /// Pod template of new runners, resolved by the controller.
    pub runner_template: PodTemplate,
    /// Registration settings of new runners.
    pub runner_config: RunnerConfig,
}

impl EphemeralRunnerSetSpec {
    /// The spec fields the listener writes, its decision; the controller never writes them.
    pub const LISTENER_FIELDS: [&'static str; 5] = [
        "replicas",
        "beyondMax",
        "patchSequence",
        "jobEnds",
        "jobEndsThrough",
    ];
}

/// One message of a scale set's message queue.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageMark {
    /// The scale set's ID on GitHub (message IDs mean nothing for another scale set).
    pub scale_set_id: i64,
    /// The message's ID; GitHub numbers a scale set's messages in increasing order.
    pub message_id: i64,
}

/// Observed state of an EphemeralRunnerSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerSetStatus {
    /// All runners that exist now, including failed ones.
    #[serde(default)]
    pub current_runners: i32,
    /// Runners whose Pod is not running yet.
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
    /// Pending runners whose Pod a ResourceQuota refused (retried with backoff).
    #[serde(default)]
    pub quota_blocked_runners: i32,
    /// Runners being deleted.
    #[serde(default)]
    pub deleting_runners: i32,
    /// The `patchSequence` the controller last acted on.
    #[serde(default)]
    pub observed_patch_sequence: i64,
    /// Written by the listener: its session state and message cursor, kept here so a restarted
    /// listener resumes where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerStatus>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
