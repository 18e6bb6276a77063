//! How each EphemeralRunnerSet's current listener decision stands, as this process saw it: how
//! long it has stood (the scaling plan fills a shortfall only once a decision has settled,
//! [`crate::scale::DECISION_SETTLE`]) and how many runners finished a job that the decision
//! still counts.
//!
//! A runner usually exits, and is removed, before the listener reads the message that reports
//! its job's end, and a decision the listener writes meanwhile comes from statistics that still
//! count the job. Whether a given decision counts it cannot be told from the sequence (the
//! listener may have fetched its message before the runner finished), so the two sides are
//! paired instead: with each decision the listener reports how many job ends it has counted in
//! all (`jobEnds`), this clock keeps the runners it saw finish, and each job end the listener
//! adds pays off the oldest finish (or, counted before its runner was removed, waits for it).
//! Whatever stays unpaired for [`PAIRING_WINDOW`] is dropped (a job end without a finished
//! runner here, a runner that finished without a job), so a mismatch holds a runner back, or
//! lets one too many be made, for at most that long.
//!
//! Kept in memory; after a restart a decision counts as new to the clock, which only delays
//! filling a shortfall by the settle time, and finishes seen before the restart are forgotten,
//! which can make a runner too many. Runners that existed when the clock first saw the set may
//! have finished while no controller ran, their ends counted before the sum the clock starts
//! from: queued as finishes they would hold runners back from jobs still waiting until the
//! window ran out. So their finishes only pay off ends counted later and never wait; the
//! error that leaves goes the harmless way (an end that waits, a runner too many).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long a finish waits for its job end, or a job end for its finish: long past
/// the listener's reaction to a message, short of GitHub's wait (about 60 s) before it offers
/// an assigned job that no runner took to another runner.
pub const PAIRING_WINDOW: Duration = Duration::from_secs(30);

/// Where one set's current decision stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// How long the decision has stood.
    pub age: Duration,
    /// Runners that finished a job the decision still counts: gone from the set, their end not
    /// yet recorded by the listener.
    pub uncounted_finishes: usize,
    /// The last decision this process carried out in full, if it did one since it started.
    pub carried_out: Option<CarriedOut>,
    /// Job ends the listener counted whose runners this process has not seen finish yet: that
    /// many busy runners are on their way out, whether or not the listener's record of the
    /// end has reached this process's cache.
    pub unfinished_ends: usize,
    /// When the oldest of the uncounted finishes stops counting if its end never comes.
    pub finishes_expire_in: Option<Duration>,
}

/// A decision carried out: its sequence and the runners it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CarriedOut {
    /// `spec.patchSequence`.
    pub sequence: i64,
    /// `spec.replicas`.
    pub replicas: i32,
}

impl CarriedOut {
    /// Whether this is the decision with `sequence` and `replicas`. One sequence can be
    /// written twice with different counts: a RunnerSet being deleted asks for no runners
    /// under the sequence after the listener's last, and the listener, still stopping, may
    /// write its own next decision under that same sequence.
    pub fn is(&self, sequence: i64, replicas: i32) -> bool {
        self.sequence == sequence && self.replicas == replicas
    }
}

/// A set's decision as last seen (sequence, since when, job ends, the scale set it is for)
/// and the unpaired finishes and job ends.
#[derive(Debug)]
struct Entry {
    sequence: i64,
    since: Instant,
    job_ends: i64,
    scale_set_id: i64,
    /// The last message session the listener reported.
    listener_session: Option<String>,
    finishes: VecDeque<Instant>,
    unpaired_ends: VecDeque<Instant>,
    carried_out: Option<CarriedOut>,
    /// Runners that existed when the set was first seen, and whether each one's finish paid
    /// off a job end.
    present_at_start: HashMap<String, bool>,
}

impl Entry {
    fn new(seen: Seen<'_>, now: Instant, present: Vec<String>) -> Self {
        Self {
            sequence: seen.sequence,
            since: now,
            job_ends: seen.job_ends,
            scale_set_id: seen.scale_set_id,
            listener_session: seen.listener_session.map(str::to_owned),
            finishes: VecDeque::new(),
            unpaired_ends: VecDeque::new(),
            carried_out: None,
            present_at_start: present.into_iter().map(|name| (name, false)).collect(),
        }
    }

