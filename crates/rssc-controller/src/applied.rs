//! What the RunnerSet reconciler last applied for each RunnerSet, so an unchanged desired state
//! is not applied again on every reconcile. RunnerSets reconcile on every runner count change
//! their EphemeralRunnerSet reports; re-applying seven unchanged objects each time was most of
//! the controller's Kubernetes writes during a burst.
//!
//! An entry is trusted for [`RESYNC`] at most, so drift (a listener Role deleted or edited by
//! hand) is repaired on the next reconcile after that; the reconciler applies at once when the
//! EphemeralRunnerSet or the listener Deployment is missing.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long an applied state is trusted without applying it again.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Fingerprints of applied desired states, by RunnerSet.
#[derive(Debug, Default)]
pub struct Applied {
    entries: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Applied {
    /// Whether `fingerprint` is what was last applied for `key`, less than [`RESYNC`] before `now`.
    pub fn is_current(&self, key: &str, fingerprint: u64, now: Instant) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|(applied, at)| *applied == fingerprint && now.duration_since(*at) < RESYNC)
    }

    /// Records that `fingerprint` was applied for `key` at `now`.
    pub fn record(&self, key: &str, fingerprint: u64, now: Instant) {
        self.lock().insert(key.to_owned(), (fingerprint, now));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The key of the RunnerSet `namespace/name`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A fingerprint of the objects to apply (their JSON forms, in order).
pub fn fingerprint<'a>(objects: impl IntoIterator<Item = &'a serde_json::Value>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for object in objects {
        object.to_string().hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unchanged_state_is_current_until_the_resync() {
        let applied = Applied::default();
        let start = Instant::now();
        let fp = fingerprint(&[json!({"a": 1})]);
        assert!(!applied.is_current("ns/ci", fp, start), "nothing applied yet");
        applied.record("ns/ci", fp, start);
        assert!(applied.is_current("ns/ci", fp, start + Duration::from_secs(10)));
        assert!(!applied.is_current("ns/other", fp, start));
        assert!(
            !applied.is_current("ns/ci", fp, start + RESYNC),
            "applied again after the resync period"
        );
    }

    #[test]
    fn a_changed_state_is_applied_again() {
        let applied = Applied::default();
        let now = Instant::now();
        let fp = fingerprint(&[json!({"maxRunners": 10})]);
        applied.record("ns/ci", fp, now);
        let changed = fingerprint(&[json!({"maxRunners": 11})]);
        assert_ne!(fp, changed);
        assert!(!applied.is_current("ns/ci", changed, now));
    }
}
