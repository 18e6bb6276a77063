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
//! The count never goes above what the statistics and the ends read explain, and jobs the
//! statistics add come at once.
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
}

impl AssignedJobs {
    /// Continues after a predecessor whose last decision counted `assigned` jobs.
    pub fn resumed(assigned: i64) -> Self {
        Self {
            reported: 0,
            counted: assigned.max(0),
            behind: true,
        }
    }

    /// Takes a message: its statistics' `totalAssignedJobs`, the job ends it reports (none for
    /// a message counted before), and how many job events it holds.
    pub fn message(&mut self, reported: i64, ends: usize, events: usize) {
        let ends = i64::try_from(ends).unwrap_or(i64::MAX);
        self.behind = events >= MESSAGE_CAPACITY;
        self.reported = reported;
        self.counted = if self.behind {
            reported.max(self.counted.saturating_sub(ends))
        } else {
            reported
        };
    }

    /// Takes the statistics a session came with. Messages not read yet stay unread, so a
    /// listener that was behind stays behind.
    pub fn session(&mut self, reported: i64) {
        self.reported = reported;
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
        a.message(reported, 0, 1);
        a
    }

    #[test]
    fn a_message_that_is_not_full_is_taken_as_it_is() {
        let mut a = at(60);
        a.message(30, 0, FULL - 1);
        assert_eq!((a.count(), a.ends_unread()), (30, 0));
    }

    #[test]
    fn behind_a_drop_waits_for_the_ends_that_explain_it() {
        let mut a = at(60);
        // 50 starts; the statistics already leave out 30 jobs that ended.
        a.message(30, 0, FULL);
        assert_eq!((a.count(), a.ends_unread()), (60, 30));
        // Still behind: 20 of the ends read.
        a.message(30, 20, FULL);
        assert_eq!((a.count(), a.ends_unread()), (40, 10));
        // Caught up: the rest.
        a.message(30, 10, 12);
        assert_eq!((a.count(), a.ends_unread()), (30, 0));
    }

    #[test]
    fn new_jobs_count_at_once_even_behind() {
        let mut a = at(60);
        a.message(80, 0, FULL);
        assert_eq!(a.count(), 80);
        a.message(90, 5, FULL);
        assert_eq!(a.count(), 90);
    }

    #[test]
    fn ends_read_never_take_the_count_below_the_statistics() {
        let mut a = at(60);
        // Ends of jobs the statistics had dropped already, and of jobs canceled before they
        // were assigned (they were never in the count).
        a.message(58, 50, FULL);
        assert_eq!(a.count(), 58);
    }

    #[test]
    fn a_poll_that_finds_nothing_ends_the_wait() {
        let mut a = at(60);
        a.message(30, 0, FULL);
        a.caught_up();
        assert_eq!((a.count(), a.ends_unread()), (30, 0));
    }

    #[test]
    fn a_restart_holds_the_last_decision_until_caught_up() {
        let mut a = AssignedJobs::resumed(60);
        a.session(30);
        assert_eq!((a.count(), a.ends_unread()), (60, 30));
        a.message(30, 10, FULL);
        assert_eq!(a.count(), 50);
        a.message(30, 20, 5);
        assert_eq!(a.count(), 30);
        let mut idle = AssignedJobs::resumed(4);
        idle.session(0);
        idle.caught_up();
        assert_eq!(idle.count(), 0, "nothing was waiting");
    }

    #[test]
    fn a_new_session_keeps_what_is_unread() {
        let mut a = at(60);
        a.session(50);
        assert_eq!(a.count(), 50, "nothing unread");
        let mut behind = at(60);
        behind.message(60, 0, FULL);
        behind.session(40);
        assert_eq!((behind.count(), behind.ends_unread()), (60, 20));
        behind.session(70);
        assert_eq!(behind.count(), 70);
    }
}