    fn expire(&mut self, now: Instant) {
        for queue in [&mut self.finishes, &mut self.unpaired_ends] {
            while queue
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) >= PAIRING_WINDOW)
            {
                queue.pop_front();
            }
        }
    }
}

/// A set's decision as a reconcile reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen<'a> {
    /// `spec.patchSequence`.
    pub sequence: i64,
    /// `spec.jobEnds`: the listener's sum of job ends counted.
    pub job_ends: i64,
    /// The scale set the set's runners register with now (its listener counts only its jobs).
    pub scale_set_id: i64,
    /// The listener's message session (`status.listener.sessionId`), while one is open.
    pub listener_session: Option<&'a str>,
}

/// A runner that finished: its name and the scale set it was registered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished<'a> {
    /// EphemeralRunner name.
    pub name: &'a str,
    /// Scale set ID it registered with.
    pub scale_set_id: i64,
}

/// When each set's current decision was first seen, and which finishes it still counts.
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

    /// Where the decision `seen` of the set `key` stands at `now`; a new sequence starts its
    /// age afresh. `runners` names the set's runners, asked for only when the set is first
    /// seen.
    pub fn standing(
        &self,
        key: &str,
        seen: Seen<'_>,
        now: Instant,
        runners: impl FnOnce() -> Vec<String>,
    ) -> Standing {
        let Seen {
            sequence,
            job_ends,
            scale_set_id,
            listener_session,
        } = seen;
        let mut sets = self.lock();
        let entry = sets
            .entry(key.to_owned())
            .or_insert_with(|| Entry::new(seen, now, runners()));
        if entry.sequence != sequence {
            entry.sequence = sequence;
            entry.since = now;
        }
        // The scale set was registered again: the new one's listener never counts the jobs
        // of runners registered with the old one, and the old one's ends are past pairing.
        if entry.scale_set_id != scale_set_id {
            entry.scale_set_id = scale_set_id;
            entry.finishes.clear();
            entry.unpaired_ends.clear();
        }
        // A new listener session: a listener that died may have taken job ends it had
        // counted but not written along (their messages acknowledged), and their finishes
        // would hold runners back for the whole pairing window. Its successor's decisions
        // come from current statistics, which no longer count those jobs.
        if let Some(session) = listener_session
            && entry.listener_session.as_deref() != Some(session)
        {
            if entry.listener_session.is_some() {
                entry.finishes.clear();
                entry.unpaired_ends.clear();
            }
            entry.listener_session = Some(session.to_owned());
        }
        entry.expire(now);
        // A smaller sum means the set's spec was written anew; nothing to pair from it.
        let added = (job_ends - entry.job_ends).max(0);
        entry.job_ends = job_ends;
        for _ in 0..added {
            if entry.finishes.pop_front().is_none() {
                if entry.unpaired_ends.len() >= MAX_UNPAIRED {
                    break;
                }
                entry.unpaired_ends.push_back(now);
            }
        }
        Standing {
            age: now.saturating_duration_since(entry.since),
            uncounted_finishes: entry.finishes.len(),
            unfinished_ends: entry.unpaired_ends.len(),
            carried_out: entry.carried_out,
            finishes_expire_in: entry
                .finishes
                .front()
                .map(|at| PAIRING_WINDOW.saturating_sub(now.saturating_duration_since(*at))),
        }
    }

    /// Notes that `runner` of the set `key` finished a job and was removed at `now`: decisions
    /// count the job until the listener reports its end.
    pub fn runner_finished(&self, key: &str, runner: Finished<'_>, now: Instant) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.expire(now);
            // Registered with a scale set since replaced: no listener counts its job now.
            if runner.scale_set_id != entry.scale_set_id {
                return;
            }
            if let Some(paid) = entry.present_at_start.get_mut(runner.name) {
                *paid = *paid || entry.unpaired_ends.pop_front().is_some();
                return;
            }
            // The listener counted the end first (the runner took a while to go).
            if entry.unpaired_ends.pop_front().is_none() && entry.finishes.len() < MAX_UNPAIRED {
                entry.finishes.push_back(now);
            }
        }
    }

    /// Notes that decision `sequence` of the set `key` was carried out in full. The set's
    /// status records it too, but a reconcile right after may read the set from a cache that
    /// does not show that write yet, and would carry the decision out twice.
    pub fn carried_out(&self, key: &str, decision: CarriedOut) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.carried_out = Some(decision);
        }
    }

    /// Takes back a finish noted for the set `key` whose runner could not be removed after
    /// all (it is retried, and noted again then).
    pub fn runner_finish_undone(&self, key: &str, runner: Finished<'_>, now: Instant) {
        if let Some(entry) = self.lock().get_mut(key) {
            if runner.scale_set_id != entry.scale_set_id {
                return;
            }
            if let Some(paid) = entry.present_at_start.get_mut(runner.name) {
                if std::mem::take(paid) && entry.unpaired_ends.len() < MAX_UNPAIRED {
                    entry.unpaired_ends.push_back(now);
                }
                return;
            }
            // The finish either waits in `finishes` or paid off a job end: either way one
            // finish fewer is one unpaired end more, paid off at once by any waiting finish.
            if entry.finishes.pop_back().is_none() && entry.unpaired_ends.len() < MAX_UNPAIRED {
                entry.unpaired_ends.push_back(now);
            }
        }
    }

    /// Forgets the set `key` (it was deleted).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Most unpaired finishes or job ends kept per set: far above any set's runners within
