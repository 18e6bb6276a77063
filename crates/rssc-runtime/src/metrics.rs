//! Metric pieces both binaries share: ARC's labels of a scale set, and the export of the GitHub
//! client's counters (requests by endpoint, retries, token refreshes, rate limit).

use std::{fmt, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};
use rssc_github::{GitHubConfig, Metrics, Scope};

/// ARC's labels of a scale set (`name`, `namespace`, `repository`, `organization`,
/// `enterprise`), so ARC dashboards keep working.
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
    /// Labels of the scale set `name` registered at `scope`, whose runners live in `namespace`.
    pub fn new(name: &str, namespace: &str, scope: &Scope) -> Self {
        let (enterprise, organization, repository) = match scope {
            Scope::Enterprise(e) => (e.clone(), String::new(), String::new()),
            Scope::Organization(o) => (String::new(), o.clone(), String::new()),
            Scope::Repository { owner, repo } => (String::new(), owner.clone(), repo.clone()),
        };
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            repository,
            organization,
            enterprise,
        }
    }

    /// Labels of the scale set `name` registered at `config_url`; a URL that does not parse
    /// leaves the scope labels empty.
    pub fn for_config_url(name: &str, namespace: &str, config_url: &str) -> Self {
        match GitHubConfig::parse(config_url) {
            Ok(config) => Self::new(name, namespace, &config.scope),
            Err(_) => Self {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                ..Self::default()
            },
        }
    }
}

/// Exports a GitHub client's [`Metrics`] at scrape time as `rssc_github_*`.
pub struct GitHubCollector(pub Arc<Metrics>);

impl fmt::Debug for GitHubCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitHubCollector")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenLabels {
    kind: &'static str,
}

impl Collector for GitHubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let rows = self.0.snapshot();
        let mut family = encoder.encode_descriptor(
            "rssc_github_requests",
            "GitHub API requests by endpoint and status class (every attempt counts)",
            None,
            MetricType::Counter,
        )?;
        for row in &rows {
            let labels = RequestLabels {
                endpoint: row.endpoint,
                status_class: row.status_class,
            };
            ConstCounter::new(row.stats.requests).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "rssc_github_request_duration_seconds",
            "Time spent in GitHub API requests by endpoint and status class",
            None,
            MetricType::Counter,
        )?;
        for row in &rows {
            let labels = RequestLabels {
                endpoint: row.endpoint,
                status_class: row.status_class,
            };
            ConstCounter::new(row.stats.total_latency.as_secs_f64())
                .encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "rssc_github_retries",
            "GitHub API attempts retried, by endpoint",
            None,
            MetricType::Counter,
        )?;
        for (endpoint, count) in self.0.retries() {
            ConstCounter::new(count).encode(family.encode_family(&EndpointLabels { endpoint })?)?;
        }
        let mut family = encoder.encode_descriptor(
            "rssc_github_token_refreshes",
            "Tokens fetched anew, by kind (admin: Actions Service connection; installation: GitHub App)",
            None,
            MetricType::Counter,
        )?;
        for (kind, count) in self.0.token_refreshes() {
            ConstCounter::new(count).encode(family.encode_family(&TokenLabels { kind })?)?;
        }
        if let Some(limit) = self.0.rate_limit() {
            let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
            let remaining = gauge(limit.remaining);
            remaining.encode(encoder.encode_descriptor(
                "rssc_github_rate_limit_remaining",
                "Requests left in GitHub's rate limit window, as the last response said",
                None,
                remaining.metric_type(),
            )?)?;
            let allowed = gauge(limit.limit);
            allowed.encode(encoder.encode_descriptor(
                "rssc_github_rate_limit_limit",
                "Requests GitHub allows per rate limit window, as the last response said",
                None,
                allowed.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::{encoding::text::encode, registry::Registry};
    use rssc_github::RateLimit;

    use super::*;

    #[test]
    fn scope_labels_follow_the_config_url() {
        let repo = ScaleSetLabels::for_config_url("linux", "ci", "https://github.com/org/app");
        assert_eq!(
            (
                repo.organization.as_str(),
                repo.repository.as_str(),
                repo.enterprise.as_str()
            ),
            ("org", "app", "")
        );
        let enterprise = ScaleSetLabels::for_config_url("linux", "ci", "https://github.com/enterprises/acme");
        assert_eq!(enterprise.enterprise, "acme");
        let bad = ScaleSetLabels::for_config_url("linux", "ci", "not a url");
        assert_eq!((bad.name.as_str(), bad.organization.as_str()), ("linux", ""));
    }

    #[test]
    fn github_counters_are_exported_with_bounded_labels() {
        let metrics = Arc::new(Metrics::default());
        metrics.record("generate_jit_config", Some(201), Duration::from_millis(30));
        metrics.record("generate_jit_config", Some(503), Duration::from_millis(10));
        metrics.record_retry("generate_jit_config");
        metrics.record_token_refresh("admin");
        let mut registry = Registry::default();
        registry.register_collector(Box::new(GitHubCollector(metrics.clone())));
        let text = |registry: &Registry| {
            let mut text = String::new();
            encode(&mut text, registry).unwrap();
            text
        };
        let before = text(&registry);
        assert!(
            !before.contains("rate_limit"),
            "no rate limit until GitHub reports one:\n{before}"
        );
        metrics.record_rate_limit(RateLimit {
            remaining: 120,
            limit: 5000,
        });
        let after = text(&registry);
        for line in [
            r#"rssc_github_requests_total{endpoint="generate_jit_config",status_class="2xx"} 1"#,
            r#"rssc_github_requests_total{endpoint="generate_jit_config",status_class="5xx"} 1"#,
            r#"rssc_github_retries_total{endpoint="generate_jit_config"} 1"#,
            r#"rssc_github_token_refreshes_total{kind="admin"} 1"#,
            "rssc_github_rate_limit_remaining 120",
            "rssc_github_rate_limit_limit 5000",
        ] {
            assert!(after.contains(line), "missing {line} in\n{after}");
        }
    }
}
