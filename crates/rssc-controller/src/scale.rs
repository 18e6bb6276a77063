//! The EphemeralRunnerSet scaling plan: which runners to create, which to delete outright, and
//! which to offer for scale-down. Pure: the reconciler gathers [`RunnerView`]s and carries out
//! the [`ScalePlan`].
//!
//! Rules:
//! - Finished runners are deleted at once (the runner deregistered itself when it exited).
//! - Failed runners are deleted and replaced, so they never hold capacity.
//! - Idle and pending runners made from an older template, or registered with a scale set that
//!   has since been registered again under a new ID, are replaced; busy ones finish first.
//! - Only a new listener decision (a `patchSequence` and `replicas` the controller has not acted
//!   on; see [`crate::decision_clock::CarriedOut`]) can add
//!   runners beyond replacements or remove runners. Acting twice on one decision is what made
//!   ARC over-scale when runners finished before the listener's next patch. Once a decision has
//!   stood for [`DECISION_SETTLE`], though, the listener has had time to count finished jobs,
//!   so runners still missing are real demand (a runner lost without a recorded outcome, a
//!   creation that failed) and are created rather than left to the listener's next heartbeat.
//! - Runners that finished a job the decision still counts are never missing, whether the
//!   decision is new or settled: a decision the listener wrote from statistics fetched before
//!   the runner finished counts its job, and refilling it made a runner that the next decision
//!   removed again ([`crate::decision_clock`] tells which finishes a decision counts). Jobs
//!   waiting beyond `maxRunners` take their place, though: while there are such jobs the
//!   finished runners are replaced at once.
//! - A runner whose job ended is finishing: no capacity, and no reason to scale down. The
//!   listener records the end on the runner, and counts it in its decision; a busy runner whose
//!   record this process has not read yet is finishing by that count. Its Pod still counts
//!   against `maxRunners`: new runners wait for finishing ones to go at the maximum, and below
//!   it only for those whose jobs the decision may still count.
//! - Scale-down offers pending runners past the node-provisioning grace first, then idle
//!   runners, oldest first; never a runner with a job and never a pending runner still within
//!   its grace. The reconciler asks GitHub to remove each candidate and treats
//!   `JobStillRunning` as busy, moving on to the next.

use std::time::Duration;

use k8s_openapi::chrono::{DateTime, Utc};

/// A point in time, as Kubernetes timestamps are.
pub type Timestamp = DateTime<Utc>;

/// How long a decision stands before runners it still lacks are created without a new one:
/// well past the listener's reaction to a finished job (one message), well short of its
/// heartbeat (50 s) and of GitHub's wait before it offers an assigned job again (about 60 s).
pub const DECISION_SETTLE: Duration = Duration::from_secs(10);

/// What the plan needs to know about one EphemeralRunner.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerView {
    /// Name of the EphemeralRunner.
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
    /// Where it is in its life.
    pub state: RunnerState,
    /// Hash of the template it was made from.
    pub template_hash: String,
    /// ID of the scale set it registers with.
    pub scale_set_id: i64,
    /// It is already being deleted.
    pub deleting: bool,
}

/// State of a runner as far as scaling is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerState {
    /// Not registered, or its Pod is not running yet.
    Pending,
    /// Running without a job.
    Idle,
    /// Running a job.
    Busy,
    /// Its job ended (GitHub said so) and the runner is on its way out: no longer capacity for
    /// the decision, not yet gone. Counted as neither, so a listener decision that already
    /// counts the job as done does not make scale-down remove a runner still waiting for its job.
    Finishing,
    /// Finished its job and exited cleanly.
    Finished,
    /// Gave up after its retries.
    Failed,
}

