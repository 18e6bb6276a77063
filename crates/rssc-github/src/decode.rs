//! Body decoding: BOM stripping, JSON with truncation detection, JWT expiry, and the message
//! envelope with its JSON-in-a-string job batch (pure, no I/O).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::types::Statistics;

/// Removes a leading UTF-8 byte order mark.
pub fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body ended early (a truncated response): worth retrying.
    Truncated(String),
    /// The body is not what we expect.
    Malformed(String),
}

/// Decodes JSON after stripping a BOM, telling a truncated body from a malformed one.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let body = strip_bom(body);
    serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            DecodeError::Truncated(format!("body ended early after {} bytes", body.len()))
        } else {
            DecodeError::Malformed(without_string_values(&e.to_string()))
        }
    })
}

/// Drops double-quoted string values from a serde message (they could be tokens), keeping field
/// names, types and positions.
fn without_string_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_quotes = false;
    for c in msg.chars() {
        match (c, in_quotes) {
            ('"', false) => {
                in_quotes = true;
                out.push_str("\"…\"");
            }
            ('"', true) => in_quotes = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// Reads the `exp` claim of a JWT without verifying it.
pub fn jwt_expiry(token: &str) -> Option<SystemTime> {
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<serde_json::Number>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.exp?.as_f64()?;
    if !(0.0..1e12).contains(&exp) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs_f64(exp))
}

/// Parses an RFC 3339 timestamp such as `2016-07-11T22:14:10Z` (fractions are truncated to
/// whole seconds).
pub fn rfc3339(s: &str) -> Option<SystemTime> {
    let parsed = chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?;
    let secs = u64::try_from(parsed.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The envelope `messageType` carrying job messages.
pub const JOB_MESSAGES_TYPE: &str = "RunnerScaleSetJobMessages";

/// Fields every job message has (`JobMessageBase`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    /// The job request id used to acquire it.
    pub runner_request_id: i64,
    /// Repository name.
    #[serde(default)]
    pub repository_name: String,
    /// Repository owner.
    #[serde(default)]
    pub owner_name: String,
    /// Job id.
    #[serde(default)]
    pub job_id: String,
    /// Workflow ref.
    #[serde(default)]
    pub job_workflow_ref: String,
    /// Display name.
    #[serde(default)]
    pub job_display_name: String,
    /// Workflow run id.
    #[serde(default)]
    pub workflow_run_id: i64,
    /// Triggering event.
    #[serde(default)]
    pub event_name: String,
    /// Requested labels.
    #[serde(default)]
    pub request_labels: Vec<String>,
    /// When queued (RFC 3339).
    #[serde(default)]
    pub queue_time: Option<String>,
    /// When assigned to the scale set (RFC 3339).
    #[serde(default)]
    pub scale_set_assign_time: Option<String>,
    /// When assigned to a runner (RFC 3339).
    #[serde(default)]
    pub runner_assign_time: Option<String>,
    /// When finished (RFC 3339).
    #[serde(default)]
    pub finish_time: Option<String>,
}

/// One decoded job message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobMessage {
    /// A job is offered; acquire it by `runner_request_id`.
    Available {
        /// Common fields.
        job: JobInfo,
        /// The acquire URL the service sent.
        acquire_job_url: String,
    },
    /// A job is assigned to this scale set.
    Assigned {
        /// Common fields.
        job: JobInfo,
    },
    /// A runner started the job.
    Started {
        /// Common fields.
        job: JobInfo,
        /// Runner id.
        runner_id: i64,
        /// Runner name.
        runner_name: String,
    },
    /// The job finished (or was un-assigned: `result` = `canceled`).
    Completed {
        /// Common fields.
        job: JobInfo,
        /// `succeeded`, `failed`, `canceled`, ...
        result: String,
        /// Runner id (0 if none ran it).
        runner_id: i64,
        /// Runner name.
        runner_name: String,
    },
}

impl JobMessage {
    /// The common fields.
    pub fn job(&self) -> &JobInfo {
        match self {
            JobMessage::Available { job, .. }
            | JobMessage::Assigned { job }
            | JobMessage::Started { job, .. }
            | JobMessage::Completed { job, .. } => job,
        }
    }
}

/// A decoded long-poll message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSetMessage {
    /// Message id; pass as `lastMessageId` next time and ack with it.
    pub message_id: i64,
    /// The envelope type (normally `RunnerScaleSetJobMessages`).
    pub message_type: String,
    /// Current statistics.
    pub statistics: Statistics,
    /// Job messages in order; unknown types are dropped.
    pub jobs: Vec<JobMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    message_id: i64,
    #[serde(default)]
    message_type: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJob {
    #[serde(default)]
    message_type: String,
    #[serde(flatten)]
    job: JobInfo,
    #[serde(default)]
    acquire_job_url: String,
    #[serde(default)]
    runner_id: i64,
    #[serde(default)]
    runner_name: String,
    #[serde(default)]
    result: String,
}

/// Decodes a 200 long-poll body.
pub fn message(body: &[u8]) -> Result<ScaleSetMessage, DecodeError> {
    let env: RawEnvelope = json(body)?;
    let statistics = env.statistics.unwrap_or_default();
    if env.message_type != JOB_MESSAGES_TYPE {
        tracing::warn!(message_id = env.message_id, message_type = %env.message_type, "ignoring message of unknown type");
        return Ok(ScaleSetMessage {
            message_id: env.message_id,
            message_type: env.message_type,
            statistics,
            jobs: vec![],
        });
    }
    let jobs = match env.body.as_deref().map(str::trim) {
        None | Some("") => vec![],
        Some(batch) => job_batch(batch.as_bytes())?,
    };
    Ok(ScaleSetMessage {
        message_id: env.message_id,
        message_type: env.message_type,
        statistics,
        jobs,
    })
}

/// Decodes the job batch (the string inside `body`).
pub fn job_batch(batch: &[u8]) -> Result<Vec<JobMessage>, DecodeError> {
    let raw: Vec<serde_json::Value> =
        json(batch).map_err(|e| DecodeError::Malformed(format!("job batch: {}", describe(&e))))?;
    let mut out = Vec::with_capacity(raw.len());
    for value in raw {
        let r: RawJob = serde_json::from_value(value).map_err(|e| {
            DecodeError::Malformed(format!("job message: {}", without_string_values(&e.to_string())))
        })?;
        let msg = match r.message_type.as_str() {
            "JobAvailable" => JobMessage::Available {
                job: r.job,
                acquire_job_url: r.acquire_job_url,
            },
            "JobAssigned" => JobMessage::Assigned { job: r.job },
            "JobStarted" => JobMessage::Started {
                job: r.job,
                runner_id: r.runner_id,
                runner_name: r.runner_name,
            },
            "JobCompleted" => JobMessage::Completed {
                job: r.job,
                result: r.result,
                runner_id: r.runner_id,
                runner_name: r.runner_name,
            },
            other => {
                tracing::info!(
                    message_type = other,
                    runner_request_id = r.job.runner_request_id,
                    "skipping job message of unknown type"
                );
                continue;
            }
        };
        out.push(msg);
    }
    Ok(out)
}

fn describe(e: &DecodeError) -> &str {
    match e {
        DecodeError::Truncated(s) | DecodeError::Malformed(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(
            rfc3339("1970-01-02T00:00:01Z"),
            Some(UNIX_EPOCH + Duration::from_secs(86_401))
        );
        assert_eq!(
            rfc3339("2016-07-11T22:14:10Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_468_275_250))
        );
        assert_eq!(
            rfc3339("2016-07-11T22:14:10.123+01:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_468_271_650))
        );
        assert_eq!(rfc3339("yesterday"), None);
    }

    #[test]
    fn bom_is_stripped() {
        assert_eq!(strip_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(strip_bom(b"{}"), b"{}");
        let v: serde_json::Value = json(b"\xEF\xBB\xBF{\"a\":1}").unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn decode_errors_hide_string_values() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            n: i64,
        }
        let DecodeError::Malformed(m) = json::<T>(br#"{"n": "ghs_secret"}"#).unwrap_err() else {
            panic!()
        };
        assert!(!m.contains("ghs_secret"), "{m}");
        assert!(m.contains("invalid type"), "{m}");
        let DecodeError::Malformed(m) = json::<T>(br#"{}"#).unwrap_err() else {
            panic!()
        };
        assert!(m.contains("`n`"), "{m}");
    }

    #[test]
    fn truncation_is_distinguished() {
        assert!(matches!(
            json::<serde_json::Value>(b"{\"a\": [1, 2"),
            Err(DecodeError::Truncated(_))
        ));
        assert!(matches!(
            json::<serde_json::Value>(b"{\"a\" 1}"),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn jwt_exp_is_read_unverified() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let t = format!(
            "{}.{}.sig",
            b64("{\"alg\":\"HS256\"}"),
            b64("{\"exp\":1700000000}")
        );
        assert_eq!(
            jwt_expiry(&t),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        let t = format!("{}.{}.sig", b64("{}"), b64("{\"sub\":\"x\"}"));
        assert_eq!(jwt_expiry(&t), None);
    }

    #[test]
    fn message_with_batch_and_unknown_types() {
        let batch = r#"[{"messageType":"JobAvailable","runnerRequestId":7,"acquireJobUrl":"u","requestLabels":["a"]},
            {"messageType":"SomethingNew","runnerRequestId":8},
            {"messageType":"JobCompleted","runnerRequestId":7,"result":"succeeded","runnerId":3,"runnerName":"r"}]"#;
        let env = serde_json::json!({
            "messageId": 5, "messageType": "RunnerScaleSetJobMessages", "body": batch,
            "statistics": {"totalAssignedJobs": 2}
        });
        let m = message(env.to_string().as_bytes()).unwrap();
        assert_eq!(m.message_id, 5);
        assert_eq!(m.statistics.total_assigned_jobs, 2);
        assert_eq!(m.jobs.len(), 2);
        assert!(matches!(&m.jobs[0], JobMessage::Available { job, .. } if job.runner_request_id == 7));
        assert!(matches!(&m.jobs[1], JobMessage::Completed { result, .. } if result == "succeeded"));
    }

    #[test]
    fn unknown_envelope_type_yields_no_jobs() {
        let m = message(br#"{"messageId":1,"messageType":"Other","body":"x"}"#).unwrap();
        assert!(m.jobs.is_empty());
        assert_eq!(m.message_type, "Other");
    }

    #[test]
    fn bad_batch_is_malformed() {
        let e =
            message(br#"{"messageId":1,"messageType":"RunnerScaleSetJobMessages","body":"[{"}"#).unwrap_err();
        assert!(matches!(e, DecodeError::Malformed(_)));
    }
}
