//! What this process knows of the runners it made and registered in its current leadership
//! term, so their reconciles need not read their JIT Secrets: the first reconcile of a runner
//! the set just made knows no Secret can exist yet (nobody tried to register it), and the
//! reconcile that records `Running` knows the registration it made. Those were two Secret reads
//! per runner, a quarter of the controller's requests in a burst. Anything not noted here (the
//! process restarted, the lease changed hands, a note expired) is read from the Secret as
//! before.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::runner_pod::Registration;

/// How long a note lasts: past any first reconcile and past the pending timeout's default, so a
/// runner's `Running` still finds it; an expired note only costs a read.
pub const NOTE_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// What is known of one runner.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Note {
    /// The set made it; nobody has tried to register it.
    Made,
    /// This process registered it and wrote its Secret.
    Registered(Registration),
}

/// Runner UIDs with what is known of each, and when it was noted.
#[derive(Debug, Default)]
pub struct FreshRunners {
    notes: Mutex<HashMap<String, (Instant, Note)>>,
}

impl FreshRunners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Note)>> {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, uid: &str, note: Note, now: Instant) {
        let mut notes = self.lock();
        notes.retain(|_, (at, _)| now.saturating_duration_since(*at) < NOTE_LIFETIME);
        notes.insert(uid.to_owned(), (now, note));
    }

    /// The set made the runner `uid` just now.
    pub fn made(&self, uid: &str, now: Instant) {
        self.insert(uid, Note::Made, now);
    }

    /// Whether the runner `uid` was made here and nobody has tried to register it: its JIT
    /// Secret cannot exist. Takes the note, as the caller is about to try; should that fail
    /// half way, the next reconcile reads the Secret.
    pub fn take_made(&self, uid: &str, now: Instant) -> bool {
        let mut notes = self.lock();
        match notes.get(uid) {
            Some((at, Note::Made)) if now.saturating_duration_since(*at) < NOTE_LIFETIME => {
                notes.remove(uid);
                true
            }
            _ => false,
        }
    }

    /// This process registered the runner `uid` and wrote its Secret with `registration`.
    pub fn registered(&self, uid: &str, registration: Registration, now: Instant) {
        self.insert(uid, Note::Registered(registration), now);
    }

    /// The registration this process made for the runner `uid`, if noted.
    pub fn registration(&self, uid: &str, now: Instant) -> Option<Registration> {
        match self.lock().get(uid) {
            Some((at, Note::Registered(r))) if now.saturating_duration_since(*at) < NOTE_LIFETIME => {
                Some(r.clone())
            }
            _ => None,
        }
    }

    /// Forgets the runner `uid`: its status records its registration now, or it is gone.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Forgets everything: a new leadership term starts, and another replica may have
    /// registered runners meanwhile.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(id: i64) -> Registration {
        Registration {
            runner_id: id,
            runner_name: Some(format!("r-{id}")),
        }
    }

    #[test]
    fn a_made_runner_skips_its_read_once() {
        let fresh = FreshRunners::default();
        let now = Instant::now();
        fresh.made("a", now);
        assert!(fresh.take_made("a", now), "made here, never registered");
        assert!(!fresh.take_made("a", now), "a second try reads the Secret");
        assert!(!fresh.take_made("b", now), "not made here");
    }

    #[test]
    fn a_registration_is_known_until_forgotten() {
        let fresh = FreshRunners::default();
        let now = Instant::now();
        fresh.made("a", now);
        fresh.registered("a", registration(7), now);
        assert!(!fresh.take_made("a", now), "registered: the Secret exists");
        assert_eq!(fresh.registration("a", now), Some(registration(7)));
        fresh.forget("a");
        assert_eq!(fresh.registration("a", now), None);
        assert!(fresh.lock().is_empty());
    }

    #[test]
    fn notes_expire_and_a_new_term_forgets_them() {
        let fresh = FreshRunners::default();
        let start = Instant::now();
        fresh.made("a", start);
        fresh.registered("b", registration(1), start);
        let late = start + NOTE_LIFETIME;
        assert!(!fresh.take_made("a", late));
        assert_eq!(fresh.registration("b", late), None);
        fresh.made("c", late);
        assert_eq!(
            fresh.lock().len(),
            1,
            "expired notes are dropped as new ones come"
        );
        fresh.clear();
        assert!(!fresh.take_made("c", late));
    }
}
