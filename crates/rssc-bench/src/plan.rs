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
    /// Jobs queued one after another at a steady rate, each with a runner: what a job meets
    /// in everyday operation, when nothing queues behind a burst.
    Steady,
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
    /// Jobs per scale set, queued at once unless `jobs_per_second` paces them.
    pub jobs_per_scale_set: usize,
    /// Jobs queued per second, one after another; `None` queues them all at once (and in runs
    /// from before steady scenarios existed).
    #[serde(default)]
    pub jobs_per_second: Option<u32>,
    /// maxRunners of each scale set.
    pub max_runners: usize,
    /// How long each job runs, ms.
    pub job_ms: u64,
    /// Runs.
    pub runs: u32,
    /// Whether to measure the test server's limit after each run.
    pub measure_limit: bool,
    /// Simulated nodes the Pods run on, each with the kubelet's default room; one in runs from
    /// before the bench sized them to the scenario.
    #[serde(default = "one")]
    pub nodes: usize,
}

fn one() -> usize {
    1
}

/// Nodes of the kubelet's default room that hold every Pod a scenario can have at once: each
/// scale set's listener and its `maxRunners` runners. A cluster that runs this many runners has
/// the nodes for them (or an autoscaler that adds them); with fewer, jobs would wait for a free
/// slot, and the figures would measure the node, not rssc.
pub fn nodes_for(scale_sets: usize, max_runners: usize) -> usize {
    let pods = scale_sets * (max_runners + 1);
    pods.div_ceil(rssc_sim_node::config::DEFAULT_MAX_PODS as usize)
        .max(1)
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
/// How long steady jobs run.
pub const STEADY_JOB_MS: u64 = 3000;
/// maxRunners of the steady scenario, as a multiple of the runners its jobs keep busy at once,
/// so that the maximum never holds a job back.
const STEADY_HEADROOM: u64 = 4;

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
            jobs_per_second: None,
            max_runners: jobs,
            job_ms: BURST_JOB_MS,
            runs: if jobs == largest {
                args.large_runs.unwrap_or(runs).max(1)
            } else {
                runs
            },
            measure_limit: jobs == largest,
            nodes: nodes_for(1, jobs),
        })
        .collect();
    let jobs_of =
        |asked: usize, quick_most: usize| if quick { asked.min(quick_most) } else { asked }.clamp(1, cap);
    let drain_jobs = jobs_of(args.drain_jobs, 200);
    let drain_runners = args.drain_runners.min(drain_jobs).max(1);
    out.push(Case {
        name: format!("drain-{drain_jobs}-on-{drain_runners}"),
        kind: Kind::Drain,
        scale_sets: 1,
        jobs_per_scale_set: drain_jobs,
        jobs_per_second: None,
        max_runners: drain_runners,
        job_ms: DRAIN_JOB_MS,
        runs,
        measure_limit: false,
        nodes: nodes_for(1, drain_runners),
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
            jobs_per_second: None,
            max_runners: per_set,
            job_ms: BURST_JOB_MS,
            runs,
            measure_limit: false,
            nodes: nodes_for(n, per_set),
        });
    }
    let steady_jobs = jobs_of(args.steady_jobs, 50);
    let rate = args.steady_rate.max(1);
    let busy_at_once = u64::from(rate) * STEADY_JOB_MS / 1000;
    let steady_runners = usize::try_from(busy_at_once.max(1) * STEADY_HEADROOM)
        .unwrap_or(usize::MAX)
        .min(steady_jobs);
    out.push(Case {
        name: format!("steady-{rate}-per-s"),
        kind: Kind::Steady,
        scale_sets: 1,
        jobs_per_scale_set: steady_jobs,
        jobs_per_second: Some(rate),
        max_runners: steady_runners,
        job_ms: STEADY_JOB_MS,
        runs,
        measure_limit: false,
        nodes: nodes_for(1, steady_runners),
    });
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
                "scale-sets-20",
                "steady-10-per-s"
            ]
        );
        let largest = &cases[2];
        assert!(largest.measure_limit && largest.max_runners >= 1000 && largest.runs == 3);
        assert!(cases.iter().filter(|c| c.measure_limit).count() == 1);
        assert_eq!(cases[3].job_ms, 1000);
        assert_eq!(cases[6].jobs(), 400);
        let steady = &cases[7];
        assert_eq!((steady.jobs(), steady.jobs_per_second), (200, Some(10)));
        assert_eq!(
            steady.max_runners, 120,
            "four times the 30 runners its jobs keep busy"
        );
        assert!(cases[..7].iter().all(|c| c.jobs_per_second.is_none()));
        let nodes: Vec<usize> = cases.iter().map(|c| c.nodes).collect();
        assert_eq!(
            nodes,
            [1, 1, 10, 2, 1, 1, 4, 2],
            "room for every runner and listener at once, 110 Pods a node"
        );
    }

    #[test]
    fn nodes_hold_every_pod_a_scenario_can_have_at_once() {
        assert_eq!(nodes_for(1, 1), 1);
        assert_eq!(nodes_for(1, 109), 1, "109 runners and the listener fill one node");
        assert_eq!(nodes_for(1, 110), 2);
        assert_eq!(nodes_for(1, 1000), 10);
        assert_eq!(nodes_for(20, 20), 4, "420 Pods");
        assert_eq!(nodes_for(0, 5), 1);
    }

    #[test]
    fn runs_from_before_the_bench_sized_its_nodes_ran_on_one() {
        let case: Case = serde_json::from_value(serde_json::json!({
            "name": "burst-1000", "kind": "burst", "scale_sets": 1, "jobs_per_scale_set": 1000,
            "max_runners": 1000, "job_ms": 3000, "runs": 5, "measure_limit": true
        }))
        .unwrap();
        assert_eq!((case.nodes, case.jobs_per_second), (1, None));
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
