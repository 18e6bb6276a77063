//! A controller and a listener whose metrics registries are built as the binaries build them,
//! with events to record between scrapes, for evaluating alerts and dashboard queries.

use std::time::Duration;

use prometheus_client::{encoding::text::encode, registry::Registry};
use rssc_controller::metrics::{ControllerMetrics, ScaleSetLabels};
use rssc_github::{ActionsClient, ClientOptions, Credentials, GitHubConfig, RateLimit, Secret, Statistics};
use rssc_listener::{
    handler::{Handled, JobLabels, Started},
    metrics::ListenerMetrics,
};

use crate::{eval::Store, exposition::parse};

const URL: &str = "https://github.com/octo-org/app";

/// The controller and one listener, as registries that can be scraped between events.
pub struct Fleet {
    /// The controller's metrics.
    pub controller: ControllerMetrics,
    /// The registry the controller serves.
    pub controller_registry: Registry,
    /// The listener's metrics.
    pub listener: ListenerMetrics,
    /// The registry the listener serves.
    pub listener_registry: Registry,
    /// The listener's GitHub client.
    pub github: ActionsClient,
    /// The scale set's labels.
    pub set: ScaleSetLabels,
}

impl Fleet {
    /// A controller and one listener of the scale set `ci/linux`.
    #[allow(clippy::new_without_default)] // each one is a fresh fleet, not a default value
    pub fn new() -> Self {
        let mut controller_registry = Registry::default();
        let controller = ControllerMetrics::register(&mut controller_registry);
        let config = GitHubConfig::parse(URL).unwrap();
        let set = ScaleSetLabels::new("linux", "ci", &config.scope);
        let github = ActionsClient::new(
            config,
            Credentials::token(Secret::new("not-a-token".to_owned())).unwrap(),
            ClientOptions::default(),
        )
        .unwrap();
        let mut listener_registry = Registry::default();
        let listener = ListenerMetrics::register(&mut listener_registry, set.clone(), github.clone());
        Self {
            controller,
            controller_registry,
            listener,
            listener_registry,
            github,
            set,
        }
    }

    /// A steady minute: reconciles succeed, the listener has its session, jobs start in
    /// seconds, GitHub has plenty of rate limit left.
    pub fn calm(&self) {
        for _ in 0..20 {
            self.controller
                .reconciled("EphemeralRunner", Duration::from_millis(20), None);
        }
        self.controller
            .reconciled("EphemeralRunner", Duration::from_millis(20), Some("waiting"));
        self.controller.listener(&self.set, true);
        self.controller.runners(&self.set, 1, 4, 0);
        self.jobs_started(5, Duration::from_secs(8));
        self.listener.polls.inc();
        self.rate_limit(4500);
    }

    /// `n` jobs started after waiting `wait`.
    pub fn jobs_started(&self, n: usize, wait: Duration) {
        let labels = JobLabels {
            organization: "octo-org".into(),
            repository: "app".into(),
            job_name: "build".into(),
            event_name: "push".into(),
        };
        let started = (0..n)
            .map(|i| Started {
                runner_name: format!("linux-{i}"),
                job: Default::default(),
                labels: labels.clone(),
                startup: Some(wait),
            })
            .collect();
        self.listener.record_jobs(&Handled {
            started,
            ..Default::default()
        });
        self.listener.record_statistics(&Statistics {
            total_assigned_jobs: 5,
            total_running_jobs: 5,
            ..Default::default()
        });
    }

    /// GitHub reports `remaining` of 5000 requests left.
    pub fn rate_limit(&self, remaining: u64) {
        let limit = RateLimit {
            remaining,
            limit: 5000,
        };
        self.github.metrics().record_rate_limit(limit);
        self.controller.github().record_rate_limit(limit);
    }

    /// Scrapes both registries into `store` at `time`.
    pub fn scrape(&self, store: &mut Store, time: f64) {
        for registry in [&self.controller_registry, &self.listener_registry] {
            let mut text = String::new();
            encode(&mut text, registry).unwrap();
            store.scrape(time, &parse(&text).unwrap());
        }
    }

    /// Everything a dashboard shows happens once: failures, job completions, GitHub and
    /// Kubernetes errors, session conflicts, token refreshes.
    pub fn busy(&self) {
        self.calm();
        self.controller
            .reconciled("EphemeralRunner", Duration::from_millis(20), Some("kubernetes"));
        self.controller.runner_started(&self.set, Duration::from_secs(20));
        self.controller.runner_removed(&self.set, Duration::from_secs(3));
        self.controller.pod_failed(&self.set, "Error");
        self.controller.runner_failed(&self.set, "OOMKilled");
        for metrics in [self.controller.github(), self.github.shared_metrics()] {
            metrics.record("get_message", Some(200), Duration::from_millis(40));
            metrics.record("generate_jit_config", Some(503), Duration::from_millis(5));
            metrics.record_retry("generate_jit_config");
            metrics.record_token_refresh("admin");
        }
        for (status, path) in [
            (200, "/api/v1/namespaces/ci/pods"),
            (404, "/api/v1/namespaces/ci/secrets/linux-abcde"),
        ] {
            let call = rssc_runtime::kube_client::KubeCall::of(&http::Method::GET, path, None);
            rssc_runtime::kube_client::request_metrics().record(
                &call,
                Some(status),
                Duration::from_millis(4),
            );
        }
        // The API server's flow control rejected a request once; the client sent it again.
        let throttled =
            rssc_runtime::kube_client::KubeCall::of(&http::Method::POST, "/api/v1/namespaces/ci/pods", None);
        rssc_runtime::kube_client::request_metrics().record(&throttled, Some(429), Duration::from_millis(1));
        rssc_runtime::kube_client::request_metrics().retried(&throttled);
        self.listener.record_limits(rssc_listener::scaler::Limits {
            min_runners: 1,
            max_runners: 10,
        });
        self.listener.record_desired(5);
        self.listener.record_jobs(&Handled {
            completed: vec![rssc_listener::handler::Completed {
                runner_name: "linux-0".into(),
                finished_at: None,
                labels: JobLabels {
                    organization: "octo-org".into(),
                    repository: "app".into(),
                    job_name: "build".into(),
                    event_name: "push".into(),
                },
                result: "succeeded".into(),
                execution: Some(Duration::from_secs(90)),
                ran: true,
            }],
            ..Default::default()
        });
        self.listener.session_creations.inc();
        self.listener.session_conflicts.inc();
        self.listener.decisions.inc();
        self.listener.poll_duration.observe(49.0);
    }
}
