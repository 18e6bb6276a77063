//! What this process knows of the runners it made and registered in its current leadership
//! term, so their reconciles need not read their JIT Secrets: the first reconcile of a runner
//! the set just made knows no Secret can exist yet (nobody tried to register it), and the
//! reconcile that records `Running` knows the registration it made. Those were two Secret reads
//! per runner, a quarter of the controller's requests in a burst. Anything not noted here (the
//! process restarted, the lease changed hands, a note expired) is read from the Secret as
//! before.
//!
//! The watch can bring a new runner to its reconcile before the set's create has its answer,
//! and so before the runner is noted. Creates awaiting their answer are kept per set, and a
//! runner not noted waits for the ones its set had in flight when it came, briefly: its own
//! create, if it was made here, is among them.

use std::{
    collections::{BTreeSet, HashMap},
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

/// How the creates of the EphemeralRunnerSet `set` in `namespace` are kept: the set's create
/// and its runners' reconciles must name it alike.
pub fn set_key(namespace: &str, set: &str) -> String {
    format!("{namespace}/{set}")
}

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
    /// Runner creates sent and not yet answered.
    creating: Mutex<InFlight>,
    /// Woken whenever a create is answered.
    answered: Notify,
}

/// Runner creates sent and not yet answered, by set ([`set_key`]), each by a number.
#[derive(Debug, Default)]
struct InFlight {
    next: u64,
    by_set: HashMap<String, BTreeSet<u64>>,
}

/// Keeps one runner create of a set in flight until dropped.
#[derive(Debug)]
pub struct Creating<'a> {
    fresh: &'a FreshRunners,
    set: String,
    id: u64,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        let mut creating = lock(&self.fresh.creating);
        if let Some(ids) = creating.by_set.get_mut(&self.set) {
            ids.remove(&self.id);
            if ids.is_empty() {
                creating.by_set.remove(&self.set);
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

    /// A runner create of `set` ([`set_key`]) is about to be sent; note what it makes
    /// with [`Self::made`] before dropping the guard.
    pub fn creating(&self, set: &str) -> Creating<'_> {
        let mut creating = lock(&self.creating);
        let id = creating.next;
        creating.next += 1;
        creating.by_set.entry(set.to_owned()).or_default().insert(id);
        Creating {
            fresh: self,
            set: set.to_owned(),
            id,
        }
    }

    /// The creates of `set` in flight now.
    fn in_flight(&self, set: &str) -> Vec<u64> {
        lock(&self.creating)
            .by_set
            .get(set)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether any of the creates `ids` of `set` is still in flight.
    fn any_in_flight(&self, set: &str, ids: &[u64]) -> bool {
        lock(&self.creating)
            .by_set
            .get(set)
            .is_some_and(|in_flight| ids.iter().any(|id| in_flight.contains(id)))
    }

    /// Like [`Self::take_made`], but if the runner `uid` is not noted while creates of its set
    /// `set` are in flight (its own among them, if its answer has not come yet), waits up to
    /// `patience` for those to be answered. Creates sent later cannot have made it (the
    /// caller saw it already), so a runner made elsewhere waits for no more than the
    /// creates in flight when it came.
    pub async fn take_made_soon(&self, uid: &str, set: &str, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        let waiting_for = self.in_flight(set);
        loop {
            let answered = self.answered.notified();
            tokio::pin!(answered);
            // Registered before looking, so an answer that comes in between still wakes us.
            answered.as_mut().enable();
            // Looked at before the note: a create answered in between has noted its runner
            // by the time the note is looked for.
            let still_waiting = self.any_in_flight(set, &waiting_for);
            if self.take_made(uid, Instant::now()) {
                return true;
            }
            if self.lock().contains_key(uid) || !still_waiting {
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
        assert!(fresh.in_flight("ns/set").is_empty(), "the create is answered");
        assert!(lock(&fresh.creating).by_set.is_empty(), "nothing kept per set");
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
        let first = fresh.creating("ns/set");
        let (made_here, second) = tokio::join!(in_time(fresh.take_made_soon("a", "ns/set", LONG)), async {
            tokio::task::yield_now().await;
            let second = fresh.creating("ns/set");
            drop(first);
            second
        });
        assert!(
            !made_here.unwrap(),
            "a create sent after the runner came is not waited for"
        );
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
        drop(second);
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