/// The desired state the listener asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Runners wanted.
    pub replicas: usize,
    /// Runners the listener left out of `replicas` because of the maximum.
    pub beyond_max: usize,
    /// Sequence of this decision.
    pub sequence: i64,
    /// The controller carried this decision out already.
    pub acted_on: bool,
    /// The decision has stood for [`DECISION_SETTLE`].
    pub settled: bool,
    /// Runners that finished a job the decision still counts, gone before the listener
    /// counted the job's end.
    pub uncounted_finishes: usize,
    /// Job ends the decision no longer counts whose runners have not finished yet; their
    /// runners may still look busy (the listener's record of the end not read yet).
    pub unfinished_ends: usize,
    /// The most runners that may exist at once, finishing ones included; `None` caps them at
    /// `replicas`.
    pub max_runners: Option<usize>,
}

impl Decision {
    /// Whether the controller has not acted on this decision yet.
    pub fn is_new(&self) -> bool {
        !self.acted_on
    }
}

/// What new runners are made from; runners made from anything else are outdated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current<'a> {
    /// Hash of the current runner template.
    pub template_hash: &'a str,
    /// ID of the scale set as registered now.
    pub scale_set_id: i64,
}

impl Current<'_> {
    fn outdates(&self, runner: &RunnerView) -> bool {
        runner.template_hash != self.template_hash || runner.scale_set_id != self.scale_set_id
    }
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScalePlan {
    /// Runners to create with the current template.
    pub create: usize,
    /// Runners to delete without asking GitHub: finished (deregistered themselves) or failed.
    pub delete: Vec<String>,
    /// Runners to replace because they are outdated; GitHub is asked to remove each
    /// first, and one that turns out busy is kept.
    pub replace: Vec<String>,
    /// Scale-down candidates in order; remove up to `scale_down` of them, asking GitHub first.
    pub scale_down_candidates: Vec<String>,
    /// How many runners scale-down should remove.
    pub scale_down: usize,
    /// Runners the decision lacks that this plan does not create yet (it has not settled).
    pub deferred: usize,
    /// Runners the decision wants that wait for finishing runners' Pods to go first; the
    /// decision is not done until they are created.
    pub waiting_for_finishing: usize,
    /// Runners the decision counts that are not made because runners finished their jobs
    /// and the decision still counts those jobs.
    pub held_for_finishes: usize,
}

/// Counts by state, for status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pending runners.
    pub pending: usize,
    /// Idle runners.
    pub idle: usize,
    /// Busy runners.
    pub busy: usize,
    /// Failed runners.
    pub failed: usize,
    /// Runners being deleted.
    pub deleting: usize,
}

impl Counts {
    /// Counts the runners by state.
    pub fn of(runners: &[RunnerView]) -> Self {
        let mut counts = Counts::default();
        for runner in runners {
            if runner.deleting {
                counts.deleting += 1;
                continue;
            }
            match runner.state {
                RunnerState::Pending => counts.pending += 1,
                RunnerState::Idle => counts.idle += 1,
                RunnerState::Busy | RunnerState::Finishing => counts.busy += 1,
                RunnerState::Failed => counts.failed += 1,
                RunnerState::Finished => {}
            }
        }
        counts
    }

    /// Runners that exist and count against the maximum.
    pub fn current(&self) -> usize {
        self.pending + self.idle + self.busy + self.failed
    }
}

