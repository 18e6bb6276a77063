//! How many runners to ask for, and when to say so.
//!
//! Desired runners = `min(maxRunners, minRunners + totalAssignedJobs)`: `minRunners` is idle
//! headroom on top of the jobs GitHub has assigned to this scale set. The statistics come with
//! every message and every session refresh, so the decision follows GitHub's own count rather
//! than a tally of messages (which can repeat, arrive out of order, or be re-offered). The
//! caller passes the statistics' count as [`crate::assigned::AssignedJobs`] holds it while the
//! listener is behind the messages.
//!
//! A decision is written when it changes, when runners finished jobs (the controller replaces
//! finished runners only for a new decision, and while more jobs are assigned than `maxRunners`
//! the count does not change), and again after a heartbeat interval even if nothing happened, so
//! a lost or overwritten patch heals on its own. Every written decision carries a new sequence
//! number, which the controller uses to act on each decision once.
//!
//! Decisions that ask for more runners than the job ends alone leave, or that concern jobs
//! waiting beyond `maxRunners`, are written at once. The rest only lower the count or report
//! job ends while nothing waits: those follow the last write by at least [`Decider`]'s pace,
//! merged into one. Nothing waits on them (finished runners remove themselves, and the
//! controller holds back the runners of job ends not yet reported), and as jobs end one by
//! one in a burst they were most of the listener's writes.

use std::time::{Duration, Instant};

use rssc_api::v1alpha1::MessageMark;

/// The scale set's limits, which the listener picks up live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Idle runners on top of runners with jobs.
    pub min_runners: i32,
    /// Most runners at once.
    pub max_runners: i32,
}

/// Runners wanted for `total_assigned_jobs` within `limits`.
pub fn desired_runners(limits: Limits, total_assigned_jobs: i64) -> i32 {
    let min = i64::from(limits.min_runners.max(0));
    let max = i64::from(limits.max_runners.max(0));
    let wanted = min.saturating_add(total_assigned_jobs.max(0)).min(max);
    i32::try_from(wanted).unwrap_or(i32::MAX)
}

/// Of the runners `total_assigned_jobs` within `limits` would want, how many `maxRunners`
/// leaves out.
pub fn beyond_max(limits: Limits, total_assigned_jobs: i64) -> i32 {
    let min = i64::from(limits.min_runners.max(0));
    let max = i64::from(limits.max_runners.max(0));
    let over = min
        .saturating_add(total_assigned_jobs.max(0))
        .saturating_sub(max)
        .max(0);
    i32::try_from(over).unwrap_or(i32::MAX)
}

/// The assigned jobs a decision for `replicas` runners, `beyond_max` more left out, counted
/// under `limits` (the inverse of [`desired_runners`] and [`beyond_max`]); 0 if `minRunners`
/// alone explains it.
pub fn jobs_counted_by(limits: Limits, replicas: i32, beyond_max: i32) -> i64 {
    let counted = i64::from(replicas.max(0)) + i64::from(beyond_max.max(0));
    (counted - i64::from(limits.min_runners.max(0))).max(0)
}

/// A decision to write to the EphemeralRunnerSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Runners wanted.
    pub replicas: i32,
    /// Runners left out of `replicas` by `maxRunners`.
    pub beyond_max: i32,
    /// Sequence number of this decision.
    pub sequence: i64,
    /// Ends of jobs that ran on the set's runners, counted so far (see [`Decider::jobs_ended`]).
    pub job_ends: i64,
    /// The last message whose job ends `job_ends` counts.
    pub job_ends_through: Option<MessageMark>,
}

/// Decides when a desired count becomes a written decision.
#[derive(Clone, Debug)]
pub struct Decider {
    heartbeat: Duration,
    pace: Duration,
    sequence: i64,
    last: Option<Written>,
    /// Ends on runners counted since the last write.
    ends_since_write: i64,
    /// Jobs ended (on runners or not) since the last write.
    jobs_ended_since_write: bool,
    /// A change waits for the pace: [`Decider::held_until`] tells when it is due.
    holding: bool,
    job_ends: i64,
    job_ends_through: Option<MessageMark>,
}

/// The decision last written, and when.
#[derive(Clone, Copy, Debug)]
struct Written {
    replicas: i32,
    beyond_max: i32,
    at: Instant,
}

impl Decider {
    /// Starts after the last sequence and job ends written (read back from the
    /// EphemeralRunnerSet, so a restarted listener keeps counting up); decisions that can wait
    /// follow the last write by at least `pace`.
    pub fn new(heartbeat: Duration, pace: Duration, last_sequence: i64, job_ends: i64) -> Self {
        Self {
            heartbeat,
            pace,
            sequence: last_sequence,
            last: None,
            ends_since_write: 0,
            jobs_ended_since_write: false,
            holding: false,
            job_ends,
            job_ends_through: None,
        }
    }

