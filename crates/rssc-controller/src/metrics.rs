//! The controller's metrics: reconciles per kind (count, errors by bounded category,
//! duration), ARC's `gha_controller_*` runner and listener gauges per scale set (so ARC
//! dashboards keep working), runner lifecycle latencies and failures by bounded reason, and the
//! GitHub and Kubernetes clients' request counters. docs/metrics.md lists them all.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use rssc_runtime::metrics::GitHubCollector;

pub use rssc_runtime::metrics::ScaleSetLabels;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    #[prometheus(flatten)]
    scale_set: ScaleSetLabels,
    reason: &'static str,
}

/// The error categories of a reconcile ([`crate::reconcile::Error::category`]).
pub const ERROR_CATEGORIES: [&str; 3] = ["kubernetes", "finalizer", "waiting"];

/// The reasons a runner or its Pod fails, as metric labels; anything else is `Other`, so the
/// label set stays bounded whatever a Pod's status says.
pub const FAILURE_REASONS: [&str; 15] = [
    "PodVanished",
    "OOMKilled",
    "Evicted",
    "PendingTimeout",
    "InitContainerFailed",
    "RunnerExited",
    "PodFailed",
    "Error",
    "ContainerCannotRun",
    "DeadlineExceeded",
    "InvalidPod",
    "RunnerNameTaken",
    "RunnerVersionDeprecated",
    "RunnerDeregistered",
    "Other",
];

/// The bounded label of a failure reason (see [`FAILURE_REASONS`]).
pub fn failure_reason(reason: &str) -> &'static str {
    FAILURE_REASONS
        .iter()
        .find(|known| **known == reason)
        .copied()
        .unwrap_or("Other")
}

/// Every metric the controller records.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    pending: Family<ScaleSetLabels, Gauge>,
    running: Family<ScaleSetLabels, Gauge>,
    failed: Family<ScaleSetLabels, Gauge>,
    listeners: Family<ScaleSetLabels, Gauge>,
    runner_startup: Family<ScaleSetLabels, Histogram, fn() -> Histogram>,
    runner_removal: Family<ScaleSetLabels, Histogram, fn() -> Histogram>,
    pod_failures: Family<FailureLabels, Counter>,
    runner_failures: Family<FailureLabels, Counter>,
    github: Arc<rssc_github::Metrics>,
}

/// Buckets for runner lifecycle latencies, in seconds: image pulls and node scale-up take
/// minutes, so they reach 30 minutes.
const LIFECYCLE_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0,
];

fn lifecycle_histogram() -> Histogram {
    Histogram::new(LIFECYCLE_BUCKETS)
}

