//! The named job scenarios, as a list of steps for the fake GitHub (pure).

use std::time::Duration;

use clap::ValueEnum;
use rssc_sim_github::{Arrival, JobDuration, Scenario};

/// A job scenario the sandbox can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// A burst of `--jobs` jobs; once they are done, a quiet spell; then a trickle of a fifth as
    /// many, one every two seconds.
    BurstQuietTrickle,
    /// A burst of `--jobs` jobs at once.
    Burst,
    /// `--jobs` jobs, one every two seconds.
    Trickle,
    /// `--jobs` jobs with random (exponential) gaps of one second on average.
    Poisson,
}

impl ScenarioName {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BurstQuietTrickle => "burst-quiet-trickle",
            Self::Burst => "burst",
            Self::Trickle => "trickle",
            Self::Poisson => "poisson",
        }
    }
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Queue jobs as the scenario says (the step ends when the last one is queued).
    Queue {
        /// What the display calls this phase.
        phase: &'static str,
        /// Arrivals and durations.
        scenario: Scenario,
    },
    /// Wait until every job queued so far has completed.
    WaitForJobs,
    /// Queue nothing for this long.
    Quiet(Duration),
}

/// How long the quiet spell lasts: long enough to watch idle runners go.
pub const QUIET: Duration = Duration::from_secs(8);
/// Time between trickled jobs.
pub const TRICKLE_INTERVAL: Duration = Duration::from_secs(2);

/// The steps of `name` with `jobs` jobs in its main phase, for jobs with these `runs-on` labels.
pub fn plan(name: ScenarioName, jobs: usize, labels: &[String]) -> Vec<Step> {
    let scenario = |arrival, duration| Scenario {
        arrival,
        duration,
        labels: labels.to_vec(),
    };
    let burst_jobs = || JobDuration::Uniform(Duration::from_secs(2), Duration::from_secs(6));
    let short_jobs = || JobDuration::Uniform(Duration::from_secs(1), Duration::from_secs(3));
    let trickle = |count| Step::Queue {
        phase: "trickle",
        scenario: scenario(
            Arrival::Steady {
                count,
                interval: TRICKLE_INTERVAL,
            },
            short_jobs(),
        ),
    };
    let burst = Step::Queue {
        phase: "burst",
        scenario: scenario(Arrival::Burst(jobs), burst_jobs()),
    };
    match name {
        ScenarioName::BurstQuietTrickle => vec![
            burst,
            Step::WaitForJobs,
            Step::Quiet(QUIET),
            trickle((jobs / 5).max(1)),
        ],
        ScenarioName::Burst => vec![burst],
        ScenarioName::Trickle => vec![trickle(jobs)],
        ScenarioName::Poisson => vec![Step::Queue {
            phase: "poisson",
            scenario: scenario(
                Arrival::Poisson {
                    count: jobs,
                    mean_interval: Duration::from_secs(1),
                },
                short_jobs(),
            ),
        }],
    }
}

/// How many jobs the steps queue in all.
pub fn total_jobs(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|s| match s {
            Step::Queue { scenario, .. } => match scenario.arrival {
                Arrival::Single => 1,
                Arrival::Burst(n) => n,
                Arrival::Steady { count, .. } | Arrival::Poisson { count, .. } => count,
            },
            Step::WaitForJobs | Step::Quiet(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["linux".into(), "x64".into()]
    }

    #[test]
    fn the_default_is_a_burst_then_quiet_then_a_trickle_of_a_fifth() {
        let steps = plan(ScenarioName::BurstQuietTrickle, 50, &labels());
        assert_eq!(steps.len(), 4);
        assert!(
            matches!(&steps[0], Step::Queue { phase: "burst", scenario } if scenario.arrival == Arrival::Burst(50))
        );
        assert_eq!(steps[1], Step::WaitForJobs);
        assert_eq!(steps[2], Step::Quiet(QUIET));
        assert!(matches!(&steps[3], Step::Queue { phase: "trickle", scenario }
            if scenario.arrival == Arrival::Steady { count: 10, interval: TRICKLE_INTERVAL }));
        assert_eq!(total_jobs(&steps), 60);
    }

    #[test]
    fn a_small_burst_still_trickles_one_job() {
        assert_eq!(
            total_jobs(&plan(ScenarioName::BurstQuietTrickle, 3, &labels())),
            4
        );
    }

    #[test]
    fn every_scenario_queues_its_jobs_with_the_labels() {
        for name in ScenarioName::value_variants() {
            let steps = plan(*name, 7, &labels());
            assert!(total_jobs(&steps) >= 7, "{}", name.as_str());
            for step in steps {
                if let Step::Queue { scenario, .. } = step {
                    assert_eq!(scenario.labels, labels());
                }
            }
        }
    }

    #[test]
    fn names_match_the_command_line() {
        for name in ScenarioName::value_variants() {
            assert_eq!(ScenarioName::from_str(name.as_str(), false), Ok(*name));
        }
    }
}
