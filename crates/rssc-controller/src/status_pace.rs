//! Paces an EphemeralRunnerSet's status writes: every runner change brings a reconcile, and
//! during a burst nearly each one changes a count, which made a status write per runner. Counts
//! are for people and the RunnerSet's summary, so they are written at most once per
//! [`COUNTS_INTERVAL`]; what the controller itself reads back (the decision it acted on) is
//! written at once.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The shortest time between two count-only status writes of one set.
pub const COUNTS_INTERVAL: Duration = Duration::from_secs(1);

/// How long to wait before writing a status last written at `last`; `None` means now.
/// `urgent` writes (what the next reconcile reads back) never wait.
pub fn wait_before_write(last: Option<Instant>, now: Instant, urgent: bool) -> Option<Duration> {
    let since = now.saturating_duration_since(last?);
    (!urgent && since < COUNTS_INTERVAL).then(|| COUNTS_INTERVAL - since)
}

/// When each set's status was last written.
#[derive(Debug, Default)]
pub struct StatusPace {
    written: Mutex<HashMap<String, Instant>>,
}

impl StatusPace {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the set `key` may write its status at `now`: `None` if so (the write is then
    /// taken as made), or how long to wait.
    pub fn claim(&self, key: &str, now: Instant, urgent: bool) -> Option<Duration> {
        let mut written = self.lock();
        let wait = wait_before_write(written.get(key).copied(), now, urgent);
        if wait.is_none() {
            written.insert(key.to_owned(), now);
        }
        wait
    }

    /// Forgets a deleted set.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_write_and_urgent_writes_go_at_once() {
        let now = Instant::now();
        assert_eq!(wait_before_write(None, now, false), None);
        assert_eq!(wait_before_write(Some(now), now, true), None);
    }

    #[test]
    fn count_only_writes_wait_out_the_interval() {
        let last = Instant::now();
        let now = last + Duration::from_millis(300);
        assert_eq!(
            wait_before_write(Some(last), now, false),
            Some(Duration::from_millis(700))
        );
        assert_eq!(wait_before_write(Some(last), last + COUNTS_INTERVAL, false), None);
    }

    #[test]
    fn a_claim_is_remembered_until_the_interval_passes() {
        let pace = StatusPace::default();
        let start = Instant::now();
        assert_eq!(pace.claim("ns/set", start, false), None);
        let later = start + Duration::from_millis(400);
        assert_eq!(
            pace.claim("ns/set", later, false),
            Some(Duration::from_millis(600))
        );
        assert_eq!(pace.claim("ns/other", later, false), None, "sets are paced apart");
        assert_eq!(pace.claim("ns/set", later, true), None);
        pace.forget("ns/set");
        assert_eq!(pace.claim("ns/set", later, false), None);
    }
}
