//! Retry policy: which answers are retried and how long to wait (pure, no I/O).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How requests are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// The first backoff step.
    pub base_delay: Duration,
    /// The largest computed backoff step.
    pub max_delay: Duration,
    /// The longest server-requested wait (`Retry-After`, rate-limit reset) we honour; longer
    /// waits fail the call with `RateLimited` instead of blocking.
    pub max_server_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_server_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The backoff before retry number `attempt` (0-based), with "equal jitter":
    /// half the exponential step plus `jitter` (in `[0, 1)`) times the other half.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2f64.powi(attempt.min(30) as i32);
        let step = (self.base_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64(step / 2.0 + step / 2.0 * jitter)
    }

    /// The wait before the next retry: the server's request when it made one, else the backoff.
    /// `None` means the server asked for longer than `max_server_delay`: do not retry.
    pub fn delay(&self, attempt: u32, jitter: f64, server_delay: Option<Duration>) -> Option<Duration> {
        match server_delay {
            Some(d) if d > self.max_server_delay => None,
            Some(d) => Some(d),
            None => Some(self.backoff(attempt, jitter)),
        }
    }
}

/// Whether a status is worth retrying: 429 and 5xx except 501.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status) && status != 501
}

/// Parses `Retry-After` (delta-seconds or an HTTP date) relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_http_date(value)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// GitHub's primary rate limit: `x-ratelimit-remaining: 0` with `x-ratelimit-reset: <epoch s>`.
pub fn rate_limit_delay(remaining: Option<&str>, reset: Option<&str>, now: SystemTime) -> Option<Duration> {
    if remaining?.trim() != "0" {
        return None;
    }
    let reset = reset?.trim().parse::<u64>().ok()?;
    let reset = UNIX_EPOCH + Duration::from_secs(reset);
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_server_delay: Duration::from_secs(5),
        };
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(400));
        assert_eq!(p.backoff(20, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(20, 0.0), Duration::from_millis(500));
        assert!(p.backoff(3, 0.5) >= p.backoff(3, 0.0));
    }

    #[test]
    fn server_delay_wins_but_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, 0.0, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(p.delay(0, 0.0, Some(Duration::from_secs(600))), None);
    }

    #[test]
    fn retryable_statuses() {
        assert!(is_retryable_status(429));
        assert!(is_retryable_status(500));
        assert!(is_retryable_status(503));
        assert!(!is_retryable_status(501));
        assert!(!is_retryable_status(404));
        assert!(!is_retryable_status(401));
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // Sun, 06 Nov 1994 08:49:27 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:17 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn github_rate_limit_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            rate_limit_delay(Some("0"), Some("1030"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(rate_limit_delay(Some("12"), Some("1030"), now), None);
        assert_eq!(rate_limit_delay(None, Some("1030"), now), None);
    }
}
