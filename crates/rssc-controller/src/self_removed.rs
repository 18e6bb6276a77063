//! Runners the runner reconciler removed itself, one reconcile deleting the runner and dropping
//! its finalizer. The deletion's own watch event would start one more reconcile per runner that
//! can only find the runner finalized (a read, and a turn in the queue new runners wait in);
//! events of runners noted here start none. A note lasts [`NOTE_LIFETIME`], long past the
//! deletion's events; the runner is gone by then.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long a runner stays noted.
pub const NOTE_LIFETIME: Duration = Duration::from_secs(60);

/// Runner UIDs, with when each was noted.
#[derive(Debug, Default)]
pub struct SelfRemoved {
    noted: Mutex<HashMap<String, Instant>>,
}

impl SelfRemoved {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes the runner `uid` at `now`, dropping notes past their lifetime.
    pub fn note(&self, uid: &str, now: Instant) {
        let mut noted = self.lock();
        noted.retain(|_, at| now.saturating_duration_since(*at) < NOTE_LIFETIME);
        noted.insert(uid.to_owned(), now);
    }

    /// Takes the note on `uid` back: its removal did not complete.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Whether the runner `uid` is noted at `now`.
    pub fn contains(&self, uid: &str, now: Instant) -> bool {
        self.lock()
            .get(uid)
            .is_some_and(|at| now.saturating_duration_since(*at) < NOTE_LIFETIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_lasts_its_lifetime_or_until_taken_back() {
        let removed = SelfRemoved::default();
        let start = Instant::now();
        removed.note("a", start);
        removed.note("b", start);
        assert!(removed.contains("a", start + NOTE_LIFETIME - Duration::from_millis(1)));
        assert!(!removed.contains("a", start + NOTE_LIFETIME));
        assert!(!removed.contains("c", start));
        removed.forget("b");
        assert!(!removed.contains("b", start));
        removed.note("c", start + NOTE_LIFETIME);
        assert_eq!(removed.lock().len(), 1, "expired notes are dropped");
    }
}
