//! Failure injection: per pod or by a seeded rate.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng, rngs::StdRng};

/// What goes wrong with a pod's main container once it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The container exits with this code.
    Exit(i32),
    /// The container is OOM-killed (exit 137, reason `OOMKilled`).
    OomKill,
    /// The kubelet evicts the pod (phase Failed, reason `Evicted`).
    Evict,
}

/// Which pods fail and how.
#[derive(Debug, Clone, Default)]
pub struct FailurePolicy {
    /// Faults for pods by name.
    pub per_pod: BTreeMap<String, Fault>,
    /// Share of the other pods (0.0..=1.0) that get `rate_fault`.
    pub rate: f64,
    /// The fault drawn by `rate`.
    pub rate_fault: Option<Fault>,
    /// Seed of the draws, so a run is repeatable.
    pub seed: u64,
}

/// Draws faults for pods in the order they start.
#[derive(Debug)]
pub struct FaultPicker {
    policy: FailurePolicy,
    rng: StdRng,
}

impl FaultPicker {
    /// A picker for `policy`.
    pub fn new(policy: FailurePolicy) -> Self {
        let rng = StdRng::seed_from_u64(policy.seed);
        Self { policy, rng }
    }

    /// The fault of the pod named `pod`, if any. Draws from the seeded rate only for pods
    /// without a fault of their own.
    pub fn pick(&mut self, pod: &str) -> Option<Fault> {
        if let Some(f) = self.policy.per_pod.get(pod) {
            return Some(*f);
        }
        let fault = self.policy.rate_fault?;
        let rate = self.policy.rate.clamp(0.0, 1.0);
        self.rng.random_bool(rate).then_some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_pod_faults_win_and_the_rate_is_seeded() {
        let policy = FailurePolicy {
            per_pod: BTreeMap::from([("a".to_owned(), Fault::Exit(3))]),
            rate: 0.5,
            rate_fault: Some(Fault::OomKill),
            seed: 7,
        };
        let draw = || {
            let mut p = FaultPicker::new(policy.clone());
            (0..64).map(|i| p.pick(&format!("p{i}"))).collect::<Vec<_>>()
        };
        let first = draw();
        assert_eq!(first, draw(), "same seed, same faults");
        let hits = first.iter().filter(|f| f.is_some()).count();
        assert!((16..=48).contains(&hits), "about half: {hits}");
        assert_eq!(FaultPicker::new(policy).pick("a"), Some(Fault::Exit(3)));
    }

    #[test]
    fn no_policy_no_faults() {
        let mut p = FaultPicker::new(FailurePolicy::default());
        assert!((0..10).all(|i| p.pick(&i.to_string()).is_none()));
    }
}
