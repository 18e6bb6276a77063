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

/// A decision to write to the EphemeralRunnerSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Runners wanted.
    pub replicas: i32,
    /// Sequence number of this decision.
    pub sequence: i64,
}

/// Decides when a desired count becomes a written decision.
#[derive(Clone, Debug)]
pub struct Decider {
    heartbeat: Duration,
    sequence: i64,
    last: Option<(i32, Instant)>,
    runners_finished: bool,
}

impl Decider {
    /// Starts after the last sequence written (read back from the EphemeralRunnerSet, so a
    /// restarted listener keeps counting up).
    pub fn new(heartbeat: Duration, last_sequence: i64) -> Self {
        Self {
            heartbeat,
            sequence: last_sequence,
            last: None,
            runners_finished: false,
        }
    }

    /// The decision to write for `desired` at `now`, if one is due.
    pub fn decide(&mut self, desired: i32, now: Instant) -> Option<Decision> {
        let due = match self.last {
            None => true,
            Some((last, at)) => {
                last != desired
                    || self.runners_finished
                    || now.saturating_duration_since(at) >= self.heartbeat
            }
        };
        due.then(|| Decision {
            replicas: desired,
            sequence: self.sequence + 1,
        })
    }

    /// Runners finished jobs: the next decision is due even if the count did not change, so the
    /// controller replaces them while jobs wait.
    pub fn runners_finished(&mut self) {
        self.runners_finished = true;
    }

    /// The replica count last written, if any.
    pub fn last_replicas(&self) -> Option<i32> {
        self.last.map(|(replicas, _)| replicas)
    }

    /// Records that `decision` was written at `now`. Call only after the patch succeeded, so
    /// a failed patch is retried at the next decision.
    pub fn written(&mut self, decision: Decision, now: Instant) {
        self.sequence = decision.sequence;
        self.last = Some((decision.replicas, now));
        self.runners_finished = false;
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
    fn writes_on_change_and_on_heartbeat_only() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), 41);
        let first = decider
            .decide(3, t0)
            .expect("the first decision is always written");
        assert_eq!(
            first,
            Decision {
                replicas: 3,
                sequence: 42
            }
        );
        decider.written(first, t0);
        assert_eq!(decider.decide(3, t0 + Duration::from_secs(10)), None);
        let changed = decider.decide(4, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(changed.sequence, 43);
        decider.written(changed, t0 + Duration::from_secs(11));
        let beat = decider
            .decide(4, t0 + Duration::from_secs(71))
            .expect("heartbeat");
        assert_eq!(
            beat,
            Decision {
                replicas: 4,
                sequence: 44
            }
        );
    }

    #[test]
    fn finished_runners_make_the_same_count_a_new_decision() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), 0);
        let d = decider.decide(10, t0).unwrap();
        decider.written(d, t0);
        assert_eq!(decider.decide(10, t0), None);
        decider.runners_finished();
        let again = decider.decide(10, t0).expect("due after runners finished");
        assert_eq!(again.sequence, 2);
        decider.written(again, t0);
        assert_eq!(decider.decide(10, t0), None, "once");
    }

    #[test]
    fn a_failed_write_is_tried_again() {
        let t0 = Instant::now();
        let mut decider = Decider::new(Duration::from_secs(60), 0);
        let d = decider.decide(5, t0).unwrap();
        // The patch failed: nothing recorded, so the next message decides again.
        assert_eq!(decider.decide(5, t0 + Duration::from_secs(1)), Some(d));
    }
}