    /// Continues from `through`, the last message whose job ends the stored sum counts (read
    /// back with it): a message GitHub delivers again is not counted twice.
    pub fn counted_through(mut self, through: Option<MessageMark>) -> Self {
        self.job_ends_through = through;
        self
    }

    /// The decision to write for `desired` runners, `beyond_max` more left out by the
    /// maximum, at `now`, if one is due now.
    pub fn decide(&mut self, desired: i32, beyond_max: i32, now: Instant) -> Option<Decision> {
        self.holding = false;
        let decision = self.next(desired, beyond_max);
        let Some(last) = self.last else {
            return Some(decision);
        };
        let since = now.saturating_duration_since(last.at);
        let changed =
            last.replicas != desired || last.beyond_max != beyond_max || self.jobs_ended_since_write;
        if !changed {
            return (since >= self.heartbeat).then_some(decision);
        }
        // More runners than the counted ends leave means new jobs: their runners are made now.
        let left_by_ends = i64::from(last.replicas).saturating_sub(self.ends_since_write);
        let can_wait = i64::from(desired) <= left_by_ends && beyond_max == 0 && last.beyond_max == 0;
        if can_wait && since < self.pace {
            self.holding = true;
            return None;
        }
        Some(decision)
    }

    /// The decision [`Decider::decide`] last held back for the pace, for `desired` runners,
    /// if it did: the listener writes it as it stops, so the job ends it counts are not lost
    /// with the process (their messages are acknowledged already).
    pub fn take_held(&mut self, desired: i32, beyond_max: i32) -> Option<Decision> {
        std::mem::take(&mut self.holding).then(|| self.next(desired, beyond_max))
    }

    fn next(&self, desired: i32, beyond_max: i32) -> Decision {
        Decision {
            replicas: desired,
            beyond_max,
            sequence: self.sequence + 1,
            job_ends: self.job_ends,
            job_ends_through: self.job_ends_through,
        }
    }

    /// When a change [`Decider::decide`] held back for the pace becomes due, if it did.
    pub fn held_until(&self) -> Option<Instant> {
        let last = self.last.filter(|_| self.holding)?;
        Some(last.at + self.pace)
    }

    /// Jobs ended in `message`, `on_runners` of them on the set's runners (the rest were
    /// canceled before a runner took them). The next decision is due even if the count did
    /// not change, so the controller replaces finished runners while jobs wait; and it carries
    /// the running sum of ends on runners, which the controller pairs with the runners it saw
    /// finish to tell whether a decision still counts their jobs.
    ///
    /// A message counted before (GitHub delivers it again until it is acknowledged, and the
    /// acknowledgement comes after the decision) is not counted again: returns whether this
    /// one was. GitHub numbers a scale set's messages in increasing order and delivers them
    /// in that order, so any message up to the last one counted was counted.
    pub fn jobs_ended(&mut self, message: MessageMark, on_runners: usize) -> bool {
        let counted = self.job_ends_through.is_some_and(|through| {
            through.scale_set_id == message.scale_set_id && message.message_id <= through.message_id
        });
        if counted {
            return false;
        }
        self.job_ends_through = Some(message);
        let ended = i64::try_from(on_runners).unwrap_or(i64::MAX);
        self.job_ends = self.job_ends.saturating_add(ended);
        self.ends_since_write = self.ends_since_write.saturating_add(ended);
        self.jobs_ended_since_write = true;
        true
    }

    /// The replica count last written, if any.
    pub fn last_replicas(&self) -> Option<i32> {
        self.last.map(|w| w.replicas)
    }

