//! The controller's metrics: reconciles per kind (count, errors by bounded category,
//! duration), and ARC's `gha_controller_*` runner and listener gauges per scale set, so ARC
//! dashboards keep working.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// ARC's labels of a scale set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ScaleSetLabels {
    /// Scale set name.
    pub name: String,
    /// Namespace of the runners.
    pub namespace: String,
    /// Repository, for repository scale sets.
    pub repository: String,
    /// Organization, for organization and repository scale sets.
    pub organization: String,
    /// Enterprise, for enterprise scale sets.
    pub enterprise: String,
}

impl ScaleSetLabels {
    /// Labels of the scale set `name` registered at `config_url`, whose runners live in `namespace`.
    pub fn new(name: &str, namespace: &str, config_url: &str) -> Self {
        let (mut enterprise, mut organization, mut repository) =
            (String::new(), String::new(), String::new());
        match rssc_github::GitHubConfig::parse(config_url).map(|c| c.scope) {
            Ok(rssc_github::Scope::Enterprise(e)) => enterprise = e,
            Ok(rssc_github::Scope::Organization(o)) => organization = o,
            Ok(rssc_github::Scope::Repository { owner, repo }) => {
                organization = owner;
                repository = repo;
            }
            Err(_) => {}
        }
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            repository,
            organization,
            enterprise,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    category: &'static str,
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
        metrics
    }

    /// Records one reconcile of `kind` that took `took` and failed with `error` (a category).
    pub fn reconciled(&self, kind: &'static str, took: Duration, error: Option<&'static str>) {
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
        let labels = ScaleSetLabels::new("linux", "ci", "https://github.com/org/app");
        m.runners(&labels, 2, 5, 1);
        m.listener(&labels, true);
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
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}
