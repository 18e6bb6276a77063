//! The live display: a screen redrawn in place on a terminal, plain lines otherwise. Formatting
//! is pure; [`Display`] only writes.

use std::{
    io::{IsTerminal as _, Write},
    time::Duration,
};

use crate::decisions::Decision;

/// Jobs by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Jobs {
    /// Queued, offered, acquired or assigned: waiting for a runner.
    pub waiting: usize,
    /// On a runner.
    pub running: usize,
    /// Completed.
    pub done: usize,
    /// All the scenario queues.
    pub planned: usize,
}

/// Runners: the listener's decision and the controller's count per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runners {
    /// `EphemeralRunnerSet.spec.replicas`.
    pub desired: i32,
    /// EphemeralRunners that exist.
    pub current: i32,
    /// Pod not running yet.
    pub pending: i32,
    /// Running, no job.
    pub idle: i32,
    /// Running a job.
    pub busy: i32,
    /// Failed.
    pub failed: i32,
    /// Being deleted.
    pub deleting: i32,
}

/// What the display shows at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Since the scenario started.
    pub elapsed: Duration,
    /// The scenario's current phase.
    pub phase: String,
    /// Jobs.
    pub jobs: Jobs,
    /// Runners, once the EphemeralRunnerSet exists.
    pub runners: Option<Runners>,
    /// The listener's latest decisions, oldest first.
    pub decisions: Vec<Decision>,
    /// Resident memory now, KiB: controller, listener.
    pub rss_kib: (Option<u64>, Option<u64>),
}

/// How many decisions the screen lists.
pub const DECISIONS_SHOWN: usize = 5;

/// The screen for a terminal.
pub fn screen(s: &Snapshot) -> Vec<String> {
    let j = &s.jobs;
    let mut lines = vec![
        format!(
            "rssc sandbox  {:>6.1} s  phase: {}",
            s.elapsed.as_secs_f64(),
            s.phase
        ),
        String::new(),
        format!(
            "jobs     {}  waiting {:>4}  running {:>4}  done {:>4} of {}",
            bar(j.done, j.running, j.planned, 30),
            j.waiting,
            j.running,
            j.done,
            j.planned
        ),
    ];
    lines.push(match s.runners {
        Some(r) => format!(
            "runners  desired {:>4}  current {:>4}  (pending {}, idle {}, busy {}, failed {}, deleting {})",
            r.desired, r.current, r.pending, r.idle, r.busy, r.failed, r.deleting
        ),
        None => "runners  (no EphemeralRunnerSet yet)".to_owned(),
    });
    lines.push(format!(
        "memory   controller {}  listener {}",
        mib(s.rss_kib.0),
        mib(s.rss_kib.1)
    ));
    lines.push(String::new());
    lines.push("listener decisions (latest last):".to_owned());
    if s.decisions.is_empty() {
        lines.push("  none yet".to_owned());
    }
    let skip = s.decisions.len().saturating_sub(DECISIONS_SHOWN);
    lines.extend(
        s.decisions
            .iter()
            .skip(skip)
            .map(|d| format!("  {}", decision(d))),
    );
    lines
}

/// One line for a log: the same figures without the bar.
pub fn line(s: &Snapshot) -> String {
    let j = &s.jobs;
    let runners = s.runners.map_or_else(
        || "no EphemeralRunnerSet yet".to_owned(),
        |r| {
            format!(
                "desired {} current {} (pending {} idle {} busy {} failed {} deleting {})",
                r.desired, r.current, r.pending, r.idle, r.busy, r.failed, r.deleting
            )
        },
    );
    format!(
        "[{:>6.1}s] {}: jobs waiting {} running {} done {}/{}; runners {}",
        s.elapsed.as_secs_f64(),
        s.phase,
        j.waiting,
        j.running,
        j.done,
        j.planned,
        runners
    )
}

/// A decision, readably.
pub fn decision(d: &Decision) -> String {
    let time = d.timestamp.get(11..19).unwrap_or(&d.timestamp);
    let previous = d.previous.map(|p| format!(" (was {p})")).unwrap_or_default();
    let jobs = match (d.assigned_jobs, d.running_jobs) {
        (Some(a), Some(r)) => format!(", {a} jobs assigned, {r} running"),
        _ => String::new(),
    };
    format!(
        "{time} #{} desired {}{previous}{jobs} [{}]",
        d.sequence, d.desired, d.reason
    )
}

