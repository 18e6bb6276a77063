//! Run-time switchable fault injection.

use std::time::Duration;

/// One kind of injected failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status (e.g. 500, 503) and a plain error body.
    Status(u16),
    /// Answer 429 with `Retry-After: <secs>`.
    RateLimit {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// Answer 403 with GitHub's primary rate-limit headers (`x-ratelimit-remaining: 0`).
    GitHubRateLimit {
        /// Seconds until `x-ratelimit-reset`.
        reset_in_secs: u64,
    },
    /// Serve the real answer but cut a 200 body in half.
    Truncate,
}

/// A fault applied to the next `remaining` matching requests.
#[derive(Debug, Clone)]
pub(crate) struct OneShot {
    pub kind: FaultKind,
    pub remaining: u32,
    pub path_contains: Option<String>,
}

/// Fault settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    pub latency: Duration,
    pub server_error_rate: f64,
    pub one_shots: Vec<OneShot>,
}

impl Faults {
    /// Takes the first one-shot fault matching `path`, if any.
    pub fn take(&mut self, path: &str) -> Option<FaultKind> {
        let idx = self
            .one_shots
            .iter()
            .position(|f| f.remaining > 0 && f.path_contains.as_deref().is_none_or(|p| path.contains(p)))?;
        let f = &mut self.one_shots[idx];
        f.remaining -= 1;
        let kind = f.kind.clone();
        if f.remaining == 0 {
            self.one_shots.remove(idx);
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shots_match_paths_and_run_out() {
        let mut f = Faults::default();
        f.one_shots.push(OneShot {
            kind: FaultKind::Status(503),
            remaining: 2,
            path_contains: Some("/broker/".into()),
        });
        assert_eq!(f.take("/api/v3/x"), None);
        assert_eq!(f.take("/broker/scalesets/message"), Some(FaultKind::Status(503)));
        assert_eq!(f.take("/broker/scalesets/message"), Some(FaultKind::Status(503)));
        assert_eq!(f.take("/broker/scalesets/message"), None);
    }
}
