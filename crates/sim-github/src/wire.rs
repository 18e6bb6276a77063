//! The fake's own wire types, written from the protocol reference (never the client's types).

use serde::{Deserialize, Serialize};

/// `{count, value}` list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List<T> {
    /// Item count.
    pub count: usize,
    /// Items.
    pub value: Vec<T>,
}

impl<T> List<T> {
    /// Wraps items.
    pub fn of(value: Vec<T>) -> Self {
        Self {
            count: value.len(),
            value,
        }
    }
}

/// Error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Exception type name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    /// Message.
    pub message: String,
}

/// Token with expiry (installation and registration tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The token.
    pub token: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
}

/// Runner-registration request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationRequest {
    /// The config URL.
    pub url: String,
    /// Must be `register`.
    pub runner_event: String,
}

/// Runner-registration response (the Actions Service admin connection).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationResponse {
    /// Actions Service base URL.
    pub url: String,
    /// Admin JWT.
    pub token: String,
    /// Token schema.
    pub token_schema: String,
}

/// Runner group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroupJson {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Runner count.
    pub size: i64,
    /// Default group.
    pub is_default_group: bool,
}

/// Label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelJson {
    /// Type.
    #[serde(rename = "type", default)]
    pub label_type: Option<String>,
    /// Name.
    pub name: String,
}

/// Runner settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSettingJson {
    /// Disable update.
    #[serde(default)]
    pub disable_update: bool,
}

/// Statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatisticsJson {
    /// Offered, not acquired.
    pub total_available_jobs: i64,
    /// Acquired, not yet assigned.
    pub total_acquired_jobs: i64,
    /// Assigned (including running).
    pub total_assigned_jobs: i64,
    /// Running.
    pub total_running_jobs: i64,
    /// Registered runners.
    pub total_registered_runners: i64,
    /// Busy runners.
    pub total_busy_runners: i64,
    /// Idle runners.
    pub total_idle_runners: i64,
}

/// Scale set as served.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetJson {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Group id.
    pub runner_group_id: i64,
    /// Group name.
    pub runner_group_name: String,
    /// Labels.
    pub labels: Vec<LabelJson>,
    /// Settings, capitalised on the wire.
    #[serde(rename = "RunnerSetting")]
    pub runner_setting: RunnerSettingJson,
    /// Creation time.
    pub created_on: String,
    /// JIT URL.
    pub runner_jit_config_url: String,
    /// Statistics.
    pub statistics: StatisticsJson,
}

/// Scale set create/update request (all optional so partial updates parse).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetRequest {
    /// Id (ignored).
    #[serde(default)]
    pub id: Option<i64>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Group id.
    #[serde(default)]
    pub runner_group_id: Option<i64>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<Vec<LabelJson>>,
    /// Settings.
    #[serde(rename = "RunnerSetting", default)]
    pub runner_setting: Option<RunnerSettingJson>,
}

/// Session create request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    /// Owner.
    pub owner_name: String,
}

/// Session as served.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionJson {
    /// Id.
    pub session_id: String,
    /// Owner.
    pub owner_name: String,
    /// Scale set.
    pub runner_scale_set: ScaleSetJson,
    /// Queue URL.
    pub message_queue_url: String,
    /// Queue token.
    pub message_queue_access_token: String,
    /// Statistics.
    pub statistics: StatisticsJson,
}

/// Message envelope.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson {
    /// Id.
    pub message_id: i64,
    /// Type.
    pub message_type: String,
    /// JSON-encoded array of job messages.
    pub body: String,
    /// Statistics.
    pub statistics: StatisticsJson,
}

/// One job message inside a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessageJson {
    /// `JobAvailable`, `JobAssigned`, `JobStarted`, `JobCompleted`.
    pub message_type: String,
    /// Request id.
    pub runner_request_id: i64,
    /// Repository.
    pub repository_name: String,
    /// Owner.
    pub owner_name: String,
    /// Job id.
    pub job_id: String,
    /// Workflow ref.
    pub job_workflow_ref: String,
    /// Display name.
    pub job_display_name: String,
    /// Run id.
    pub workflow_run_id: i64,
    /// Event.
    pub event_name: String,
    /// Labels.
    pub request_labels: Vec<String>,
    /// Queue time.
    pub queue_time: String,
    /// Scale set assign time.
    pub scale_set_assign_time: String,
    /// Runner assign time.
    pub runner_assign_time: String,
    /// Finish time.
    pub finish_time: String,
    /// `JobAvailable` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquire_job_url: Option<String>,
    /// `JobStarted`/`JobCompleted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_id: Option<i64>,
    /// `JobStarted`/`JobCompleted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_name: Option<String>,
    /// `JobCompleted` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// Acquirable job (legacy endpoint).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquirableJobJson {
    /// Acquire URL.
    pub acquire_job_url: String,
    /// Type.
    pub message_type: String,
    /// Request id.
    pub runner_request_id: i64,
    /// Repository.
    pub repository_name: String,
    /// Owner.
    pub owner_name: String,
    /// Workflow ref.
    pub job_workflow_ref: String,
    /// Event.
    pub event_name: String,
    /// Labels.
    pub request_labels: Vec<String>,
}

/// JIT request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitRequestJson {
    /// Runner name.
    pub name: String,
    /// Work folder.
    #[serde(default)]
    pub work_folder: Option<String>,
}

/// Runner reference.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerJson {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Scale set.
    pub runner_scale_set_id: i64,
}

/// JIT response.
#[derive(Debug, Clone, Serialize)]
pub struct JitResponseJson {
    /// Runner.
    pub runner: RunnerJson,
    /// Encoded config.
    #[serde(rename = "encodedJITConfig")]
    pub encoded_jit_config: String,
}
