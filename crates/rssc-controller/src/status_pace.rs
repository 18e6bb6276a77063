//! Paces an EphemeralRunnerSet's status writes: every runner change brings a reconcile, and
//! during a burst nearly each one changes a count, which made a status write per runner; every
//! listener decision changes the generation and the decision carried out, which made one per
//! decision. The status is for people and the RunnerSet's summary (the controller reads back
//! the decision it carried out from memory, [`crate::decision_clock`], and from the status only
//! after a restart), so it is written at most once per [`STATUS_INTERVAL`].

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The shortest time between two status writes of one set.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long to wait before writing a status last written at `last`; `None` means now.
pub fn wait_before_write(last: Option<Instant>, now: Instant) -> Option<Duration> {
    let since = now.saturating_duration_since(last?);
    (since < STATUS_INTERVAL).then(|| STATUS_INTERVAL - since)
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
    pub fn claim(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut written = self.lock();
        let wait = wait_before_write(written.get(key).copied(), now);
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
    fn the_first_write_goes_at_once() {
        assert_eq!(wait_before_write(None, Instant::now()), None);
    }

    #[test]
    fn count_only_writes_wait_out_the_interval() {
        let last = Instant::now();
        let now = last + Duration::from_millis(300);
        assert_eq!(
            wait_before_write(Some(last), now),
            Some(Duration::from_millis(700))
        );
        assert_eq!(wait_before_write(Some(last), last + STATUS_INTERVAL), None);
    }

    #[test]
    fn a_claim_is_remembered_until_the_interval_passes() {
        let pace = StatusPace::default();
        let start = Instant::now();
        assert_eq!(pace.claim("ns/set", start), None);
        let later = start + Duration::from_millis(400);
        assert_eq!(pace.claim("ns/set", later), Some(Duration::from_millis(600)));
        assert_eq!(pace.claim("ns/other", later), None, "sets are paced apart");
        pace.forget("ns/set");
        assert_eq!(pace.claim("ns/set", later), None);
    }
}