/// the pairing window, a bound on memory if something goes badly wrong.
const MAX_UNPAIRED: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    const SCALE_SET: i64 = 7;

    fn seen(sequence: i64, job_ends: i64) -> Seen<'static> {
        Seen {
            sequence,
            job_ends,
            scale_set_id: SCALE_SET,
            listener_session: Some("first"),
        }
    }

    fn ran(name: &str) -> Finished<'_> {
        Finished {
            name,
            scale_set_id: SCALE_SET,
        }
    }

    #[test]
    fn a_decision_ages_until_a_new_one_comes() {
        let clock = DecisionClock::default();
        let start = Instant::now();
        let age = |sequence, secs| {
            clock
                .standing(
                    "ns/ci",
                    seen(sequence, 0),
                    start + Duration::from_secs(secs),
                    Vec::new,
                )
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
    fn finishes_count_until_the_listener_reports_their_ends() {
        let clock = DecisionClock::default();
        let t = Instant::now();
        let uncounted = |sequence, job_ends| {
            clock
                .standing("ns/ci", seen(sequence, job_ends), t, Vec::new)
                .uncounted_finishes
        };
        clock.runner_finished("ns/ci", ran("r"), t);
        assert_eq!(
            uncounted(3, 10),
            0,
            "nothing to count against before a decision is seen"
        );
        clock.runner_finished("ns/ci", ran("r"), t);
        clock.runner_finished("ns/ci", ran("r"), t);
        clock.runner_finished("ns/other", ran("r"), t);
        assert_eq!(uncounted(3, 10), 2);
        assert_eq!(
            uncounted(4, 10),
            2,
            "a new decision fetched before the runners finished still counts them"
        );
        assert_eq!(uncounted(5, 11), 1, "the listener counted one of them");
        assert_eq!(uncounted(5, 11), 1, "once");
        assert_eq!(uncounted(6, 12), 0);
    }

    #[test]
    fn an_end_counted_before_its_runner_went_pays_off_its_finish() {
        let clock = DecisionClock::default();
        let t = Instant::now();
        assert_eq!(
            clock
                .standing("ns/ci", seen(1, 0), t, Vec::new)
                .uncounted_finishes,
            0
        );
        let ended = clock.standing("ns/ci", seen(2, 1), t, Vec::new);
        assert_eq!((ended.uncounted_finishes, ended.unfinished_ends), (0, 1));
        clock.runner_finished("ns/ci", ran("r"), t);
        let gone = clock.standing("ns/ci", seen(2, 1), t, Vec::new);
        assert_eq!((gone.uncounted_finishes, gone.unfinished_ends), (0, 0));
    }

    #[test]
    fn the_decision_carried_out_is_remembered_until_the_set_is_forgotten() {
        let clock = DecisionClock::default();
        let t = Instant::now();
        assert_eq!(clock.standing("ns/ci", seen(3, 0), t, Vec::new).carried_out, None);
        let done = CarriedOut {
            sequence: 3,
            replicas: 2,
        };
        clock.carried_out("ns/ci", done);
        let carried = clock.standing("ns/ci", seen(4, 0), t, Vec::new).carried_out;
        assert_eq!(carried, Some(done));
        assert!(carried.unwrap().is(3, 2));
        assert!(
            !carried.unwrap().is(3, 0),
            "the same sequence asking for another count"
        );
        assert!(!carried.unwrap().is(4, 2));
        assert_eq!(
            clock.standing("ns/other", seen(4, 0), t, Vec::new).carried_out,
            None
        );
        clock.forget("ns/ci");
        assert_eq!(clock.standing("ns/ci", seen(4, 0), t, Vec::new).carried_out, None);
    }

    #[test]
    fn a_finish_taken_back_is_as_if_it_never_was() {
        let clock = DecisionClock::default();
        let t = Instant::now();
        let standing = |job_ends| {
            let s = clock.standing("ns/ci", seen(1, job_ends), t, Vec::new);
            (s.uncounted_finishes, s.unfinished_ends)
        };
        assert_eq!(standing(0), (0, 0));
        clock.runner_finished("ns/ci", ran("r"), t);
        clock.runner_finish_undone("ns/ci", ran("r"), t);
        assert_eq!(standing(0), (0, 0), "a waiting finish");
        assert_eq!(standing(1), (0, 1));
        clock.runner_finished("ns/ci", ran("r"), t);
        assert_eq!(standing(1), (0, 0));
        clock.runner_finish_undone("ns/ci", ran("r"), t);
        assert_eq!(standing(1), (0, 1), "a finish that paid off an end");
    }

    #[test]
    fn unpaired_finishes_and_ends_are_dropped_after_the_window() {
        let clock = DecisionClock::default();
        let t = Instant::now();
        clock.standing("ns/ci", seen(1, 0), t, Vec::new);
        clock.runner_finished("ns/ci", ran("r"), t);
        let later = t + PAIRING_WINDOW;
        assert_eq!(
            clock
                .standing("ns/ci", seen(1, 0), later, Vec::new)
                .uncounted_finishes,
            0,
            "a finish whose end never came holds a runner back no longer"
        );
        clock.standing("ns/ci", seen(2, 1), later, Vec::new);
        clock.runner_finished("ns/ci", ran("r"), later + PAIRING_WINDOW);
        assert_eq!(
            clock
                .standing("ns/ci", seen(2, 1), later + PAIRING_WINDOW, Vec::new)
                .uncounted_finishes,
            1,
            "an old unpaired end does not pay off a new finish"
        );
    }

    #[test]
    fn a_smaller_sum_starts_the_pairing_over() {
        let clock = DecisionClock::default();
        let t = Instant::now();
        clock.standing("ns/ci", seen(9, 40), t, Vec::new);
        clock.runner_finished("ns/ci", ran("r"), t);
        assert_eq!(
            clock
                .standing("ns/ci", seen(1, 0), t, Vec::new)
                .uncounted_finishes,
            1
        );
        assert_eq!(
            clock
                .standing("ns/ci", seen(2, 1), t, Vec::new)
                .uncounted_finishes,
            0
        );
    }

    #[test]
    fn runners_present_when_the_set_was_first_seen_never_wait_as_finishes() {
        // A controller starting while runners that finished meanwhile wait to be removed: the
        // listener's sum may already count their ends.
        let clock = DecisionClock::default();
        let t = Instant::now();
        let present = || vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(
            clock
                .standing("ns/ci", seen(7, 10), t, present)
                .uncounted_finishes,
            0
        );
        clock.runner_finished("ns/ci", ran("a"), t);
        clock.runner_finished("ns/ci", ran("b"), t);
        clock.runner_finish_undone("ns/ci", ran("b"), t);
        let s = clock.standing("ns/ci", seen(7, 10), t, || unreachable!("asked once"));
        assert_eq!((s.uncounted_finishes, s.unfinished_ends), (0, 0));

        // An end counted after the start is paid off by a present runner's finish, and owed
        // again if that finish is taken back.
        assert_eq!(
            clock.standing("ns/ci", seen(8, 11), t, Vec::new).unfinished_ends,
            1
        );
        clock.runner_finished("ns/ci", ran("c"), t);
        assert_eq!(
            clock.standing("ns/ci", seen(8, 11), t, Vec::new).unfinished_ends,
            0
        );
        clock.runner_finish_undone("ns/ci", ran("c"), t);
        assert_eq!(
            clock.standing("ns/ci", seen(8, 11), t, Vec::new).unfinished_ends,
            1
        );
        clock.runner_finished("ns/ci", ran("c"), t);
        assert_eq!(
            clock.standing("ns/ci", seen(8, 11), t, Vec::new).unfinished_ends,
            0
        );

        clock.runner_finished("ns/ci", ran("d"), t);
        let s = clock.standing("ns/ci", seen(9, 11), t, Vec::new);
        assert_eq!(s.uncounted_finishes, 1, "a runner made later waits for its end");
        assert_eq!(s.finishes_expire_in, Some(PAIRING_WINDOW));
    }

    #[test]
    fn the_oldest_waiting_finish_tells_when_it_expires() {
        let clock = DecisionClock::default();
        let t = Instant::now();
        assert_eq!(
            clock
                .standing("ns/ci", seen(1, 0), t, Vec::new)
                .finishes_expire_in,
            None
        );
        clock.runner_finished("ns/ci", ran("r"), t);
        clock.runner_finished("ns/ci", ran("s"), t + Duration::from_secs(5));
        let later = t + Duration::from_secs(10);
        assert_eq!(
            clock
                .standing("ns/ci", seen(1, 0), later, Vec::new)
                .finishes_expire_in,
            Some(PAIRING_WINDOW - Duration::from_secs(10))
        );
        assert_eq!(
            clock
                .standing("ns/ci", seen(1, 1), later, Vec::new)
                .finishes_expire_in,
            Some(PAIRING_WINDOW - Duration::from_secs(5)),
            "the paired finish no longer counts"
        );
    }

    #[test]
    fn runners_of_a_replaced_scale_set_are_not_paired() {
        // The scale set was deleted on GitHub and registered again under a new ID: its new
        // listener never counts the jobs of runners registered with the old one.
        let clock = DecisionClock::default();
        let t = Instant::now();
        clock.standing("ns/ci", seen(1, 4), t, Vec::new);
        clock.runner_finished("ns/ci", ran("a"), t);
        let again = Seen {
            scale_set_id: SCALE_SET + 1,
            ..seen(2, 4)
        };
        let s = clock.standing("ns/ci", again, t, Vec::new);
        assert_eq!(s.uncounted_finishes, 0, "the old one's finish waits no more");
        clock.runner_finished("ns/ci", ran("b"), t);
        clock.runner_finish_undone("ns/ci", ran("b"), t);
        let s = clock.standing("ns/ci", again, t, Vec::new);
        assert_eq!((s.uncounted_finishes, s.unfinished_ends), (0, 0));
        let new = Finished {
            name: "c",
            scale_set_id: SCALE_SET + 1,
        };
        clock.runner_finished("ns/ci", new, t);
        assert_eq!(clock.standing("ns/ci", again, t, Vec::new).uncounted_finishes, 1);
    }

    #[test]
    fn a_new_listener_session_drops_finishes_waiting_for_their_ends() {
        // The listener died holding a job end back; its successor never reports it.
        let clock = DecisionClock::default();
        let t = Instant::now();
        clock.standing("ns/ci", seen(1, 0), t, Vec::new);
        clock.runner_finished("ns/ci", ran("a"), t);
        assert_eq!(
            clock
                .standing("ns/ci", seen(2, 0), t, Vec::new)
                .uncounted_finishes,
            1
        );
        // A closed session (a listener stopping) changes nothing yet.
        let closed = Seen {
            listener_session: None,
            ..seen(2, 0)
        };
        assert_eq!(clock.standing("ns/ci", closed, t, Vec::new).uncounted_finishes, 1);
        let successor = Seen {
            listener_session: Some("second"),
            ..seen(3, 0)
        };
        let s = clock.standing("ns/ci", successor, t, Vec::new);
        assert_eq!((s.uncounted_finishes, s.unfinished_ends), (0, 0));
        // Pairing goes on as before with the new session.
        clock.runner_finished("ns/ci", ran("b"), t);
        let s = clock.standing(
            "ns/ci",
            Seen {
                job_ends: 1,
                ..successor
            },
            t,
            Vec::new,
        );
        assert_eq!((s.uncounted_finishes, s.unfinished_ends), (0, 0));
    }
}