/// Plans how to move `runners` toward `decision`.
pub fn plan(
    decision: Decision,
    runners: &[RunnerView],
    current: &Current<'_>,
    now: Timestamp,
    pending_grace: Duration,
) -> ScalePlan {
    let mut plan = ScalePlan::default();
    let mut live: Vec<&RunnerView> = Vec::new();
    let mut finishing: usize = 0;
    for runner in runners.iter().filter(|r| !r.deleting) {
        match runner.state {
            RunnerState::Finished | RunnerState::Failed => plan.delete.push(runner.name.clone()),
            RunnerState::Finishing => finishing += 1,
            RunnerState::Pending | RunnerState::Idle if current.outdates(runner) => {
                plan.replace.push(runner.name.clone())
            }
            _ => live.push(runner),
        }
    }
    // Busy runners whose job ended by the listener's count but not by their records are
    // finishing too: counted as live they would make scale-down remove a runner still waiting
    // for its job. Only busy ones: the listener records a job's start before its end, and both
    // before the decision that counts the end. (An end whose runner failed instead of finishing
    // is never paired; it would hold an idle or pending runner back from scale-down for good
    // once the decision is carried out.)
    let busy = live.iter().filter(|r| r.state == RunnerState::Busy).count();
    // Finishing runners whose ends the decision does not count yet still fill a place in it;
    // the others are outside `replicas` already.
    let uncounted_finishing = finishing.saturating_sub(decision.unfinished_ends);
    let unrecorded_ends = decision.unfinished_ends.saturating_sub(finishing).min(busy);
    let mut marked = 0;
    live.retain(|r| {
        let ended = r.state == RunnerState::Busy && marked < unrecorded_ends;
        marked += usize::from(ended);
        !ended
    });
    finishing += unrecorded_ends;
    let failed = runners
        .iter()
        .filter(|r| !r.deleting && r.state == RunnerState::Failed)
        .count();
    // Finishing runners still hold their Pods, so there are never more runners than
    // maxRunners allows: new runners wait for finishing ones to go when the maximum is reached.
    // Below it they wait only for those the decision may still count: a recorded end it does
    // not count yet, or an end known from the count alone (a miscount there must not make a
    // runner too many). Tearing a Pod down can take many seconds on a real node, and a job
    // that came meanwhile should not wait for it.
    let wanted = decision.replicas.saturating_sub(live.len());
    let cap = decision.max_runners.unwrap_or(decision.replicas);
    let room = wanted
        .saturating_sub(uncounted_finishing + unrecorded_ends)
        .min(cap.saturating_sub(live.len() + finishing));
    plan.waiting_for_finishing = wanted - room;
    // Runners that finished a job the decision still counts are no shortfall, new decision or
    // not: a later one drops their jobs. Unless jobs wait beyond the maximum: then the count
    // stays at the maximum without them, and their runners are replaced at once.
    let finished = room.min(decision.uncounted_finishes.saturating_sub(decision.beyond_max));
    plan.held_for_finishes = finished;
    let fillable = room - finished;
    plan.create = if decision.is_new() || decision.settled {
        fillable
    } else {
        // The same decision: only replace what this plan removes for being broken or outdated.
        fillable.min(failed + plan.replace.len())
    };
    plan.deferred = fillable - plan.create;

    if decision.is_new() && live.len() > decision.replicas {
        plan.scale_down = live.len() - decision.replicas;
        let mut candidates: Vec<&RunnerView> = live
            .iter()
            .copied()
            .filter(|r| match r.state {
                RunnerState::Pending => age(r, now) >= pending_grace,
                RunnerState::Idle => true,
                _ => false,
            })
            .collect();
        // Pending past the grace first (they are stuck), then idle; oldest first within each.
        candidates.sort_by_key(|r| (r.state != RunnerState::Pending, r.created));
        plan.scale_down_candidates = candidates.into_iter().map(|r| r.name.clone()).collect();
    }
    plan
}

