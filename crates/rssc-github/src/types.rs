//! Wire types of the GitHub REST API and the Actions Service.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// `{count, value}` list wrapper used by the Actions Service.
#[derive(Debug, Clone, Deserialize)]
pub struct ListResponse<T> {
    /// Number of items.
    #[serde(default)]
    pub count: i64,
    /// The items.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
}

/// A runner group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroup {
    /// Group id.
    pub id: i64,
    /// Group name.
    pub name: String,
    /// Number of runners.
    #[serde(default)]
    pub size: i64,
    /// Whether this is the default group.
    #[serde(default)]
    pub is_default_group: bool,
}

/// A scale set label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Label type, `System` by default.
    #[serde(rename = "type", default = "system_label_type")]
    pub label_type: String,
    /// Label name.
    pub name: String,
}

fn system_label_type() -> String {
    "System".to_owned()
}

impl Label {
    /// A `System` label.
    pub fn system(name: impl Into<String>) -> Self {
        Self {
            label_type: system_label_type(),
            name: name.into(),
        }
    }

    /// A `User` label.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            label_type: "User".to_owned(),
            name: name.into(),
        }
    }
}

/// Runner settings of a scale set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSetting {
    /// Whether runners skip self-update.
    #[serde(default)]
    pub disable_update: bool,
}

/// Scale set statistics (`RunnerScaleSetStatistic`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    /// Jobs offered and not yet acquired.
    #[serde(default)]
    pub total_available_jobs: i64,
    /// Jobs acquired by the scale set.
    #[serde(default)]
    pub total_acquired_jobs: i64,
    /// Jobs assigned to the scale set (scale on this).
    #[serde(default)]
    pub total_assigned_jobs: i64,
    /// Jobs running on a runner.
    #[serde(default)]
    pub total_running_jobs: i64,
    /// Registered runners.
    #[serde(default)]
    pub total_registered_runners: i64,
    /// Runners running a job.
    #[serde(default)]
    pub total_busy_runners: i64,
    /// Runners without a job.
    #[serde(default)]
    pub total_idle_runners: i64,
}

/// A runner scale set as the service returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSet {
    /// Scale set id.
    pub id: i64,
    /// Scale set name.
    pub name: String,
    /// Runner group id.
    #[serde(default)]
    pub runner_group_id: i64,
    /// Runner group name.
    #[serde(default)]
    pub runner_group_name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Runner settings (capitalised key on the wire).
    #[serde(rename = "RunnerSetting", default)]
    pub runner_setting: RunnerSetting,
    /// Creation time.
    #[serde(default)]
    pub created_on: Option<String>,
    /// JIT config URL.
    #[serde(default)]
    pub runner_jit_config_url: Option<String>,
    /// Statistics, when included.
    #[serde(default)]
    pub statistics: Option<Statistics>,
}

/// What to create: a scale set with a name, group and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScaleSet {
    /// Scale set name (also its first label).
    pub name: String,
    /// Runner group id (1 is the default group).
    pub runner_group_id: i64,
    /// Extra labels beyond the name.
    pub labels: Vec<Label>,
    /// Whether runners skip self-update.
    pub disable_update: bool,
}

/// The create request body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateScaleSetBody<'a> {
    pub name: &'a str,
    pub runner_group_id: i64,
    pub labels: Vec<Label>,
    #[serde(rename = "RunnerSetting")]
    pub runner_setting: RunnerSetting,
}

impl NewScaleSet {
    /// The labels sent: the name first (a `System` label), then the extra labels,
    /// de-duplicated by name.
    pub fn wire_labels(&self) -> Vec<Label> {
        wire_labels(&self.name, &self.labels)
    }

    pub(crate) fn body(&self) -> CreateScaleSetBody<'_> {
        CreateScaleSetBody {
            name: &self.name,
            runner_group_id: self.runner_group_id,
            labels: self.wire_labels(),
            runner_setting: RunnerSetting {
                disable_update: self.disable_update,
            },
        }
    }
}

/// The labels of a scale set named `name` with `extra` labels: the name first, then the extra
/// labels, de-duplicated by name, blank names dropped.
pub fn wire_labels(name: &str, extra: &[Label]) -> Vec<Label> {
    let mut out: Vec<Label> = Vec::new();
    for label in std::iter::once(Label::system(name)).chain(extra.iter().cloned()) {
        let trimmed = label.name.trim();
        if !trimmed.is_empty() && !out.iter().any(|l| l.name == trimmed) {
            out.push(Label {
                label_type: label.label_type,
                name: trimmed.to_owned(),
            });
        }
    }
    out
}

/// A partial update: only the fields set are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetUpdate {
    /// New name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New runner group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_group_id: Option<i64>,
    /// New labels (GitHub may keep the labels it has; compare the answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
}

/// A message session (`RunnerScaleSetSession`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetSession {
    /// Session id (UUID).
    pub session_id: String,
    /// Owner (listener host name).
    #[serde(default)]
    pub owner_name: String,
    /// The scale set.
    #[serde(default)]
    pub runner_scale_set: Option<RunnerScaleSet>,
    /// Opaque long-poll URL.
    pub message_queue_url: String,
    /// Token for the message queue and `acquirejobs`.
    pub message_queue_access_token: Secret<String>,
    /// Statistics at session creation.
    #[serde(default)]
    pub statistics: Option<Statistics>,
}

/// A runner reference (`{id, name, runnerScaleSetId}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerReference {
    /// Runner id.
    pub id: i64,
    /// Runner name.
    pub name: String,
    /// Scale set id.
    #[serde(default)]
    pub runner_scale_set_id: i64,
}

/// A generated JIT config.
#[derive(Debug, Clone, Deserialize)]
pub struct JitConfig {
    /// The registered runner.
    pub runner: RunnerReference,
    /// The runner's only credential.
    #[serde(rename = "encodedJITConfig")]
    pub encoded_jit_config: Secret<String>,
}

/// JIT request body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JitRequest<'a> {
    pub name: &'a str,
    pub work_folder: &'a str,
}

/// A job from the legacy `acquirablejobs` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquirableJob {
    /// Acquire URL.
    #[serde(default)]
    pub acquire_job_url: String,
    /// Message type.
    #[serde(default)]
    pub message_type: String,
    /// Runner request id.
    pub runner_request_id: i64,
    /// Repository name.
    #[serde(default)]
    pub repository_name: String,
    /// Owner name.
    #[serde(default)]
    pub owner_name: String,
    /// Workflow ref.
    #[serde(default)]
    pub job_workflow_ref: String,
    /// Event name.
    #[serde(default)]
    pub event_name: String,
    /// Requested labels.
    #[serde(default)]
    pub request_labels: Vec<String>,
}

/// A token with expiry from api.github.com.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ExpiringToken {
    pub token: Secret<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// The Actions Service admin connection response.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AdminConnectionResponse {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub token: Secret<String>,
}

/// The runner-registration request body.
#[derive(Debug, Serialize)]
pub(crate) struct RunnerRegistrationBody<'a> {
    pub url: &'a str,
    pub runner_event: &'a str,
}

/// The session create body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateSessionBody<'a> {
    pub owner_name: &'a str,
}
