//! What the binaries expose: each binary's metrics registry, built in process the way the binary
//! builds it, with every family recorded once, rendered as exposition text. Families without a
//! sample are not rendered, so everything a dashboard or alert may use is recorded here.

use std::time::Duration;

use prometheus_client::{encoding::text::encode, registry::Registry};
use rssc_controller::metrics::{ControllerMetrics, ScaleSetLabels};
use rssc_github::{
    ActionsClient, ClientOptions, Credentials, GitHubConfig, Metrics, RateLimit, Secret, Statistics,
};
use rssc_listener::{
    handler::{Completed, Handled, JobLabels, Started},
    metrics::ListenerMetrics,
    scaler::Limits,
};
use rssc_runtime::kube_client::{KubeCall, request_metrics};

const CONFIG_URL: &str = "https://github.com/octo-org/app";

fn render(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("metrics encode");
    text
}

fn github_calls(metrics: &Metrics) {
    metrics.record("get_message", Some(200), Duration::from_millis(40));
    metrics.record("generate_jit_config", Some(503), Duration::from_millis(5));
    metrics.record_retry("generate_jit_config");
    metrics.record_token_refresh("admin");
    metrics.record_rate_limit(RateLimit {
        remaining: 4000,
        limit: 5000,
    });
}

/// The controller's `/metrics`.
pub fn controller() -> String {
    let mut registry = Registry::default();
    let metrics = ControllerMetrics::register(&mut registry);
    let set = ScaleSetLabels::for_config_url("linux", "ci", CONFIG_URL);
    metrics.reconciled("EphemeralRunner", Duration::from_millis(12), None);
    metrics.reconciled("EphemeralRunner", Duration::from_millis(30), Some("kubernetes"));
    metrics.reconciled("EphemeralRunner", Duration::from_millis(30), Some("waiting"));
    metrics.runners(&set, 1, 3, 0);
    metrics.listener(&set, true);
    metrics.runner_started(&set, Duration::from_secs(14));
    metrics.runner_removed(&set, Duration::from_secs(2));
    metrics.pod_failed(&set, "Error");
    metrics.runner_failed(&set, "PendingTimeout");
    github_calls(&metrics.github());
    let call = KubeCall::of(
        &http::Method::PATCH,
        "/apis/scaleset.actions.github.com/v1alpha1/namespaces/ci/ephemeralrunners/r/status",
        None,
    );
    request_metrics().record(&call, Some(200), Duration::from_millis(3));
    request_metrics().retried(&call);
    render(&registry)
}

/// A listener's `/metrics`.
pub fn listener() -> String {
    let config = GitHubConfig::parse(CONFIG_URL).expect("config URL");
    let labels = ScaleSetLabels::new("linux", "ci", &config.scope);
    let client = ActionsClient::new(
        config,
        Credentials::token(Secret::new("not-a-token".to_owned())).expect("credentials"),
        ClientOptions::default(),
    )
    .expect("client");
    github_calls(client.metrics());
    let mut registry = Registry::default();
    let metrics = ListenerMetrics::register(&mut registry, labels, client);
    metrics.record_statistics(&Statistics {
        total_assigned_jobs: 4,
        total_running_jobs: 2,
        total_registered_runners: 3,
        total_busy_runners: 2,
        total_idle_runners: 1,
        ..Default::default()
    });
    metrics.record_limits(Limits {
        min_runners: 1,
        max_runners: 10,
    });
    metrics.record_desired(4);
    let job = JobLabels {
        organization: "octo-org".into(),
        repository: "app".into(),
        job_name: "build".into(),
        event_name: "push".into(),
    };
    metrics.record_jobs(&Handled {
        started: vec![Started {
            runner_name: "linux-abcde".into(),
            job: Default::default(),
            labels: job.clone(),
            startup: Some(Duration::from_secs(9)),
        }],
        completed: vec![Completed {
            runner_name: "linux-abcde".into(),
            finished_at: None,
            labels: job,
            result: "succeeded".into(),
            execution: Some(Duration::from_secs(120)),
            ran: true,
        }],
        ..Default::default()
    });
    metrics.session_creations.inc();
    metrics.session_conflicts.inc();
    metrics.polls.inc();
    metrics.decisions.inc();
    metrics.poll_duration.observe(50.0);
    render(&registry)
}

/// What ARC's listener and controller expose (actions-runner-controller's
/// `cmd/ghalistener/metrics` and `controllers/actions.github.com/metrics`), as one sample per
/// metric: names and default labels only.
pub fn arc() -> String {
    let set = r#"name="s",namespace="n",repository="r",organization="o",enterprise="""#;
    let job = r#"enterprise="",organization="o",repository="r",job_name="j",event_name="push""#;
    let mut text = String::new();
    for gauge in [
        "gha_assigned_jobs",
        "gha_running_jobs",
        "gha_registered_runners",
        "gha_busy_runners",
        "gha_idle_runners",
        "gha_min_runners",
        "gha_max_runners",
        "gha_desired_runners",
        "gha_controller_pending_ephemeral_runners",
        "gha_controller_running_ephemeral_runners",
        "gha_controller_failed_ephemeral_runners",
        "gha_controller_running_listeners",
    ] {
        text.push_str(&format!("{gauge}{{{set}}} 1\n"));
    }
    text.push_str(&format!("gha_started_jobs_total{{{job}}} 1\n"));
    text.push_str(&format!(
        "gha_completed_jobs_total{{{job},job_result=\"succeeded\"}} 1\n"
    ));
    for histogram in [
        "gha_job_startup_duration_seconds",
        "gha_job_execution_duration_seconds",
    ] {
        let labels = if histogram.contains("startup") {
            job.to_owned()
        } else {
            format!("{job},job_result=\"succeeded\"")
        };
        text.push_str(&format!("{histogram}_bucket{{{labels},le=\"+Inf\"}} 1\n"));
        text.push_str(&format!("{histogram}_sum{{{labels}}} 1\n"));
        text.push_str(&format!("{histogram}_count{{{labels}}} 1\n"));
    }
    text
}
