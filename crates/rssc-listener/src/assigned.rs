//! The assigned-job count a decision is made from.
//!
//! GitHub's statistics are current when a message is sent, but a message holds at most
//! [`MESSAGE_CAPACITY`] job events. While more wait, the statistics can already leave out jobs
//! whose `JobCompleted` the listener has not read. Written as it is, such a drop reaches the
//! controller before the job ends that explain it, and the controller reads it as fewer jobs:
//! it scales down idle runners that GitHub is about to give the remaining jobs, and makes new
//! ones for those jobs later. So while the listener is behind, the count comes down only by the
//! job ends it has read; it follows the statistics again once the listener has caught up (a
//! message that is not full, or a poll that found nothing).
//!
//! A drop can also hide behind jobs assigned meanwhile: in a burst of short jobs, the first
//! ones end while later ones are still being assigned, and the statistics can stay level while
//! both happen. Counting only the statistics there left out the jobs whose ends the listener
//! had not read, and the controller, which holds a runner back for each runner that finished
//! a job not yet counted as ended, made no runners for the jobs assigned meanwhile (with
//! GitHub's answers 100 ms late, a burst of a thousand 3-second jobs had no runner at all for
//! about three seconds while hundreds of jobs waited). So while behind, the count also grows by
//! the jobs assigned since the last message: the acquired jobs, the listener's own
//! acquisitions since included, that the statistics no longer count as acquired.
//!
//! The count never goes above what the statistics, the assignments seen and the ends read
//! explain, and jobs the statistics add come at once.
//!
//! A restarted listener may be behind too: the messages its predecessor had not read wait for
//! it, and its session's statistics may leave out their jobs already. So it starts from the
//! jobs its predecessor's last decision counted, as if behind, and the first message that is
//! not full (or a poll that finds nothing) ends that.

use crate::handler::MESSAGE_CAPACITY;

/// `totalAssignedJobs` as far as the job ends read so far explain it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssignedJobs {
    /// The latest statistics' count.
    reported: i64,
    /// The count decisions use.
    counted: i64,
    /// The last message was full: more events wait.
    behind: bool,
    /// Jobs acquired and not yet assigned: the latest statistics' count, and the jobs this
    /// listener acquired since.
    acquired: i64,
}

impl AssignedJobs {
    /// Continues after a predecessor whose last decision counted `assigned` jobs.
    pub fn resumed(assigned: i64) -> Self {
        Self {
            reported: 0,
            counted: assigned.max(0),
            behind: true,
            acquired: 0,
        }
    }

    /// Takes a message: its statistics' `totalAssignedJobs` and `totalAcquiredJobs`, the job
    /// ends it reports (none for a message counted before), and how many job events it holds.
    pub fn message(&mut self, reported: i64, acquired: i64, ends: usize, events: usize) {
        let ends = i64::try_from(ends).unwrap_or(i64::MAX);
        // Acquired jobs are assigned or given back (then offered again, and acquired again);
        // the ones the statistics no longer count as acquired are taken as assigned, which
        // errs towards a runner too many rather than one too few.
        let assigned_since = self.acquired.saturating_sub(acquired).max(0);
        self.behind = events >= MESSAGE_CAPACITY;
        self.reported = reported;
        self.acquired = acquired.max(0);
        self.counted = if self.behind {
            reported.max(self.counted.saturating_add(assigned_since).saturating_sub(ends))
        } else {
            reported
        };
    }

    /// Notes jobs this listener has just acquired: they count once the statistics show them
    /// assigned, or, while behind, once the statistics no longer count them as acquired.
    pub fn acquired(&mut self, jobs: usize) {
        self.acquired = self
            .acquired
            .saturating_add(i64::try_from(jobs).unwrap_or(i64::MAX));
    }

    /// Takes the statistics a session came with (`totalAssignedJobs`, `totalAcquiredJobs`).
    /// Messages not read yet stay unread, so a listener that was behind stays behind.
    pub fn session(&mut self, reported: i64, acquired: i64) {
        self.reported = reported;
        self.acquired = acquired.max(0);
        self.counted = if self.behind {
            reported.max(self.counted)
        } else {
            reported
        };
    }

    /// A poll found no message: every event has been read.
    pub fn caught_up(&mut self) {
        self.behind = false;
        self.counted = self.reported;
    }

    /// The count to decide on.
    pub fn count(&self) -> i64 {
        self.counted
    }

