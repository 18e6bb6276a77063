//! How long each EphemeralRunnerSet's current listener decision has stood, as this process saw
//! it: the scaling plan fills a shortfall only once a decision has settled
//! ([`crate::scale::DECISION_SETTLE`]). Kept in memory; after a restart a decision counts as new
//! to the clock, which only delays filling a shortfall by the settle time.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// When each set's current decision was first seen.
#[derive(Debug, Default)]
pub struct DecisionClock {
    seen: Mutex<HashMap<String, (i64, Instant)>>,
}

impl DecisionClock {
    /// How long decision `sequence` of the set `key` has stood at `now`.
    pub fn age(&self, key: &str, sequence: i64, now: Instant) -> Duration {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = seen.entry(key.to_owned()).or_insert((sequence, now));
        if entry.0 != sequence {
            *entry = (sequence, now);
        }
        now.saturating_duration_since(entry.1)
    }

    /// Forgets the set `key` (it was deleted).
    pub fn forget(&self, key: &str) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_ages_until_a_new_one_comes() {
        let clock = DecisionClock::default();
        let start = Instant::now();
        assert_eq!(clock.age("ns/ci", 3, start), Duration::ZERO);
        assert_eq!(
            clock.age("ns/ci", 3, start + Duration::from_secs(4)),
            Duration::from_secs(4)
        );
        assert_eq!(
            clock.age("ns/ci", 4, start + Duration::from_secs(5)),
            Duration::ZERO,
            "a new decision starts again"
        );
        assert_eq!(
            clock.age("ns/ci", 4, start + Duration::from_secs(7)),
            Duration::from_secs(2)
        );
        clock.forget("ns/ci");
        assert_eq!(
            clock.age("ns/ci", 4, start + Duration::from_secs(9)),
            Duration::ZERO
        );
    }
}
