//! Status conditions: set by type, with `lastTransitionTime` moving only when the status does,
//! and `observedGeneration` saying which spec they describe.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Not known yet.
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// A condition to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update<'a> {
    /// Condition type, e.g. `Ready`.
    pub type_: &'a str,
    /// Its status.
    pub status: Status,
    /// CamelCase reason.
    pub reason: &'a str,
    /// What a person should know.
    pub message: String,
}

/// Sets `update` in `conditions` at `now` for `generation`; returns whether anything changed.
pub fn set(conditions: &mut Vec<Condition>, update: Update<'_>, generation: Option<i64>, now: &Time) -> bool {
    let status = update.status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            let changed = existing.status != status
                || existing.reason != update.reason
                || existing.message != update.message
                || existing.observed_generation != generation;
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status.to_owned();
            existing.reason = update.reason.to_owned();
            existing.message = update.message;
            existing.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: update.type_.to_owned(),
                status: status.to_owned(),
                reason: update.reason.to_owned(),
                message: update.message,
                observed_generation: generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// The condition of `type_`, if set.
pub fn find<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::chrono::{TimeZone, Utc};

    use super::*;

    fn at(secs: i64) -> Time {
        Time(Utc.timestamp_opt(secs, 0).unwrap())
    }

    fn ready(status: Status, reason: &str) -> Update<'_> {
        Update {
            type_: "Ready",
            status,
            reason,
            message: format!("{reason} happened"),
        }
    }

    #[test]
    fn transition_time_moves_only_when_the_status_does() {
        let mut conditions = Vec::new();
        assert!(set(
            &mut conditions,
            ready(Status::False, "Pending"),
            Some(1),
            &at(10)
        ));
        assert!(set(
            &mut conditions,
            ready(Status::False, "SecretNotFound"),
            Some(1),
            &at(20)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            at(10),
            "same status: the time stays"
        );
        assert_eq!(conditions[0].reason, "SecretNotFound");
        assert!(set(
            &mut conditions,
            ready(Status::True, "Ready"),
            Some(2),
            &at(30)
        ));
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert!(
            !set(&mut conditions, ready(Status::True, "Ready"), Some(2), &at(40)),
            "no change"
        );
        assert!(is_true(&conditions, "Ready"));
    }

    #[test]
    fn types_are_kept_apart() {
        let mut conditions = Vec::new();
        set(&mut conditions, ready(Status::True, "Ready"), None, &at(1));
        set(
            &mut conditions,
            Update {
                type_: "CredentialsValid",
                status: Status::False,
                reason: "SecretNotFound",
                message: "m".into(),
            },
            None,
            &at(2),
        );
        assert_eq!(conditions.len(), 2);
        assert!(is_true(&conditions, "Ready"));
        assert!(!is_true(&conditions, "CredentialsValid"));
    }
}