    /// Jobs the statistics no longer count whose ends the listener has not read yet.
    pub fn ends_unread(&self) -> i64 {
        self.counted - self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: usize = MESSAGE_CAPACITY;

    fn at(reported: i64) -> AssignedJobs {
        let mut a = AssignedJobs::default();
        a.message(reported, 0, 0, 1);
        a
    }

    #[test]
    fn a_message_that_is_not_full_is_taken_as_it_is() {
        let mut a = at(60);
        a.message(30, 0, 0, FULL - 1);
        assert_eq!((a.count(), a.ends_unread()), (30, 0));
    }

    #[test]
    fn behind_a_drop_waits_for_the_ends_that_explain_it() {
        let mut a = at(60);
        // 50 starts; the statistics already leave out 30 jobs that ended.
        a.message(30, 0, 0, FULL);
        assert_eq!((a.count(), a.ends_unread()), (60, 30));
        // Still behind: 20 of the ends read.
        a.message(30, 0, 20, FULL);
        assert_eq!((a.count(), a.ends_unread()), (40, 10));
        // Caught up: the rest.
        a.message(30, 0, 10, 12);
        assert_eq!((a.count(), a.ends_unread()), (30, 0));
    }

    #[test]
    fn new_jobs_count_at_once_even_behind() {
        let mut a = at(60);
        a.message(80, 0, 0, FULL);
        assert_eq!(a.count(), 80);
        a.message(90, 0, 5, FULL);
        assert_eq!(a.count(), 90);
    }

    #[test]
    fn behind_a_level_count_jobs_assigned_meanwhile_still_count_until_their_ends_are_read() {
        let mut a = at(60);
        // 40 more acquired, by this listener and by the statistics.
        a.acquired(40);
        a.message(60, 40, 0, FULL);
        assert_eq!(a.count(), 60);
        // The 40 were assigned while 40 of the first jobs ended, none of whose ends were read:
        // the statistics stay level, and the count takes both.
        a.message(60, 0, 0, FULL);
        assert_eq!((a.count(), a.ends_unread()), (100, 40));
        // 30 of the ends read.
        a.message(60, 0, 30, FULL);
        assert_eq!((a.count(), a.ends_unread()), (70, 10));
        // Caught up: the statistics again.
        a.message(60, 0, 10, 3);
        assert_eq!((a.count(), a.ends_unread()), (60, 0));
    }

    #[test]
    fn acquisitions_count_as_assigned_only_once_the_statistics_say_so() {
        let mut a = at(10);
        a.acquired(5);
        // Not assigned yet (or the statistics were taken before the acquisition): no change.
        a.message(10, 5, 0, FULL);
        assert_eq!(a.count(), 10);
        // Two assigned, three still acquired.
        a.message(12, 3, 0, FULL);
        assert_eq!(a.count(), 12);
        // Statistics that count acquisitions this listener did not make (a predecessor's) add
        // no assignment of their own.
        let mut b = at(10);
        b.message(10, 7, 0, FULL);
        assert_eq!(b.count(), 10);
    }

    #[test]
    fn ends_read_never_take_the_count_below_the_statistics() {
        let mut a = at(60);
        // Ends of jobs the statistics had dropped already, and of jobs canceled before they
        // were assigned (they were never in the count).
        a.message(58, 0, 50, FULL);
        assert_eq!(a.count(), 58);
    }

    #[test]
    fn a_poll_that_finds_nothing_ends_the_wait() {
        let mut a = at(60);
        a.message(30, 0, 0, FULL);
        a.caught_up();
        assert_eq!((a.count(), a.ends_unread()), (30, 0));
    }

    #[test]
    fn a_restart_holds_the_last_decision_until_caught_up() {
        let mut a = AssignedJobs::resumed(60);
        a.session(30, 0);
        assert_eq!((a.count(), a.ends_unread()), (60, 30));
        a.message(30, 0, 10, FULL);
        assert_eq!(a.count(), 50);
        a.message(30, 0, 20, 5);
        assert_eq!(a.count(), 30);
        let mut idle = AssignedJobs::resumed(4);
        idle.session(0, 0);
        idle.caught_up();
        assert_eq!(idle.count(), 0, "nothing was waiting");
    }

    #[test]
    fn a_new_session_keeps_what_is_unread() {
        let mut a = at(60);
        a.session(50, 0);
        assert_eq!(a.count(), 50, "nothing unread");
        let mut behind = at(60);
        behind.message(60, 0, 0, FULL);
        behind.session(40, 0);
        assert_eq!((behind.count(), behind.ends_unread()), (60, 20));
        behind.session(70, 0);
        assert_eq!(behind.count(), 70);
    }
}