    /// Records that `decision` was written at `now`. Call only after the patch succeeded, so
    /// a failed patch is retried at the next decision.
    pub fn written(&mut self, decision: Decision, now: Instant) {
        self.sequence = decision.sequence;
        self.last = Some(Written {
            replicas: decision.replicas,
            beyond_max: decision.beyond_max,
            at: now,
        });
        self.ends_since_write = 0;
        self.jobs_ended_since_write = false;
        self.holding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Duration = Duration::from_secs(1);

    fn message(message_id: i64) -> MessageMark {
        MessageMark {
            scale_set_id: 1,
            message_id,
        }
    }

    const LIMITS: Limits = Limits {
        min_runners: 2,
        max_runners: 10,
    };

    #[test]
    fn min_is_headroom_on_top_of_assigned_jobs_capped_at_max() {
        assert_eq!(desired_runners(LIMITS, 0), 2);
        assert_eq!(desired_runners(LIMITS, 3), 5);
        assert_eq!(desired_runners(LIMITS, 50), 10);
        assert_eq!(
            desired_runners(
                Limits {
                    min_runners: 0,
                    max_runners: 0
                },
                7
            ),
            0,
            "max 0 pauses"
        );
        assert_eq!(
            desired_runners(LIMITS, -4),
            2,
            "nonsense statistics do not go below min"
        );
        assert_eq!(
            desired_runners(
                Limits {
                    min_runners: i32::MAX,
                    max_runners: i32::MAX
                },
                i64::MAX
            ),
            i32::MAX
        );
    }

    #[test]
    fn beyond_max_is_what_the_maximum_leaves_out() {
        assert_eq!(beyond_max(LIMITS, 3), 0);
        assert_eq!(beyond_max(LIMITS, 8), 0, "2 idle + 8 jobs fit exactly");
        assert_eq!(beyond_max(LIMITS, 50), 42);
        assert_eq!(beyond_max(LIMITS, -4), 0);
        assert_eq!(
            beyond_max(
                Limits {
                    min_runners: 0,
                    max_runners: 0
                },
                i64::MAX
            ),
            i32::MAX
        );
    }

    #[test]
    fn a_decision_tells_the_jobs_it_counted() {
        for jobs in [0, 3, 8, 50] {
            let (replicas, beyond) = (desired_runners(LIMITS, jobs), beyond_max(LIMITS, jobs));
            assert_eq!(jobs_counted_by(LIMITS, replicas, beyond), jobs);
        }
        assert_eq!(jobs_counted_by(LIMITS, 1, 0), 0, "below minRunners");
    }

    #[test]
    fn more_jobs_beyond_the_maximum_make_a_decision() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 0, 0);
        let d = decider.decide(10, 0, t0).unwrap();
        decider.written(d, t0);
        let d = decider
            .decide(10, 5, t0)
            .expect("the controller reads how many wait");
        assert_eq!((d.replicas, d.beyond_max), (10, 5));
    }

    #[test]
    fn writes_on_change_and_on_heartbeat_only() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 41, 0);
        let first = decider
            .decide(3, 0, t0)
            .expect("the first decision is always written");
        assert_eq!(
            first,
            Decision {
                replicas: 3,
                beyond_max: 0,
                sequence: 42,
                job_ends: 0,
                job_ends_through: None,
            }
        );
        decider.written(first, t0);
        assert_eq!(decider.decide(3, 0, t0 + Duration::from_secs(10)), None);
        let changed = decider.decide(4, 0, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(changed.sequence, 43);
        decider.written(changed, t0 + Duration::from_secs(11));
        let beat = decider
            .decide(4, 0, t0 + Duration::from_secs(71))
            .expect("heartbeat");
        assert_eq!(
            beat,
            Decision {
                replicas: 4,
                beyond_max: 0,
                sequence: 44,
                job_ends: 0,
                job_ends_through: None,
            }
        );
    }

    #[test]
    fn finished_runners_make_the_same_count_a_new_decision_while_jobs_wait() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 0, 0);
        let d = decider.decide(10, 4, t0).unwrap();
        decider.written(d, t0);
        assert_eq!(decider.decide(10, 4, t0), None);
        decider.jobs_ended(message(1), 2);
        let again = decider
            .decide(10, 3, t0)
            .expect("at once: the controller replaces the finished runners");
        assert_eq!((again.sequence, again.job_ends), (2, 2));
        decider.written(again, t0);
        assert_eq!(decider.decide(10, 3, t0), None, "once");
        assert_eq!(decider.held_until(), None);
    }

    #[test]
    fn lower_counts_and_job_ends_while_nothing_waits_follow_the_pace_merged() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 0, 0);
        let d = decider.decide(10, 0, t0).unwrap();
        decider.written(d, t0);
        let soon = t0 + Duration::from_millis(200);
        decider.jobs_ended(message(2), 1);
        assert_eq!(decider.decide(9, 0, soon), None);
        assert_eq!(decider.held_until(), Some(t0 + PACE));
        decider.jobs_ended(message(3), 2);
        assert_eq!(decider.decide(7, 0, soon), None);
        let due = decider.decide(7, 0, t0 + PACE).expect("due after the pace");
        assert_eq!((due.replicas, due.sequence, due.job_ends), (7, 2, 3));
        decider.written(due, t0 + PACE);
        assert_eq!(decider.held_until(), None);

        // Back to what was written before the pace ran out: nothing to write.
        let later = t0 + PACE + Duration::from_millis(100);
        assert_eq!(decider.decide(6, 0, later), None);
        assert!(decider.held_until().is_some());
        assert_eq!(decider.decide(7, 0, later), None);
        assert_eq!(decider.held_until(), None);
    }

    #[test]
    fn a_stopping_listener_writes_what_the_pace_holds_back() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 0, 0);
        let d = decider.decide(3, 0, t0).unwrap();
        decider.written(d, t0);
        let soon = t0 + Duration::from_millis(200);
        assert_eq!(decider.decide(3, 0, soon), None, "nothing changed");
        assert_eq!(decider.take_held(3, 0), None, "nothing held back");
        decider.jobs_ended(message(4), 1);
        assert_eq!(decider.decide(2, 0, soon), None, "held back for the pace");
        let last = decider.take_held(2, 0).expect("the held decision");
        assert_eq!((last.replicas, last.sequence, last.job_ends), (2, 2, 1));
        assert_eq!(decider.held_until(), None);
        decider.written(last, soon);
        assert_eq!(decider.take_held(2, 0), None);
    }

    #[test]
    fn new_jobs_are_written_at_once_even_among_job_ends() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 0, 0);
        let d = decider.decide(5, 0, t0).unwrap();
        decider.written(d, t0);
        // Two jobs ended and one new job came: 4 runners, one more than the ends leave.
        decider.jobs_ended(message(5), 2);
        let d = decider.decide(4, 0, t0).expect("a runner for the new job");
        assert_eq!((d.replicas, d.job_ends), (4, 2));
        decider.written(d, t0);
        assert!(decider.decide(6, 0, t0).is_some(), "more runners");
        let d = decider.decide(5, 1, t0).expect("jobs wait beyond the maximum");
        decider.written(d, t0);
        assert!(
            decider.decide(5, 0, t0).is_some(),
            "no more jobs wait beyond the maximum"
        );
    }

    #[test]
    fn job_ends_add_up_across_decisions_and_restarts() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 7, 40);
        let d = decider.decide(10, 0, t0).unwrap();
        assert_eq!(d.job_ends, 40, "a restarted listener goes on from the stored sum");
        decider.written(d, t0);
        assert_eq!(decider.decide(10, 0, t0), None, "no job ended");
        decider.jobs_ended(message(6), 3);
        let d = decider
            .decide(10, 0, t0)
            .expect("due: the controller waits for these");
        assert_eq!((d.sequence, d.job_ends), (9, 43));
        decider.written(d, t0);
        decider.jobs_ended(message(7), 2);
        assert_eq!(decider.decide(9, 0, t0).unwrap().job_ends, 45);
    }

    #[test]
    fn a_failed_write_is_tried_again() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 0, 0);
        let d = decider.decide(5, 0, t0).unwrap();
        // The patch failed: nothing recorded, so the next message decides again.
        assert_eq!(decider.decide(5, 0, t0 + Duration::from_secs(1)), Some(d));
    }

    #[test]
    fn a_message_delivered_again_is_not_counted_again() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), PACE, 0, 0);
        let d = decider.decide(5, 0, t0).unwrap();
        decider.written(d, t0);
        assert!(decider.jobs_ended(message(7), 2));
        let d = decider.decide(5, 2, t0).unwrap();
        assert_eq!((d.job_ends, d.job_ends_through), (2, Some(message(7))));
        decider.written(d, t0);
        // The acknowledgement failed: GitHub delivers message 7 again.
        assert!(!decider.jobs_ended(message(7), 2));
        assert_eq!(decider.decide(5, 2, t0), None, "nothing new to write");
        assert!(decider.jobs_ended(message(8), 1));
        assert_eq!(decider.decide(5, 2, t0).unwrap().job_ends, 3);
    }

    #[test]
    fn a_restarted_listener_does_not_count_the_message_it_had_counted_again() {
        let t0 = Instant::now();
        let mut decider =
            Decider::new(Duration::from_secs(60), PACE, 9, 40).counted_through(Some(message(7)));
        assert!(!decider.jobs_ended(message(6), 1), "acknowledged long ago");
        assert!(!decider.jobs_ended(message(7), 2), "written, not acknowledged");
        let d = decider.decide(5, 0, t0).unwrap();
        assert_eq!((d.job_ends, d.job_ends_through), (40, Some(message(7))));
        decider.written(d, t0);
        assert!(decider.jobs_ended(message(8), 2));
        let other_set = MessageMark {
            scale_set_id: 2,
            message_id: 1,
        };
        assert!(
            decider.jobs_ended(other_set, 1),
            "a scale set registered again numbers its own messages"
        );
        let d = decider.decide(5, 0, t0 + PACE).unwrap();
        assert_eq!((d.job_ends, d.job_ends_through), (43, Some(other_set)));
    }
}
