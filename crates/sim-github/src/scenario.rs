//! Job arrival scenarios: when jobs arrive and how long they run (pure schedule computation).

use std::time::Duration;

use rand::Rng as _;
use rand::rngs::StdRng;

/// How jobs arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    /// One job now.
    Single,
    /// `n` jobs at once.
    Burst(usize),
    /// `count` jobs, one every `interval`.
    Steady {
        /// Number of jobs.
        count: usize,
        /// Time between jobs.
        interval: Duration,
    },
    /// `count` jobs with exponentially distributed gaps of mean `mean_interval`.
    Poisson {
        /// Number of jobs.
        count: usize,
        /// Mean time between jobs.
        mean_interval: Duration,
    },
}

/// How long jobs run.
#[derive(Debug, Clone, PartialEq)]
pub enum JobDuration {
    /// Every job runs this long.
    Fixed(Duration),
    /// Uniform between the bounds.
    Uniform(Duration, Duration),
}

/// A job arrival trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Arrival pattern.
    pub arrival: Arrival,
    /// Job durations.
    pub duration: JobDuration,
    /// `runs-on` labels of every job.
    pub labels: Vec<String>,
}

impl Scenario {
    /// The schedule: (offset from start, job duration) per job, offsets non-decreasing.
    pub fn schedule(&self, rng: &mut StdRng) -> Vec<(Duration, Duration)> {
        let offsets: Vec<Duration> = match &self.arrival {
            Arrival::Single => vec![Duration::ZERO],
            Arrival::Burst(n) => vec![Duration::ZERO; *n],
            Arrival::Steady { count, interval } => (0..*count).map(|i| *interval * i as u32).collect(),
            Arrival::Poisson { count, mean_interval } => {
                let mut t = Duration::ZERO;
                (0..*count)
                    .map(|_| {
                        let u: f64 = rng.random_range(f64::EPSILON..1.0);
                        t += mean_interval.mul_f64(-u.ln());
                        t
                    })
                    .collect()
            }
        };
        offsets
            .into_iter()
            .map(|o| {
                let d = match &self.duration {
                    JobDuration::Fixed(d) => *d,
                    JobDuration::Uniform(lo, hi) if hi > lo => {
                        *lo + (*hi - *lo).mul_f64(rng.random_range(0.0..1.0))
                    }
                    JobDuration::Uniform(lo, _) => *lo,
                };
                (o, d)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn sc(arrival: Arrival) -> Scenario {
        Scenario {
            arrival,
            duration: JobDuration::Uniform(Duration::from_secs(1), Duration::from_secs(3)),
            labels: vec!["x".into()],
        }
    }

    #[test]
    fn shapes() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(sc(Arrival::Single).schedule(&mut rng).len(), 1);
        let burst = sc(Arrival::Burst(5)).schedule(&mut rng);
        assert!(burst.iter().all(|(o, d)| *o == Duration::ZERO
            && *d >= Duration::from_secs(1)
            && *d < Duration::from_secs(3)));
        let steady = sc(Arrival::Steady {
            count: 3,
            interval: Duration::from_millis(10),
        })
        .schedule(&mut rng);
        assert_eq!(
            steady.iter().map(|x| x.0).collect::<Vec<_>>(),
            [0, 10, 20].map(Duration::from_millis)
        );
    }

    #[test]
    fn poisson_is_reproducible_and_has_roughly_the_mean() {
        let s = sc(Arrival::Poisson {
            count: 2000,
            mean_interval: Duration::from_millis(100),
        });
        let a = s.schedule(&mut StdRng::seed_from_u64(7));
        let b = s.schedule(&mut StdRng::seed_from_u64(7));
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
        let mean = a.last().unwrap().0.as_secs_f64() / 2000.0;
        assert!((0.09..0.11).contains(&mean), "mean {mean}");
    }
}