fn age(runner: &RunnerView, now: Timestamp) -> Duration {
    (now - runner.created).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "current";
    const SCALE_SET: i64 = 7;
    const CURRENT: Current<'static> = Current {
        template_hash: HASH,
        scale_set_id: SCALE_SET,
    };
    const GRACE: Duration = Duration::from_secs(120);

    fn now() -> Timestamp {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn runner(name: &str, state: RunnerState, age_secs: i64) -> RunnerView {
        RunnerView {
            name: name.to_owned(),
            created: now() - k8s_openapi::chrono::TimeDelta::seconds(age_secs),
            state,
            template_hash: HASH.to_owned(),
            scale_set_id: SCALE_SET,
            deleting: false,
        }
    }

    fn new(replicas: usize) -> Decision {
        Decision {
            replicas,
            beyond_max: 0,
            sequence: 2,
            acted_on: false,
            settled: false,
            uncounted_finishes: 0,
            unfinished_ends: 0,
            max_runners: None,
        }
    }

    fn same(replicas: usize) -> Decision {
        Decision {
            replicas,
            beyond_max: 0,
            sequence: 2,
            acted_on: true,
            settled: false,
            uncounted_finishes: 0,
            unfinished_ends: 0,
            max_runners: None,
        }
    }

    #[test]
    fn a_runner_whose_job_ended_is_not_capacity_and_does_not_cause_scale_down() {
        // The listener counted the ended job (3 → 2) before the runner's Pod exited.
        let runners = [
            runner("finishing", RunnerState::Finishing, 60),
            runner("busy", RunnerState::Busy, 60),
            runner("waiting-for-its-job", RunnerState::Idle, 60),
        ];
        let p = plan(new(2), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.scale_down, 0, "the idle runner's job is still coming");
        assert!(p.delete.is_empty(), "the finishing runner goes when its Pod ends");
        assert_eq!(p.create, 0);
        assert_eq!(p.waiting_for_finishing, 0);

        // A new job came as well (2 → 3): its runner waits for the finishing one's Pod.
        let p = plan(new(3), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.create, 0, "never more runners than the decision allows");
        assert_eq!(p.waiting_for_finishing, 1);
        let gone = [runners[1].clone(), runners[2].clone()];
        let p = plan(new(3), &gone, &CURRENT, now(), GRACE);
        assert_eq!((p.create, p.waiting_for_finishing), (1, 0));
    }

    #[test]
    fn below_the_maximum_new_runners_wait_only_for_finishing_runners_the_decision_counts() {
        // One job ended (its runner's Pod is being torn down), one runs, one new job came: the
        // decision counts two jobs and, in its job ends, the ended one.
        let runners = [
            runner("finishing", RunnerState::Finishing, 60),
            runner("busy", RunnerState::Busy, 60),
        ];
        let counted = Decision {
            unfinished_ends: 1,
            max_runners: Some(10),
            ..new(2)
        };
        let p = plan(counted, &runners, &CURRENT, now(), GRACE);
        assert_eq!(
            (p.create, p.waiting_for_finishing),
            (1, 0),
            "the new job's runner"
        );
        assert_eq!(p.scale_down, 0);

        // Its record of the end not read yet, the ended runner still looks busy: known from
        // the count alone, its place is kept until the record comes or the runner goes.
        let unread = [
            runner("ended", RunnerState::Busy, 60),
            runner("busy", RunnerState::Busy, 60),
        ];
        let p = plan(counted, &unread, &CURRENT, now(), GRACE);
        assert_eq!((p.create, p.waiting_for_finishing, p.scale_down), (0, 1, 0));

        // A decision written before the end still counts the finishing runner's job.
        let before = Decision {
            max_runners: Some(10),
            ..new(2)
        };
        let p = plan(before, &runners, &CURRENT, now(), GRACE);
        assert_eq!((p.create, p.waiting_for_finishing), (0, 1));

        // At the maximum the finishing runner's Pod goes first.
        let full = Decision {
            max_runners: Some(2),
            ..counted
        };
        let p = plan(full, &runners, &CURRENT, now(), GRACE);
        assert_eq!(
            (p.create, p.waiting_for_finishing),
            (0, 1),
            "never above maxRunners"
        );

        // A set that does not record the maximum caps runners at the decision.
        let unknown = Decision {
            max_runners: None,
            ..counted
        };
        let p = plan(unknown, &runners, &CURRENT, now(), GRACE);
        assert_eq!((p.create, p.waiting_for_finishing), (0, 1));
    }

    #[test]
    fn an_end_the_listener_counted_marks_a_busy_runner_finishing_before_its_record_comes() {
        // The listener counted the job end (3 → 2) and this process has not seen the runner
        // finish; its record of the end has not been read yet, so the runner looks busy.
        let runners = [
            runner("ended", RunnerState::Busy, 60),
            runner("busy", RunnerState::Busy, 60),
            runner("waiting-for-its-job", RunnerState::Idle, 60),
        ];
        let ended = Decision {
            unfinished_ends: 1,
            ..new(2)
        };
        let p = plan(ended, &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.scale_down, 0, "the idle runner's job is still coming");
        assert_eq!((p.create, p.waiting_for_finishing), (0, 0));
        let without = plan(new(2), &runners, &CURRENT, now(), GRACE);
        assert_eq!(without.scale_down, 1, "what the count prevents");

        // Once the record is read the runner is finishing by it; the end is not counted twice.
        let recorded = [
            runner("ended", RunnerState::Finishing, 60),
            runner("busy", RunnerState::Busy, 60),
            runner("waiting-for-its-job", RunnerState::Idle, 60),
        ];
        let p = plan(
            Decision {
                unfinished_ends: 1,
                ..new(3)
            },
            &recorded,
            &CURRENT,
            now(),
            GRACE,
        );
        assert_eq!((p.create, p.waiting_for_finishing), (0, 1));
        // More ends than busy runners (ends of runners that failed instead of finishing): the
        // idle runner is still scaled down when no job is left for it.
        let p = plan(
            Decision {
                unfinished_ends: 5,
                ..new(0)
            },
            &runners,
            &CURRENT,
            now(),
            GRACE,
        );
        assert_eq!((p.scale_down, p.create), (1, 0));
        assert_eq!(p.scale_down_candidates, ["waiting-for-its-job"]);
    }

    #[test]
    fn runners_a_settled_decision_still_lacks_are_created() {
        let runners = [runner("busy", RunnerState::Busy, 30)];
        let fresh = plan(same(3), &runners, &CURRENT, now(), GRACE);
        assert_eq!(fresh.create, 0, "a finished job may not be counted yet");
        assert_eq!(fresh.deferred, 2);
        let settled = Decision {
            settled: true,
            ..same(3)
        };
        let p = plan(settled, &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.create, 2, "the shortfall is real demand by now");
        assert_eq!(p.scale_down, 0, "a settled decision does not scale down again");

        // One of the missing runners finished its job before the listener counted its end.
        let counted_later = Decision {
            uncounted_finishes: 1,
            ..settled
        };
        let p = plan(counted_later, &runners, &CURRENT, now(), GRACE);
        assert_eq!(
            p.create, 1,
            "only the runner lost without an outcome is made again"
        );
        assert_eq!(p.deferred, 0, "the finished one is nothing to wait for");
    }

    #[test]
    fn a_new_decision_that_still_counts_finished_runners_does_not_make_them_again() {
        let runners = [runner("busy", RunnerState::Busy, 30)];
        let stale = Decision {
            uncounted_finishes: 2,
            ..new(4)
        };
        let p = plan(stale, &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.create, 1, "only the runner for a job still waiting");
        assert_eq!(p.deferred, 0);
        assert_eq!(p.held_for_finishes, 2, "held back until their ends are counted");
        let p = plan(
            Decision {
                uncounted_finishes: 5,
                ..new(4)
            },
            &runners,
            &CURRENT,
            now(),
            GRACE,
        );
        assert_eq!((p.create, p.deferred), (0, 0), "never below nothing");
        assert_eq!(p.held_for_finishes, 3, "no more than the decision lacks");

        // Jobs wait beyond the maximum: the count would stay the same without the finished jobs.
        let capped = Decision {
            uncounted_finishes: 2,
            beyond_max: 5,
            ..new(4)
        };
        let p = plan(capped, &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.create, 3, "finished runners are replaced for the waiting jobs");
        let barely = Decision {
            uncounted_finishes: 2,
            beyond_max: 1,
            ..new(4)
        };
        assert_eq!(plan(barely, &runners, &CURRENT, now(), GRACE).create, 2);
    }

    #[test]
    fn a_new_decision_creates_the_missing_runners() {
        let runners = [runner("a", RunnerState::Idle, 10)];
        let p = plan(new(5), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.create, 4);
        assert_eq!(p.scale_down, 0);
    }

    #[test]
    fn the_same_decision_is_not_acted_on_twice() {
        // Runners finished and were deleted since the decision; the listener will say what it
        // wants next. Recreating them now would over-scale.
        let p = plan(
            same(5),
            &[runner("a", RunnerState::Busy, 10)],
            &CURRENT,
            now(),
            GRACE,
        );
        assert_eq!(p.create, 0);
        assert!(p.scale_down_candidates.is_empty());
    }

    #[test]
    fn finished_and_failed_runners_are_deleted_and_failed_ones_replaced() {
        let runners = [
            runner("done", RunnerState::Finished, 300),
            runner("broken", RunnerState::Failed, 300),
            runner("busy", RunnerState::Busy, 300),
        ];
        let p = plan(same(2), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.delete, ["done", "broken"]);
        assert_eq!(
            p.create, 1,
            "the failed runner is replaced even without a new decision"
        );
        let p = plan(same(1), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.create, 0, "no replacement beyond what the decision wants");
    }

    #[test]
    fn outdated_idle_and_pending_runners_are_replaced_busy_ones_finish() {
        let mut old_idle = runner("old-idle", RunnerState::Idle, 50);
        old_idle.template_hash = "old".into();
        let mut old_pending = runner("old-pending", RunnerState::Pending, 5);
        old_pending.template_hash = "old".into();
        let mut old_busy = runner("old-busy", RunnerState::Busy, 50);
        old_busy.template_hash = "old".into();
        let runners = [old_idle, old_pending, old_busy];
        let p = plan(same(3), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.replace, ["old-idle", "old-pending"]);
        assert_eq!(p.create, 2);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn runners_of_a_scale_set_registered_again_are_replaced_busy_ones_finish() {
        // Their registrations (and JIT requests) point at a scale set GitHub no longer has.
        let mut stale_pending = runner("stale-pending", RunnerState::Pending, 5);
        stale_pending.scale_set_id = SCALE_SET - 1;
        let mut stale_busy = runner("stale-busy", RunnerState::Busy, 50);
        stale_busy.scale_set_id = SCALE_SET - 1;
        let fresh = runner("fresh", RunnerState::Pending, 1);
        let p = plan(
            same(3),
            &[stale_pending, stale_busy, fresh],
            &CURRENT,
            now(),
            GRACE,
        );
        assert_eq!(p.replace, ["stale-pending"]);
        assert_eq!(p.create, 1);
    }

    #[test]
    fn scale_down_offers_stuck_pending_then_idle_oldest_first_never_busy() {
        let runners = [
            runner("idle-new", RunnerState::Idle, 10),
            runner("busy", RunnerState::Busy, 500),
            runner("pending-fresh", RunnerState::Pending, 30),
            runner("idle-old", RunnerState::Idle, 400),
            runner("pending-stuck", RunnerState::Pending, 600),
        ];
        let p = plan(new(1), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.scale_down, 4);
        assert_eq!(p.scale_down_candidates, ["pending-stuck", "idle-old", "idle-new"]);
        assert_eq!(p.create, 0);
    }

    #[test]
    fn deleting_runners_are_neither_counted_nor_touched() {
        let mut going = runner("going", RunnerState::Busy, 10);
        going.deleting = true;
        let p = plan(new(1), &[going.clone()], &CURRENT, now(), GRACE);
        assert_eq!(p.create, 1);
        assert!(p.delete.is_empty());
        let counts = Counts::of(&[
            going,
            runner("a", RunnerState::Idle, 1),
            runner("b", RunnerState::Failed, 1),
        ]);
        assert_eq!(
            (counts.deleting, counts.idle, counts.failed, counts.current()),
            (1, 1, 1, 2)
        );
    }

    #[test]
    fn scaling_to_zero_keeps_busy_runners() {
        let runners = [
            runner("busy", RunnerState::Busy, 10),
            runner("idle", RunnerState::Idle, 10),
        ];
        let p = plan(new(0), &runners, &CURRENT, now(), GRACE);
        assert_eq!(p.scale_down, 2);
        assert_eq!(
            p.scale_down_candidates,
            ["idle"],
            "only one can go; the busy one finishes its job"
        );
    }
}