fn reconcile_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl ControllerMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(reconcile_histogram),
            pending: Family::default(),
            running: Family::default(),
            failed: Family::default(),
            listeners: Family::default(),
            runner_startup: Family::new_with_constructor(lifecycle_histogram),
            runner_removal: Family::new_with_constructor(lifecycle_histogram),
            pod_failures: Family::default(),
            runner_failures: Family::default(),
            github: Arc::default(),
        };
        let m = metrics.clone();
        registry.register(
            "rssc_controller_reconciles",
            "Reconciles run, by kind",
            m.reconciles,
        );
        registry.register(
            "rssc_controller_reconcile_errors",
            "Reconciles that failed, by kind and error category",
            m.errors,
        );
        registry.register(
            "rssc_controller_reconcile_duration_seconds",
            "Time per reconcile, by kind",
            m.duration,
        );
        registry.register(
            "gha_controller_pending_ephemeral_runners",
            "Runners not registered or whose Pod is not running yet",
            m.pending,
        );
        registry.register(
            "gha_controller_running_ephemeral_runners",
            "Runners running (idle or busy)",
            m.running,
        );
        registry.register(
            "gha_controller_failed_ephemeral_runners",
            "Runners that failed",
            m.failed,
        );
        registry.register(
            "gha_controller_running_listeners",
            "1 while the scale set's listener has a session",
            m.listeners,
        );
        registry.register(
            "rssc_controller_runner_startup_duration_seconds",
            "From an EphemeralRunner's creation until its runner Pod runs",
            m.runner_startup,
        );
        registry.register(
            "rssc_controller_runner_removal_duration_seconds",
            "From a runner's job finishing until its EphemeralRunner is removed",
            m.runner_removal,
        );
        registry.register(
            "rssc_controller_runner_pod_failures",
            "Runner Pods that failed, by bounded reason (the runner may be retried)",
            m.pod_failures,
        );
        registry.register(
            "rssc_controller_runner_failures",
            "Runners given up as Failed, by bounded reason (a new runner replaces each)",
            m.runner_failures,
        );
        registry.register_collector(Box::new(GitHubCollector(m.github)));
        rssc_runtime::kube_client::request_metrics().register(registry);
        metrics
    }

    /// Where every GitHub client of the controller counts its calls.
    pub fn github(&self) -> Arc<rssc_github::Metrics> {
        self.github.clone()
    }

    /// Records that a runner's Pod runs, `took` after its EphemeralRunner was created.
    pub fn runner_started(&self, labels: &ScaleSetLabels, took: Duration) {
        self.runner_startup
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// Records that an EphemeralRunner is being removed, `took` after its job finished.
    pub fn runner_removed(&self, labels: &ScaleSetLabels, took: Duration) {
        self.runner_removal
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// Records a runner Pod that failed with `reason`.
    pub fn pod_failed(&self, labels: &ScaleSetLabels, reason: &str) {
        self.pod_failures
            .get_or_create(&FailureLabels {
                scale_set: labels.clone(),
                reason: failure_reason(reason),
            })
            .inc();
    }

    /// Records a runner given up as Failed with `reason`.
    pub fn runner_failed(&self, labels: &ScaleSetLabels, reason: &str) {
        self.runner_failures
            .get_or_create(&FailureLabels {
                scale_set: labels.clone(),
                reason: failure_reason(reason),
            })
            .inc();
    }

    /// Records one reconcile of `kind` that took `took` and failed with `error` (a category).
    pub fn reconciled(&self, kind: &'static str, took: Duration, error: Option<&'static str>) {
        // Every error series exists from the first reconcile on, at 0: `increase()` needs a
        // sample before the first error to count it, so alerts see the first errors too.
        for category in ERROR_CATEGORIES {
            self.errors
                .get_or_create(&ErrorLabels { kind, category })
                .inc_by(0);
        }
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
        self.duration
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
        if let Some(category) = error {
            self.errors.get_or_create(&ErrorLabels { kind, category }).inc();
        }
    }

    /// Records the runners of a scale set by state.
    pub fn runners(&self, labels: &ScaleSetLabels, pending: usize, running: usize, failed: usize) {
        // The scale set's failure series exist at 0 before its first failure, so `increase()`
        // counts that failure too (a series first seen at 1 shows no increase).
        for reason in FAILURE_REASONS {
            let failure = FailureLabels {
                scale_set: labels.clone(),
                reason,
            };
            self.pod_failures.get_or_create(&failure).inc_by(0);
            self.runner_failures.get_or_create(&failure).inc_by(0);
        }
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.pending.get_or_create(labels).set(gauge(pending));
        self.running.get_or_create(labels).set(gauge(running));
        self.failed.get_or_create(labels).set(gauge(failed));
    }

    /// Records whether a scale set's listener has a session.
    pub fn listener(&self, labels: &ScaleSetLabels, ready: bool) {
        self.listeners.get_or_create(labels).set(i64::from(ready));
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn arc_names_and_bounded_labels() {
        let mut registry = Registry::default();
        let m = ControllerMetrics::register(&mut registry);
        m.reconciled("EphemeralRunner", Duration::from_millis(20), None);
        m.reconciled("EphemeralRunner", Duration::from_millis(20), Some("kubernetes"));
        let labels = ScaleSetLabels::for_config_url("linux", "ci", "https://github.com/org/app");
        m.runners(&labels, 2, 5, 1);
        m.listener(&labels, true);
        m.runner_started(&labels, Duration::from_secs(12));
        m.runner_removed(&labels, Duration::from_secs(3));
        m.pod_failed(&labels, "Error");
        m.runner_failed(&labels, "an unheard-of reason from a Pod status");
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let set = r#"name="linux",namespace="ci",repository="app",organization="org",enterprise="""#;
        for line in [
            r#"rssc_controller_reconciles_total{kind="EphemeralRunner"} 2"#.to_owned(),
            r#"rssc_controller_reconcile_errors_total{kind="EphemeralRunner",category="kubernetes"} 1"#
                .to_owned(),
            format!("gha_controller_pending_ephemeral_runners{{{set}}} 2"),
            format!("gha_controller_running_ephemeral_runners{{{set}}} 5"),
            format!("gha_controller_failed_ephemeral_runners{{{set}}} 1"),
            format!("gha_controller_running_listeners{{{set}}} 1"),
            format!("rssc_controller_runner_startup_duration_seconds_count{{{set}}} 1"),
            format!(r#"rssc_controller_runner_startup_duration_seconds_bucket{{le="15.0",{set}}} 1"#),
            format!("rssc_controller_runner_removal_duration_seconds_sum{{{set}}} 3.0"),
            format!(r#"rssc_controller_runner_pod_failures_total{{{set},reason="Error"}} 1"#),
            format!(r#"rssc_controller_runner_failures_total{{{set},reason="Other"}} 1"#),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn series_exist_before_the_first_error_or_failure() {
        let mut registry = Registry::default();
        let m = ControllerMetrics::register(&mut registry);
        m.reconciled("RunnerSet", Duration::from_millis(5), None);
        let labels = ScaleSetLabels::for_config_url("linux", "ci", "https://github.com/org");
        m.runners(&labels, 0, 0, 0);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for category in ERROR_CATEGORIES {
            let line = format!(
                r#"rssc_controller_reconcile_errors_total{{kind="RunnerSet",category="{category}"}} 0"#
            );
            assert!(text.contains(&line), "missing {line}");
        }
        for reason in FAILURE_REASONS {
            assert!(text.contains(&format!(r#"reason="{reason}"}} 0"#)), "{reason}");
        }
        assert!(
            [
                crate::reconcile::Error::Waiting(String::new()),
                crate::reconcile::Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject)),
            ]
            .iter()
            .all(|e| ERROR_CATEGORIES.contains(&e.category())),
            "every category a reconcile reports is initialized"
        );
    }

    #[test]
    fn failure_reasons_are_bounded() {
        assert_eq!(failure_reason("OOMKilled"), "OOMKilled");
        assert_eq!(failure_reason("Evicted"), "Evicted");
        assert_eq!(failure_reason("oomkilled"), "Other");
        assert_eq!(failure_reason(""), "Other");
        assert_eq!(
            failure_reason(rssc_api::consts::reasons::RUNNER_VERSION_DEPRECATED),
            "RunnerVersionDeprecated"
        );
    }
}
