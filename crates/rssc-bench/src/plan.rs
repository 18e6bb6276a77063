//! Which scenarios a bench run plays, from the flags (pure).

use serde::{Deserialize, Serialize};

use crate::cli::Args;

/// What a scenario is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Jobs queued at once with a runner for each: scale-up, latency, economy, footprint.
    Burst,
    /// Jobs queued at once with fewer runners: how fast the queue drains.
    Drain,
    /// Jobs queued at once across several scale sets.
    ScaleSets,
}

/// One scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    /// Short name, unique in a run.
    pub name: String,
    /// What it is for.
    pub kind: Kind,
    /// Scale sets (each an AutoscaleSet, a RunnerSet and a listener).
    pub scale_sets: usize,
    /// Jobs per scale set, all queued at once.
    pub jobs_per_scale_set: usize,
    /// maxRunners of each scale set.
    pub max_runners: usize,
    /// How long each job runs, ms.
    pub job_ms: u64,
    /// Runs.
    pub runs: u32,
    /// Whether to measure the test server's limit after each run.
    pub measure_limit: bool,
}

impl Case {
    /// Jobs over all scale sets.
    pub fn jobs(&self) -> usize {
        self.scale_sets * self.jobs_per_scale_set
    }
}

/// How long burst jobs run: long enough that every runner exists at once.
pub const BURST_JOB_MS: u64 = 3000;
/// How long drain jobs run.
pub const DRAIN_JOB_MS: u64 = 1000;

/// The scenarios the flags ask for.
pub fn cases(args: &Args) -> Vec<Case> {
    let quick = args.quick;
    let runs = if quick { 1 } else { args.runs };
    let cap = args.max_jobs.unwrap_or(usize::MAX).max(1);
    let sizes: Vec<usize> = if quick { vec![10, 100] } else { args.sizes.clone() };
    let mut sizes: Vec<usize> = sizes.into_iter().filter(|s| *s >= 1 && *s <= cap).collect();
    if sizes.is_empty() {
        sizes.push(cap);
    }
    sizes.sort_unstable();
    sizes.dedup();
    let largest = sizes.last().copied().unwrap_or(1);
    let mut out: Vec<Case> = sizes
        .iter()
        .map(|&jobs| Case {
            name: format!("burst-{jobs}"),
            kind: Kind::Burst,
            scale_sets: 1,
            jobs_per_scale_set: jobs,
            max_runners: jobs,
            job_ms: BURST_JOB_MS,
            runs: if jobs == largest {
                args.large_runs.unwrap_or(runs).max(1)
            } else {
                runs
            },
            measure_limit: jobs == largest,
        })
        .collect();
    let drain_jobs = if quick {
        args.drain_jobs.min(200)
    } else {
        args.drain_jobs
    }
    .min(cap)
    .max(1);
    let drain_runners = args.drain_runners.min(drain_jobs).max(1);
    out.push(Case {
        name: format!("drain-{drain_jobs}-on-{drain_runners}"),
        kind: Kind::Drain,
        scale_sets: 1,
        jobs_per_scale_set: drain_jobs,
        max_runners: drain_runners,
        job_ms: DRAIN_JOB_MS,
        runs,
        measure_limit: false,
    });
    let sets: Vec<usize> = if quick {
        vec![1, 5]
    } else {
        args.scale_sets.clone()
    };
    for n in sets.into_iter().filter(|n| *n >= 1) {
        let per_set = args.jobs_per_scale_set.min(cap / n).max(1);
        out.push(Case {
            name: format!("scale-sets-{n}"),
            kind: Kind::ScaleSets,
            scale_sets: n,
            jobs_per_scale_set: per_set,
            max_runners: per_set,
            job_ms: BURST_JOB_MS,
            runs,
            measure_limit: false,
        });
    }
    out.retain(|c| args.only.is_empty() || args.only.contains(&c.kind));
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn args(flags: &[&str]) -> Args {
        Args::parse_from(std::iter::once("rssc-bench").chain(flags.iter().copied()))
    }

    #[test]
    fn the_default_plan_covers_every_figure() {
        let cases = cases(&args(&[]));
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "burst-10",
                "burst-100",
                "burst-1000",
                "drain-1000-on-200",
                "scale-sets-1",
                "scale-sets-5",
                "scale-sets-20"
            ]
        );
        let largest = &cases[2];
        assert!(largest.measure_limit && largest.max_runners >= 1000 && largest.runs == 3);
        assert!(cases.iter().filter(|c| c.measure_limit).count() == 1);
        assert_eq!(cases[3].job_ms, 1000);
        assert_eq!(cases[6].jobs(), 400);
    }

    #[test]
    fn max_jobs_caps_every_scenario() {
        let cases = cases(&args(&["--max-jobs", "5", "--scale-sets", "1,2", "--runs", "1"]));
        assert!(cases.iter().all(|c| c.jobs() <= 5 && c.runs == 1), "{cases:?}");
        assert_eq!(cases[0].name, "burst-5", "no size fits, so the cap is the size");
        assert!(cases[0].measure_limit);
        assert_eq!(cases[1].max_runners, 5);
    }

    #[test]
    fn only_the_kinds_asked_for_are_played() {
        let cases = cases(&args(&["--only", "burst,scale-sets", "--scale-sets", "2"]));
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["burst-10", "burst-100", "burst-1000", "scale-sets-2"]);
    }

    #[test]
    fn quick_runs_once_and_small() {
        let cases = cases(&args(&["--quick"]));
        assert!(cases.iter().all(|c| c.runs == 1 && c.jobs() <= 200), "{cases:?}");
    }

    #[test]
    fn the_largest_burst_may_run_fewer_times() {
        let cases = cases(&args(&["--large-runs", "1"]));
        assert_eq!(cases[2].runs, 1);
        assert_eq!(cases[1].runs, 3);
    }
}