fn bar(done: usize, running: usize, total: usize, width: usize) -> String {
    let cells = |n: usize| (n * width).checked_div(total).unwrap_or(0).min(width);
    let d = cells(done);
    let r = cells(done + running).saturating_sub(d);
    format!(
        "[{}{}{}]",
        "#".repeat(d),
        ">".repeat(r),
        ".".repeat(width - d - r)
    )
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// Writes snapshots to stdout: redrawn in place on a terminal, as lines when something
/// changed otherwise.
#[derive(Debug)]
pub struct Display {
    terminal: bool,
    drawn: usize,
    last_line: String,
    decisions_printed: usize,
}

impl Display {
    /// A display for stdout; `plain` forces lines even on a terminal.
    pub fn new(plain: bool) -> Self {
        Self {
            terminal: !plain && std::io::stdout().is_terminal(),
            drawn: 0,
            last_line: String::new(),
            decisions_printed: 0,
        }
    }

    /// Shows `s`.
    pub fn show(&mut self, s: &Snapshot) {
        let mut out = std::io::stdout().lock();
        if self.terminal {
            // Up to the top of the last screen, clear below, draw again.
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A\r\x1b[J", self.drawn);
            }
            let lines = screen(s);
            for l in &lines {
                let _ = writeln!(out, "{l}");
            }
            self.drawn = lines.len();
        } else {
            for d in s.decisions.iter().skip(self.decisions_printed) {
                let _ = writeln!(out, "decision: {}", decision(d));
            }
            self.decisions_printed = s.decisions.len();
            let text = line(s);
            // Compare without the time, so an unchanged state is not printed again.
            let key = text
                .split_once("] ")
                .map_or(text.as_str(), |(_, rest)| rest)
                .to_owned();
            if key != self.last_line {
                let _ = writeln!(out, "{text}");
                self.last_line = key;
            }
        }
        let _ = out.flush();
    }

    /// Prints a message below the display (the next redraw starts under it).
    pub fn message(&mut self, text: &str) {
        println!("{text}");
        self.drawn = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            elapsed: Duration::from_millis(12_340),
            phase: "burst".into(),
            jobs: Jobs {
                waiting: 20,
                running: 20,
                done: 10,
                planned: 50,
            },
            runners: Some(Runners {
                desired: 20,
                current: 20,
                pending: 2,
                idle: 0,
                busy: 18,
                failed: 0,
                deleting: 0,
            }),
            decisions: (1..=7)
                .map(|i| Decision {
                    timestamp: format!("2026-11-22T18:00:0{i}.000Z"),
                    reason: "message".into(),
                    desired: i,
                    previous: Some(i - 1),
                    sequence: i,
                    assigned_jobs: Some(i),
                    running_jobs: Some(0),
                })
                .collect(),
            rss_kib: (Some(20_480), None),
        }
    }

    #[test]
    fn the_screen_shows_jobs_runners_memory_and_the_latest_decisions() {
        let lines = screen(&snapshot());
        let text = lines.join("\n");
        assert!(text.contains("phase: burst"), "{text}");
        assert!(
            text.contains("waiting   20  running   20  done   10 of 50"),
            "{text}"
        );
        assert!(text.contains("[######>>>>>>>>>>>>............]"), "{text}");
        assert!(
            text.contains("desired   20  current   20  (pending 2, idle 0, busy 18"),
            "{text}"
        );
        assert!(text.contains("controller 20.0 MiB  listener -"), "{text}");
        assert!(
            !text.contains("#2 desired"),
            "only the last five decisions: {text}"
        );
        assert!(
            text.contains("18:00:07 #7 desired 7 (was 6), 7 jobs assigned, 0 running [message]"),
            "{text}"
        );
    }

    #[test]
    fn the_bar_fills_with_done_then_running() {
        assert_eq!(bar(5, 5, 20, 10), "[##>>>.....]");
        assert_eq!(bar(0, 0, 0, 4), "[....]");
        assert_eq!(bar(10, 0, 10, 4), "[####]");
    }

    #[test]
    fn the_plain_line_has_the_same_figures() {
        let l = line(&snapshot());
        assert_eq!(
            l,
            "[  12.3s] burst: jobs waiting 20 running 20 done 10/50; runners desired 20 current 20 (pending 2 idle 0 busy 18 failed 0 deleting 0)"
        );
        let mut s = snapshot();
        s.runners = None;
        assert!(line(&s).ends_with("runners no EphemeralRunnerSet yet"));
    }
}
