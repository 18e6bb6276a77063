//! How many runners to ask for, and when to say so.
//!
//! Desired runners = `min(maxRunners, minRunners + totalAssignedJobs)`: `minRunners` is idle
//! headroom on top of the jobs GitHub has assigned to this scale set. The statistics come with
//! every message and every session refresh, so the decision follows GitHub's own count rather
//! than a tally of messages (which can repeat, arrive out of order, or be re-offered).
//!
//! A decision is written when it changes, when runners finished jobs (the controller replaces
//! finished runners only for a new decision, and while more jobs are assigned than `maxRunners`
//! the count does not change), and again after a heartbeat interval even if nothing happened, so
//! a lost or overwritten patch heals on its own. Every written decision carries a new sequence
//! number, which the controller uses to act on each decision once.

use std::time::{Duration, Instant};

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
}

/// Decides when a desired count becomes a written decision.
#[derive(Clone, Debug)]
pub struct Decider {
    heartbeat: Duration,
    sequence: i64,
    last: Option<(i32, i32, Instant)>,
    jobs_ended_since_write: bool,
    job_ends: i64,
}

impl Decider {
    /// Starts after the last sequence and job ends written (read back from the
    /// EphemeralRunnerSet, so a restarted listener keeps counting up).
    pub fn new(heartbeat: Duration, last_sequence: i64, job_ends: i64) -> Self {
        Self {
            heartbeat,
            sequence: last_sequence,
            last: None,
            jobs_ended_since_write: false,
            job_ends,
        }
    }

    /// The decision to write for `desired` runners, `beyond_max` more left out by the
    /// maximum, at `now`, if one is due.
    pub fn decide(&mut self, desired: i32, beyond_max: i32, now: Instant) -> Option<Decision> {
        let due = match self.last {
            None => true,
            Some((last, last_beyond, at)) => {
                last != desired
                    || last_beyond != beyond_max
                    || self.jobs_ended_since_write
                    || now.saturating_duration_since(at) >= self.heartbeat
            }
        };
        due.then(|| Decision {
            replicas: desired,
            beyond_max,
            sequence: self.sequence + 1,
            job_ends: self.job_ends,
        })
    }

    /// Jobs ended, `on_runners` of them on the set's runners (the rest were canceled before a
    /// runner took them). The next decision is due even if the count did not change, so the
    /// controller replaces finished runners while jobs wait; and it carries the running sum of
    /// ends on runners, which the controller pairs with the runners it saw finish to tell
    /// whether a decision still counts their jobs.
    pub fn jobs_ended(&mut self, on_runners: usize) {
        self.job_ends = self
            .job_ends
            .saturating_add(i64::try_from(on_runners).unwrap_or(i64::MAX));
        self.jobs_ended_since_write = true;
    }

    /// The replica count last written, if any.
    pub fn last_replicas(&self) -> Option<i32> {
        self.last.map(|(replicas, _, _)| replicas)
    }

    /// Records that `decision` was written at `now`. Call only after the patch succeeded, so
    /// a failed patch is retried at the next decision.
    pub fn written(&mut self, decision: Decision, now: Instant) {
        self.sequence = decision.sequence;
        self.last = Some((decision.replicas, decision.beyond_max, now));
        self.jobs_ended_since_write = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn more_jobs_beyond_the_maximum_make_a_decision() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), 0, 0);
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
        let mut decider = Decider::new(Duration::from_secs(60), 41, 0);
        let first = decider
            .decide(3, 0, t0)
            .expect("the first decision is always written");
        assert_eq!(
            first,
            Decision {
                replicas: 3,
                beyond_max: 0,
                sequence: 42,
                job_ends: 0
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
                job_ends: 0
            }
        );
    }

    #[test]
    fn finished_runners_make_the_same_count_a_new_decision() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), 0, 0);
        let d = decider.decide(10, 0, t0).unwrap();
        decider.written(d, t0);
        assert_eq!(decider.decide(10, 0, t0), None);
        decider.jobs_ended(0);
        let again = decider.decide(10, 0, t0).expect("due after jobs ended");
        assert_eq!(again.sequence, 2);
        decider.written(again, t0);
        assert_eq!(decider.decide(10, 0, t0), None, "once");
    }

    #[test]
    fn job_ends_add_up_across_decisions_and_restarts() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), 7, 40);
        let d = decider.decide(10, 0, t0).unwrap();
        assert_eq!(d.job_ends, 40, "a restarted listener goes on from the stored sum");
        decider.written(d, t0);
        assert_eq!(decider.decide(10, 0, t0), None, "no job ended");
        decider.jobs_ended(3);
        let d = decider
            .decide(10, 0, t0)
            .expect("due: the controller waits for these");
        assert_eq!((d.sequence, d.job_ends), (9, 43));
        decider.written(d, t0);
        decider.jobs_ended(2);
        assert_eq!(decider.decide(9, 0, t0).unwrap().job_ends, 45);
    }

    #[test]
    fn a_failed_write_is_tried_again() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), 0, 0);
        let d = decider.decide(5, 0, t0).unwrap();
        // The patch failed: nothing recorded, so the next message decides again.
        assert_eq!(decider.decide(5, 0, t0 + Duration::from_secs(1)), Some(d));
    }
}
