//! How each EphemeralRunnerSet's current listener decision stands, as this process saw it: how
//! long it has stood (the scaling plan fills a shortfall only once a decision has settled,
//! [`crate::scale::DECISION_SETTLE`]) and how many of its runners finished a job since, which
//! the listener has not counted yet. Kept in memory; after a restart a decision counts as new to
//! the clock, which only delays filling a shortfall by the settle time.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Where one set's current decision stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// How long the decision has stood.
    pub age: Duration,
    /// Runners that finished a job since the decision was first seen, their end not yet
    /// recorded by the listener: gone from the set, still counted by the decision.
    pub unrecorded_finishes: usize,
}

#[derive(Debug)]
struct Entry {
    sequence: i64,
    since: Instant,
    unrecorded_finishes: usize,
}

/// When each set's current decision was first seen, and what finished since.
#[derive(Debug, Default)]
pub struct DecisionClock {
    seen: Mutex<HashMap<String, Entry>>,
}

impl DecisionClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where decision `sequence` of the set `key` stands at `now`; a new sequence starts afresh.
    pub fn standing(&self, key: &str, sequence: i64, now: Instant) -> Standing {
        let mut seen = self.lock();
        let entry = seen.entry(key.to_owned()).or_insert(Entry {
            sequence,
            since: now,
            unrecorded_finishes: 0,
        });
        if entry.sequence != sequence {
            *entry = Entry {
                sequence,
                since: now,
                unrecorded_finishes: 0,
            };
        }
        Standing {
            age: now.saturating_duration_since(entry.since),
            unrecorded_finishes: entry.unrecorded_finishes,
        }
    }

    /// Notes that a runner of the set `key` finished a job the listener has not recorded as
    /// ended: the next decision will count it, the current one still does.
    pub fn runner_finished(&self, key: &str) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.unrecorded_finishes += 1;
        }
    }

    /// Forgets the set `key` (it was deleted).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_ages_until_a_new_one_comes() {
        let clock = DecisionClock::default();
        let start = Instant::now();
        let age = |sequence, secs| {
            clock
                .standing("ns/ci", sequence, start + Duration::from_secs(secs))
                .age
        };
        assert_eq!(age(3, 0), Duration::ZERO);
        assert_eq!(age(3, 4), Duration::from_secs(4));
        assert_eq!(age(4, 5), Duration::ZERO, "a new decision starts again");
        assert_eq!(age(4, 7), Duration::from_secs(2));
        clock.forget("ns/ci");
        assert_eq!(age(4, 9), Duration::ZERO);
    }

    #[test]
    fn finishes_count_until_the_next_decision() {
        let clock = DecisionClock::default();
        let start = Instant::now();
        clock.runner_finished("ns/ci");
        assert_eq!(
            clock.standing("ns/ci", 3, start).unrecorded_finishes,
            0,
            "nothing to count against before a decision is seen"
        );
        clock.runner_finished("ns/ci");
        clock.runner_finished("ns/ci");
        clock.runner_finished("ns/other");
        assert_eq!(clock.standing("ns/ci", 3, start).unrecorded_finishes, 2);
        assert_eq!(
            clock.standing("ns/ci", 4, start).unrecorded_finishes,
            0,
            "the listener's next decision counts them"
        );
    }
}
