//! What a bench run writes: the machine, the settings, and each scenario's runs and medians.

use serde::{Deserialize, Serialize};

use crate::{figures::Figures, machine::Machine, plan::Case};

/// One bench run, as written to `docs/benchmarks/runs/<UTC time>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// When the run started, UTC (`2026-11-22T21:04:05Z`).
    pub started_at: String,
    /// How long the whole run took, seconds.
    pub duration_s: f64,
    /// The machine.
    pub machine: Machine,
    /// How the binaries ran.
    pub settings: Settings,
    /// The scenarios, in the order they ran.
    pub cases: Vec<CaseResult>,
}

/// How the binaries ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Cargo profile of the controller and listener binaries.
    pub profile: String,
    /// Their target and linking (see [`crate::build`]); empty in runs from before it was
    /// recorded, which measured host builds.
    #[serde(default)]
    pub build: String,
    /// The controller's Kubernetes client QPS (and the limit client's).
    pub kube_qps: u32,
    /// The controller's Kubernetes client burst (and the limit client's).
    pub kube_burst: u32,
    /// EphemeralRunner reconciles at once (and the limit client's concurrency).
    pub runner_concurrency: u16,
    /// The fake GitHub's long-poll window, seconds (the end-to-end harness's setting).
    pub long_poll_window_s: u64,
    /// The controller's log filter; empty in runs from before it was recorded (`info`).
    #[serde(default)]
    pub controller_log_level: String,
    /// The bench process's allocator (`jemalloc` or `system`); empty in runs from before it
    /// was recorded, which used the C library's.
    #[serde(default)]
    pub bench_allocator: String,
    /// How late the fake GitHub answered every call while measuring, milliseconds; 0 (at
    /// once) in runs from before it could be set.
    #[serde(default)]
    pub github_latency_ms: u64,
}

/// One scenario's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The scenario.
    pub case: Case,
    /// Figures of each run that finished.
    pub runs: Vec<Figures>,
    /// Why the other runs failed.
    pub failures: Vec<String>,
    /// Each figure's median over `runs`.
    pub median: Figures,
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `secs` seconds after the Unix epoch.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A file name for a run that started at `started_at` (no colons).
pub fn file_name(started_at: &str) -> String {
    format!("{}.json", started_at.replace(':', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_381_445), "2026-11-22T21:04:05Z");
        assert_eq!(file_name("2026-11-22T21:04:05Z"), "2026-11-22T210405Z.json");
    }
}
