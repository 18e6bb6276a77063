//! Why a reconcile could not finish, in terms a person can act on: the condition it affects,
//! a stable reason, a message, and when to look again.

use std::time::Duration;

use rssc_api::consts::{conditions, reasons};
use rssc_github::Error as GitHubError;

use crate::credentials::DataError;

/// A problem reported on an object's conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Condition it sets to False (besides `Ready`).
    pub condition: &'static str,
    /// Stable CamelCase reason.
    pub reason: &'static str,
    /// What happened and what to do; never contains a credential.
    pub message: String,
    /// When GitHub asked us to come back, if it did.
    pub retry_after: Option<Duration>,
    /// Whether retrying without a change can help (invalid input needs the user).
    pub transient: bool,
}

impl Problem {
    /// A problem with the object's own spec or the objects it references.
    pub fn invalid(condition: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            condition,
            reason,
            message: message.into(),
            retry_after: None,
            transient: false,
        }
    }

    /// A problem that may go away by itself.
    pub fn transient(condition: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            condition,
            reason,
            message: message.into(),
            retry_after: None,
            transient: true,
        }
    }

    /// A problem from a GitHub call made while doing `what`.
    pub fn github(what: &str, err: &GitHubError) -> Self {
        let message = format!("{what}: {err}");
        match err {
            GitHubError::Unauthorized { .. } => Self::invalid(
                conditions::CREDENTIALS_VALID,
                reasons::CREDENTIALS_REJECTED,
                format!("{message}; check the credentials Secret and the App's installation and permissions"),
            ),
            GitHubError::InvalidConfigUrl { .. } => Self::invalid(
                conditions::SCALE_SET_REGISTERED,
                reasons::INVALID_CONFIG_URL,
                message,
            ),
            GitHubError::InvalidConfig(_) => {
                Self::invalid(conditions::CREDENTIALS_VALID, reasons::SECRET_INVALID, message)
            }
            GitHubError::RateLimited { retry_after } => Self {
                retry_after: *retry_after,
                ..Self::transient(conditions::SCALE_SET_REGISTERED, reasons::RATE_LIMITED, message)
            },
            GitHubError::Connection(_) | GitHubError::Timeout | GitHubError::Server { .. } => {
                Self::transient(
                    conditions::SCALE_SET_REGISTERED,
                    reasons::GITHUB_UNREACHABLE,
                    message,
                )
            }
            _ => Self::transient(conditions::SCALE_SET_REGISTERED, reasons::GITHUB_ERROR, message),
        }
    }

    /// A problem with referenced data (Secrets, ConfigMaps).
    pub fn data(condition: &'static str, err: &DataError) -> Self {
        Self::invalid(condition, reasons::SECRET_INVALID, err.to_string())
    }

    /// A problem from the Kubernetes API.
    pub fn kube(what: &str, err: &kube::Error) -> Self {
        Self::transient(
            conditions::READY,
            reasons::KUBERNETES_ERROR,
            format!("{what}: {err}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_errors_map_to_actionable_reasons() {
        let p = Problem::github(
            "registering",
            &GitHubError::Unauthorized {
                status: 401,
                message: "bad".into(),
            },
        );
        assert_eq!(
            (p.condition, p.reason, p.transient),
            (
                conditions::CREDENTIALS_VALID,
                reasons::CREDENTIALS_REJECTED,
                false
            )
        );
        let p = Problem::github(
            "x",
            &GitHubError::RateLimited {
                retry_after: Some(Duration::from_secs(9)),
            },
        );
        assert_eq!(
            (p.reason, p.retry_after),
            (reasons::RATE_LIMITED, Some(Duration::from_secs(9)))
        );
        let p = Problem::github("x", &GitHubError::Timeout);
        assert!(p.transient && p.reason == reasons::GITHUB_UNREACHABLE);
    }
}
