//! Request counters and latency per endpoint and status class.

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
}

impl Metrics {
    /// Records one HTTP attempt.
    pub fn record(&self, endpoint: &'static str, status: Option<u16>, latency: Duration) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.entry((endpoint, status_class(status))).or_default();
        s.requests += 1;
        s.total_latency += latency;
        s.max_latency = s.max_latency.max(latency);
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
}
