//! Request counters and latency per endpoint and status class, token refreshes by kind, and
//! the last rate limit GitHub reported. One [`Metrics`] may be shared by several clients
//! ([`crate::ActionsClient::with_metrics`]), so a process counts all its calls in one place.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Status class of an answer, or why there was none.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "error",
    }
}

/// Counters for one (endpoint, status class).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EndpointStats {
    /// Number of HTTP attempts (each retry counts).
    pub requests: u64,
    /// Sum of attempt latencies.
    pub total_latency: Duration,
    /// Largest attempt latency.
    pub max_latency: Duration,
}

/// One row of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    /// Endpoint label, e.g. `get_message`.
    pub endpoint: &'static str,
    /// `2xx`, `4xx`, `5xx`, `error`, ...
    pub status_class: &'static str,
    /// The counters.
    pub stats: EndpointStats,
}

/// Thread-safe request metrics; cheap to record, copied out by [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<BTreeMap<(&'static str, &'static str), EndpointStats>>,
    retries: Mutex<BTreeMap<&'static str, u64>>,
    token_refreshes: Mutex<BTreeMap<&'static str, u64>>,
    rate_limit: Mutex<Option<RateLimit>>,
}

/// GitHub's primary rate limit as the last response that carried it said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// `x-ratelimit-remaining`: requests left in the window.
    pub remaining: u64,
    /// `x-ratelimit-limit`: requests allowed in the window.
    pub limit: u64,
}

impl RateLimit {
    /// Reads the `x-ratelimit-remaining` and `x-ratelimit-limit` header values; `None` unless
    /// both are numbers.
    pub fn from_headers(remaining: Option<&str>, limit: Option<&str>) -> Option<Self> {
        Some(Self {
            remaining: remaining?.trim().parse().ok()?,
            limit: limit?.trim().parse().ok()?,
        })
    }
}

impl Metrics {
    /// Records one HTTP attempt.
    pub fn record(&self, endpoint: &'static str, status: Option<u16>, latency: Duration) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.entry((endpoint, status_class(status))).or_default();
        s.requests += 1;
        s.total_latency += latency;
        s.max_latency = s.max_latency.max(latency);
        // An endpoint's retry counter exists at 0 from its first call, so `increase()` and
        // `rate()` see its first retry (a series that appears at 1 shows no increase).
        self.retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(endpoint)
            .or_default();
    }

    /// Records that an attempt of `endpoint` is being retried.
    pub fn record_retry(&self, endpoint: &'static str) {
        *self
            .retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(endpoint)
            .or_default() += 1;
    }

    /// Records that a token of `kind` (`admin`, `installation`) is being fetched anew.
    pub fn record_token_refresh(&self, kind: &'static str) {
        *self
            .token_refreshes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// Records the rate limit a response reported.
    pub fn record_rate_limit(&self, rate_limit: RateLimit) {
        *self.rate_limit.lock().unwrap_or_else(|e| e.into_inner()) = Some(rate_limit);
    }

    /// Token refreshes per kind.
    pub fn token_refreshes(&self) -> Vec<(&'static str, u64)> {
        let map = self.token_refreshes.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&k, &v)| (k, v)).collect()
    }

    /// The rate limit the last response that carried one reported.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        *self.rate_limit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All rows, sorted by endpoint then class.
    pub fn snapshot(&self) -> Vec<MetricsRow> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(&(endpoint, status_class), &stats)| MetricsRow {
                endpoint,
                status_class,
                stats,
            })
            .collect()
    }

    /// Retry counts per endpoint.
    pub fn retries(&self) -> Vec<(&'static str, u64)> {
        let map = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(&k, &v)| (k, v)).collect()
    }

    /// Requests recorded for one endpoint and class (0 if none).
    pub fn count(&self, endpoint: &str, status_class: &str) -> u64 {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|((e, c), _)| *e == endpoint && *c == status_class)
            .map(|(_, s)| s.requests)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_endpoint_and_class() {
        let m = Metrics::default();
        m.record("get_message", Some(200), Duration::from_millis(5));
        m.record("get_message", Some(202), Duration::from_millis(15));
        m.record("get_message", Some(503), Duration::from_millis(1));
        m.record("get_message", None, Duration::from_millis(1));
        assert_eq!(m.count("get_message", "2xx"), 2);
        assert_eq!(m.count("get_message", "5xx"), 1);
        assert_eq!(m.count("get_message", "error"), 1);
        let rows = m.snapshot();
        let ok = rows.iter().find(|r| r.status_class == "2xx").unwrap();
        assert_eq!(ok.stats.total_latency, Duration::from_millis(20));
        assert_eq!(ok.stats.max_latency, Duration::from_millis(15));
    }

    #[test]
    fn an_endpoints_retries_exist_at_zero_from_its_first_call() {
        let m = Metrics::default();
        m.record("get_message", Some(200), Duration::from_millis(5));
        assert_eq!(m.retries(), vec![("get_message", 0)]);
        m.record_retry("get_message");
        m.record("get_message", Some(200), Duration::from_millis(5));
        assert_eq!(m.retries(), vec![("get_message", 1)]);
    }

    #[test]
    fn token_refreshes_and_rate_limit() {
        let m = Metrics::default();
        assert_eq!(m.rate_limit(), None);
        m.record_token_refresh("admin");
        m.record_token_refresh("admin");
        m.record_token_refresh("installation");
        assert_eq!(m.token_refreshes(), vec![("admin", 2), ("installation", 1)]);
        let limit = RateLimit::from_headers(Some("4990"), Some(" 5000")).unwrap();
        m.record_rate_limit(limit);
        assert_eq!(
            m.rate_limit(),
            Some(RateLimit {
                remaining: 4990,
                limit: 5000
            })
        );
        assert_eq!(RateLimit::from_headers(Some("x"), Some("5000")), None);
        assert_eq!(RateLimit::from_headers(None, Some("5000")), None);
    }
}
