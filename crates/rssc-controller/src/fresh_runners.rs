//! What this process knows of the runners it made and registered in its current leadership
//! term, so their reconciles need not read their JIT Secrets: the first reconcile of a runner
//! the set just made knows no Secret can exist yet (nobody tried to register it), and the
//! reconcile that records `Running` knows the registration it made. Those were two Secret reads
//! per runner, a quarter of the controller's requests in a burst. Anything not noted here (the
//! process restarted, the lease changed hands, a note expired) is read from the Secret as
//! before.
//!
//! The watch can bring a new runner to its reconcile before the set's create has its answer,
//! and so before the runner is noted. Creates awaiting their answer are counted per set, and a
//! runner of a set with creates in flight waits, briefly, for its note.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use crate::runner_pod::Registration;

/// How long a note lasts: past any first reconcile and past the pending timeout's default, so a
/// runner's `Running` still finds it; an expired note only costs a read.
pub const NOTE_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// How long a new runner's reconcile waits for its set's create to be answered with it: the
/// answer normally follows the watch event within milliseconds; past this, the Secret is read.
pub const CREATE_ANSWER_PATIENCE: Duration = Duration::from_secs(2);

/// What is known of one runner.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Note {
    /// The set made it; nobody has tried to register it.
    Made,
    /// The set made it and a reconcile has tried to register it: its Secret may exist.
    Tried,
    /// This process registered it and wrote its Secret.
    Registered(Registration),
}

/// Runner UIDs with what is known of each, and when it was noted.
#[derive(Debug, Default)]
pub struct FreshRunners {
    notes: Mutex<HashMap<String, (Instant, Note)>>,
    /// Runner creates sent and not yet answered, by set (`namespace/name`).
    creating: Mutex<HashMap<String, usize>>,
    /// Woken whenever a create is answered.
    answered: Notify,
}

/// Counts one runner create of a set as in flight until dropped.
#[derive(Debug)]
pub struct Creating<'a> {
    fresh: &'a FreshRunners,
    set: String,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        let mut creating = lock(&self.fresh.creating);
        if let Some(count) = creating.get_mut(&self.set) {
            *count -= 1;
            if *count == 0 {
                creating.remove(&self.set);
            }
        }
        drop(creating);
        self.fresh.answered.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FreshRunners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Note)>> {
        lock(&self.notes)
    }

    /// A runner create of `set` (`namespace/name`) is about to be sent; note what it makes
    /// with [`Self::made`] before dropping the guard.
    pub fn creating(&self, set: &str) -> Creating<'_> {
        *lock(&self.creating).entry(set.to_owned()).or_default() += 1;
        Creating {
            fresh: self,
            set: set.to_owned(),
        }
    }

    fn is_creating(&self, set: &str) -> bool {
        lock(&self.creating).contains_key(set)
    }

    /// Like [`Self::take_made`], but if the runner `uid` is not noted while its set `set` has
    /// creates in flight (its create may not have had its answer yet), waits up to `patience`
    /// for one of them to be answered with it.
    pub async fn take_made_soon(&self, uid: &str, set: &str, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            // Registered before looking, so an answer that comes in between still wakes us.
            answered.as_mut().enable();
            let now = Instant::now();
            if self.take_made(uid, now) {
                return true;
            }
            if self.lock().contains_key(uid) || !self.is_creating(set) {
                return false;
            }
            if tokio::time::timeout_at(deadline, answered).await.is_err() {
                return false;
            }
        }
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
    /// Secret cannot exist. Marks it tried, as the caller is about to try; should that fail
    /// half way, the next reconcile reads the Secret.
    pub fn take_made(&self, uid: &str, now: Instant) -> bool {
        let mut notes = self.lock();
        match notes.get_mut(uid) {
            Some((at, note @ Note::Made)) if now.saturating_duration_since(*at) < NOTE_LIFETIME => {
                *note = Note::Tried;
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

    /// Long enough never to pass in a test that should not wait.
    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_runner_seen_before_its_create_is_answered_waits_for_its_note() {
        let fresh = FreshRunners::default();
        let creating = fresh.creating("ns/set");
        let (made_here, ()) = tokio::join!(fresh.take_made_soon("a", "ns/set", LONG), async {
            tokio::task::yield_now().await;
            fresh.made("a", Instant::now());
            drop(creating);
        });
        assert!(made_here, "the answer came while it waited");
        assert!(!fresh.is_creating("ns/set"), "the create is answered");
    }

    #[tokio::test]
    async fn a_runner_not_made_here_waits_only_while_its_set_creates() {
        let fresh = FreshRunners::default();
        let in_time = |f| tokio::time::timeout(Duration::from_secs(10), f);
        assert!(
            !in_time(fresh.take_made_soon("a", "ns/set", LONG)).await.unwrap(),
            "nothing in flight: read at once"
        );
        let other_set = fresh.creating("ns/other");
        assert!(
            !in_time(fresh.take_made_soon("a", "ns/set", LONG)).await.unwrap(),
            "another set's creates are not waited for"
        );
        drop(other_set);
        let creating = fresh.creating("ns/set");
        let (made_here, ()) = tokio::join!(in_time(fresh.take_made_soon("a", "ns/set", LONG)), async {
            tokio::task::yield_now().await;
            fresh.made("b", Instant::now());
            drop(creating);
        });
        assert!(!made_here.unwrap(), "answered with another runner: read");
        let _creating = fresh.creating("ns/set");
        assert!(
            !fresh
                .take_made_soon("a", "ns/set", Duration::from_millis(20))
                .await,
            "an answer that never comes is waited for only so long"
        );
        fresh.made("c", Instant::now());
        assert!(fresh.take_made("c", Instant::now()));
        assert!(
            !in_time(fresh.take_made_soon("c", "ns/set", LONG)).await.unwrap(),
            "a runner tried once is not waited for, whatever is in flight"
        );
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
