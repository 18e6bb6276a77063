//! Summary statistics of durations (pure).

use serde::Serialize;

/// Count, p50, p95 and max of a set of durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// How many samples.
    pub count: usize,
    /// Median (nearest rank).
    pub p50_ms: u64,
    /// 95th percentile (nearest rank).
    pub p95_ms: u64,
    /// Largest sample.
    pub max_ms: u64,
}

impl Spread {
    /// The spread of `samples`, or `None` when there are none.
    pub fn of(samples: &[u64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Some(Self {
            count: sorted.len(),
            p50_ms: percentile(&sorted, 50)?,
            p95_ms: percentile(&sorted, 95)?,
            max_ms: *sorted.last()?,
        })
    }
}

/// The `p`th percentile of ascending `sorted` samples by the nearest-rank method: the smallest
/// sample that at least `p` percent of the samples do not exceed.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p.min(100)) * sorted.len() as u64).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank).ok()? - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50), Some(50));
        assert_eq!(percentile(&s, 95), Some(95));
        assert_eq!(percentile(&s, 100), Some(100));
        assert_eq!(percentile(&s, 0), Some(1));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn spread_sorts_its_samples() {
        assert_eq!(
            Spread::of(&[30, 10, 20]),
            Some(Spread {
                count: 3,
                p50_ms: 20,
                p95_ms: 30,
                max_ms: 30
            })
        );
        assert_eq!(Spread::of(&[]), None);
    }
}
