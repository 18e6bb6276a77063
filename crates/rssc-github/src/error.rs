//! Typed errors and the mapping from HTTP responses to them (pure, no I/O).

use std::time::Duration;

use serde::Deserialize;

/// Everything a client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The `githubConfigUrl` cannot be used.
    #[error("invalid GitHub config URL {url:?}: {reason}")]
    InvalidConfigUrl {
        /// The URL as given.
        url: String,
        /// What is wrong and what a valid URL looks like.
        reason: String,
    },
    /// Credentials or client options are unusable (bad key, bad PEM, bad proxy URL).
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// The resource does not exist.
    #[error("not found: {message}")]
    NotFound {
        /// The server's exception type, if it sent one.
        type_name: Option<String>,
        /// What was not found.
        message: String,
    },
    /// The scale set already has an active session (409).
    #[error("session conflict: {message}")]
    SessionConflict {
        /// The server's message.
        message: String,
    },
    /// Credentials were rejected or have expired (401/403).
    #[error("unauthorized ({status}): {message}")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// A session refresh found no session: it was evicted server-side and must be recreated.
    #[error("session not found on refresh: {message}")]
    SessionNotFound {
        /// The server's message.
        message: String,
    },
    /// A runner with this name already exists (`AgentExistsException`).
    #[error("runner already exists: {message}")]
    RunnerExists {
        /// The server's message.
        message: String,
    },
    /// The runner does not exist (`AgentNotFoundException`).
    #[error("runner not found: {message}")]
    RunnerNotFound {
        /// The server's message.
        message: String,
    },
    /// The runner still runs a job and cannot be removed (`JobStillRunningException`).
    #[error("job still running: {message}")]
    JobStillRunning {
        /// The server's message.
        message: String,
    },
    /// Rate limited (429, or 403 with an exhausted rate limit) and retries ran out.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// How long the server asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer, after retries.
    #[error("server error ({status}): {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// Any other unexpected HTTP status.
    #[error("unexpected HTTP status {status}: {message}")]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// The server's exception type, if any.
        type_name: Option<String>,
        /// The server's message.
        message: String,
    },
    /// A response body that cannot be decoded or is missing required fields.
    #[error("malformed response from {endpoint}: {reason}")]
    Malformed {
        /// The endpoint label.
        endpoint: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The connection failed (refused, reset, truncated body), after retries.
    #[error("connection error: {0}")]
    Connection(String),
    /// The request timed out, after retries.
    #[error("request timed out")]
    Timeout,
}

impl Error {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidConfigUrl { .. } => "invalid_config",
            Error::InvalidConfig(_) => "invalid_config",
            Error::NotFound { .. } => "not_found",
            Error::SessionConflict { .. } => "session_conflict",
            Error::Unauthorized { .. } => "unauthorized",
            Error::SessionNotFound { .. } => "session_not_found",
            Error::RunnerExists { .. } => "runner_exists",
            Error::RunnerNotFound { .. } => "runner_not_found",
            Error::JobStillRunning { .. } => "job_still_running",
            Error::RateLimited { .. } => "rate_limited",
            Error::Server { .. } => "server_error",
            Error::UnexpectedStatus { .. } => "unexpected_status",
            Error::Malformed { .. } => "malformed_response",
            Error::Connection(_) => "connection",
            Error::Timeout => "timeout",
        }
    }

    /// Whether this is a 401/403.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }
}

/// The server's JSON error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "typeName", default)]
    type_name: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

const MAX_MESSAGE: usize = 512;

/// Extracts `(typeName, message)` from an error body (JSON or plain text), bounded in length.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    let body = crate::decode::strip_bom(body);
    if let Ok(b) = serde_json::from_slice::<ErrorBody>(body)
        && (b.type_name.is_some() || b.message.is_some())
    {
        return (b.type_name, truncate(b.message.unwrap_or_default()));
    }
    (None, truncate(String::from_utf8_lossy(body).trim().to_owned()))
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Maps a non-success response to an error. `retry_after` is what the headers said.
pub fn map_status(status: u16, body: &[u8], retry_after: Option<Duration>) -> Error {
    let (type_name, message) = parse_error_body(body);
    let tn = type_name.as_deref().unwrap_or("");
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        message
    };
    if tn.contains("AgentExistsException") {
        return Error::RunnerExists { message };
    }
    if tn.contains("AgentNotFoundException") {
        return Error::RunnerNotFound { message };
    }
    if tn.contains("JobStillRunningException") {
        return Error::JobStillRunning { message };
    }
    if tn.contains("RunnerScaleSetSessionConflictException") || status == 409 && tn.contains("Session") {
        return Error::SessionConflict { message };
    }
    match status {
        401 => Error::Unauthorized { status, message },
        403 if retry_after.is_some() => Error::RateLimited { retry_after },
        403 => Error::Unauthorized { status, message },
        404 => Error::NotFound { type_name, message },
        409 if message.contains("active session") => Error::SessionConflict { message },
        429 => Error::RateLimited { retry_after },
        500..=599 => Error::Server { status, message },
        _ => Error::UnexpectedStatus {
            status,
            type_name,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_exception_type_names() {
        let body = br#"{"typeName":"GitHub.DistributedTask.WebApi.AgentExistsException, GitHub.DistributedTask.WebApi","message":"exists"}"#;
        assert!(matches!(map_status(409, body, None), Error::RunnerExists { .. }));
        let body = br#"{"typeName":"AgentNotFoundException","message":"nope"}"#;
        assert!(matches!(
            map_status(404, body, None),
            Error::RunnerNotFound { .. }
        ));
        let body = br#"{"typeName":"JobStillRunningException","message":"busy"}"#;
        let e = map_status(400, body, None);
        assert!(matches!(e, Error::JobStillRunning { .. }));
        assert_eq!(e.category(), "job_still_running");
        let body = br#"{"typeName":"RunnerScaleSetSessionConflictException","message":"already has an active session"}"#;
        assert!(matches!(
            map_status(409, body, None),
            Error::SessionConflict { .. }
        ));
    }

    #[test]
    fn maps_statuses() {
        assert!(matches!(
            map_status(401, b"", None),
            Error::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(map_status(404, b"gone", None), Error::NotFound { .. }));
        assert!(matches!(
            map_status(503, b"", None),
            Error::Server { status: 503, .. }
        ));
        let ra = Some(Duration::from_secs(3));
        assert!(matches!(map_status(429, b"", ra), Error::RateLimited { retry_after } if retry_after == ra));
        assert!(matches!(map_status(403, b"", ra), Error::RateLimited { .. }));
        assert!(matches!(
            map_status(418, b"", None),
            Error::UnexpectedStatus { status: 418, .. }
        ));
    }

    #[test]
    fn plain_text_and_bom_bodies() {
        let (tn, msg) = parse_error_body(b"\xEF\xBB\xBF{\"typeName\":\"X\",\"message\":\"m\"}");
        assert_eq!(tn.as_deref(), Some("X"));
        assert_eq!(msg, "m");
        let (tn, msg) = parse_error_body(b"  plain failure \n");
        assert_eq!(tn, None);
        assert_eq!(msg, "plain failure");
    }

    #[test]
    fn long_messages_are_bounded() {
        let long = "x".repeat(10_000);
        let (_, msg) = parse_error_body(long.as_bytes());
        assert!(msg.len() <= MAX_MESSAGE + 4);
    }
}
