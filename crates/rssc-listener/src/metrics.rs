//! The listener's metrics. ARC's `gha_*` names, labels and buckets, so ARC dashboards keep
//! working, plus ours under `rssc_`.

use std::borrow::Cow;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use rssc_github::{ActionsClient, Statistics};
use rssc_runtime::metrics::GitHubCollector;

use crate::{
    handler::{Handled, JobLabels},
    scaler::Limits,
};

pub use rssc_runtime::metrics::ScaleSetLabels;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StartedLabels {
    enterprise: String,
    organization: String,
    repository: String,
    job_name: String,
    event_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CompletedLabels {
    enterprise: String,
    organization: String,
    repository: String,
    job_name: String,
    event_name: String,
    job_result: String,
}

/// ARC's job duration buckets, in seconds.
const JOB_BUCKETS: [f64; 45] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 18.0, 20.0, 25.0,
    30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 150.0, 180.0, 210.0, 240.0, 300.0, 360.0,
    420.0, 480.0, 540.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0,
];

fn job_histogram() -> Histogram {
    Histogram::new(JOB_BUCKETS)
}

/// Every metric the listener records.
#[derive(Clone, Debug)]
pub struct ListenerMetrics {
    labels: ScaleSetLabels,
    assigned_jobs: Family<ScaleSetLabels, Gauge>,
    running_jobs: Family<ScaleSetLabels, Gauge>,
    registered_runners: Family<ScaleSetLabels, Gauge>,
    busy_runners: Family<ScaleSetLabels, Gauge>,
    idle_runners: Family<ScaleSetLabels, Gauge>,
    min_runners: Family<ScaleSetLabels, Gauge>,
    max_runners: Family<ScaleSetLabels, Gauge>,
    desired_runners: Family<ScaleSetLabels, Gauge>,
    started_jobs: Family<StartedLabels, Counter>,
    completed_jobs: Family<CompletedLabels, Counter>,
    startup_duration: Family<StartedLabels, Histogram, fn() -> Histogram>,
    execution_duration: Family<CompletedLabels, Histogram, fn() -> Histogram>,
    queue_depth: Family<ScaleSetLabels, Gauge>,
    /// Message sessions created (first start, restarts, evictions).
    pub session_creations: Counter,
    /// Session creations refused because another session holds the scale set.
    pub session_conflicts: Counter,
    /// Long polls answered (with or without a message).
    pub polls: Counter,
    /// Decisions written to the EphemeralRunnerSet.
    pub decisions: Counter,
    /// How long long polls took (up to the server's ~50 s window when idle).
    pub poll_duration: Histogram,
}

impl ListenerMetrics {
    /// Registers the metrics of the scale set `labels`, and the GitHub client's request counters.
    pub fn register(registry: &mut Registry, labels: ScaleSetLabels, client: ActionsClient) -> Self {
        let metrics = Self {
            labels,
            assigned_jobs: Family::default(),
            running_jobs: Family::default(),
            registered_runners: Family::default(),
            busy_runners: Family::default(),
            idle_runners: Family::default(),
            min_runners: Family::default(),
            max_runners: Family::default(),
            desired_runners: Family::default(),
            started_jobs: Family::default(),
            completed_jobs: Family::default(),
            startup_duration: Family::new_with_constructor(job_histogram),
            execution_duration: Family::new_with_constructor(job_histogram),
            queue_depth: Family::default(),
            session_creations: Counter::default(),
            session_conflicts: Counter::default(),
            polls: Counter::default(),
            decisions: Counter::default(),
            poll_duration: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 60.0, 90.0,
            ]),
        };
        let m = metrics.clone();
        registry.register(
            "gha_assigned_jobs",
            "Jobs GitHub assigned to the scale set",
            m.assigned_jobs,
        );
        registry.register(
            "gha_running_jobs",
            "Jobs running on the scale set's runners",
            m.running_jobs,
        );
        registry.register(
            "gha_registered_runners",
            "Runners registered with GitHub",
            m.registered_runners,
        );
        registry.register(
            "gha_busy_runners",
            "Registered runners running a job",
            m.busy_runners,
        );
        registry.register(
            "gha_idle_runners",
            "Registered runners without a job",
            m.idle_runners,
        );
        registry.register("gha_min_runners", "minRunners of the scale set", m.min_runners);
        registry.register("gha_max_runners", "maxRunners of the scale set", m.max_runners);
        registry.register(
            "gha_desired_runners",
            "Runners the listener asks for",
            m.desired_runners,
        );
        registry.register("gha_started_jobs", "Jobs runners started", m.started_jobs);
        registry.register("gha_completed_jobs", "Jobs runners completed", m.completed_jobs);
        registry.register(
            "gha_job_startup_duration_seconds",
            "From assignment to the scale set until a runner took the job",
            m.startup_duration,
        );
        registry.register(
            "gha_job_execution_duration_seconds",
            "From a runner taking the job until it finished",
            m.execution_duration,
        );
        registry.register(
            "rssc_listener_queue_depth",
            "Jobs assigned but not yet running (assigned - running)",
            m.queue_depth,
        );
        // The listener's own counters and its GitHub and Kubernetes clients' carry the scale
        // set's labels, so alerts can name the scale set whatever labels the scrape adds.
        let labels = &metrics.labels;
        let registry = registry.sub_registry_with_labels(
            [
                ("name", &labels.name),
                ("namespace", &labels.namespace),
                ("repository", &labels.repository),
                ("organization", &labels.organization),
                ("enterprise", &labels.enterprise),
            ]
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v.clone()))),
        );
        registry.register(
            "rssc_listener_session_creations",
            "Message sessions created",
            m.session_creations,
        );
        registry.register(
            "rssc_listener_session_conflicts",
            "Session creations refused because another session holds the scale set",
            m.session_conflicts,
        );
        registry.register("rssc_listener_polls", "Long polls answered", m.polls);
        registry.register(
            "rssc_listener_decisions",
            "Decisions written to the EphemeralRunnerSet",
            m.decisions,
        );
        registry.register(
            "rssc_listener_poll_duration_seconds",
            "Duration of message long polls, answered or not",
            m.poll_duration,
        );
        registry.register_collector(Box::new(GitHubCollector(client.shared_metrics())));
        rssc_runtime::kube_client::request_metrics().register(registry);
        metrics
    }

    /// Records the statistics of a message or session.
    pub fn record_statistics(&self, s: &Statistics) {
        let l = &self.labels;
        self.assigned_jobs.get_or_create(l).set(s.total_assigned_jobs);
        self.running_jobs.get_or_create(l).set(s.total_running_jobs);
        self.registered_runners
            .get_or_create(l)
            .set(s.total_registered_runners);
        self.busy_runners.get_or_create(l).set(s.total_busy_runners);
        self.idle_runners.get_or_create(l).set(s.total_idle_runners);
        self.queue_depth
            .get_or_create(l)
            .set((s.total_assigned_jobs - s.total_running_jobs).max(0));
    }

    /// Records the limits in force.
    pub fn record_limits(&self, limits: Limits) {
        self.min_runners
            .get_or_create(&self.labels)
            .set(limits.min_runners.into());
        self.max_runners
            .get_or_create(&self.labels)
            .set(limits.max_runners.into());
    }

    /// Records the desired runner count.
    pub fn record_desired(&self, desired: i32) {
        self.desired_runners
            .get_or_create(&self.labels)
            .set(desired.into());
    }

    /// Records the job events of a handled message.
    pub fn record_jobs(&self, handled: &Handled) {
        for started in &handled.started {
            let labels = self.started_labels(&started.labels);
            self.started_jobs.get_or_create(&labels).inc();
            if let Some(startup) = started.startup {
                self.startup_duration
                    .get_or_create(&labels)
                    .observe(startup.as_secs_f64());
            }
        }
        // Like ARC, only jobs a runner ran count as completed.
        for completed in handled.completed.iter().filter(|c| c.ran) {
            let s = self.started_labels(&completed.labels);
            let labels = CompletedLabels {
                enterprise: s.enterprise,
                organization: s.organization,
                repository: s.repository,
                job_name: s.job_name,
                event_name: s.event_name,
                job_result: completed.result.clone(),
            };
            self.completed_jobs.get_or_create(&labels).inc();
            if let Some(execution) = completed.execution {
                self.execution_duration
                    .get_or_create(&labels)
                    .observe(execution.as_secs_f64());
            }
        }
    }

    fn started_labels(&self, job: &JobLabels) -> StartedLabels {
        StartedLabels {
            enterprise: self.labels.enterprise.clone(),
            organization: job.organization.clone(),
            repository: job.repository.clone(),
            job_name: job.job_name.clone(),
            event_name: job.event_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::encoding::text::encode;
    use rssc_github::{ClientOptions, Credentials, GitHubConfig, Secret};

    use super::*;
    use crate::handler::{Completed, Started};

    fn setup() -> (Registry, ListenerMetrics) {
        let config = GitHubConfig::parse("https://github.com/org/app").unwrap();
        let labels = ScaleSetLabels::new("linux", "ci", &config.scope);
        let client = ActionsClient::new(
            config,
            Credentials::token(Secret::new("t".to_owned())).unwrap(),
            ClientOptions::default(),
        )
        .unwrap();
        let mut registry = Registry::default();
        let metrics = ListenerMetrics::register(&mut registry, labels, client);
        (registry, metrics)
    }

    #[test]
    fn arc_names_and_labels() {
        let (registry, metrics) = setup();
        metrics.record_statistics(&Statistics {
            total_assigned_jobs: 5,
            total_running_jobs: 2,
            ..Default::default()
        });
        metrics.record_limits(Limits {
            min_runners: 1,
            max_runners: 10,
        });
        metrics.record_desired(6);
        let job = JobLabels {
            organization: "org".into(),
            repository: "app".into(),
            job_name: "build".into(),
            event_name: "push".into(),
        };
        metrics.record_jobs(&Handled {
            started: vec![Started {
                runner_name: "r".into(),
                job: Default::default(),
                labels: job.clone(),
                startup: Some(Duration::from_secs(3)),
            }],
            completed: vec![
                Completed {
                    runner_name: "r".into(),
                    finished_at: None,
                    labels: job.clone(),
                    result: "succeeded".into(),
                    execution: Some(Duration::from_secs(60)),
                    ran: true,
                },
                Completed {
                    runner_name: String::new(),
                    finished_at: None,
                    labels: job,
                    result: "canceled".into(),
                    execution: None,
                    ran: false,
                },
            ],
            ..Default::default()
        });
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let scale_set = r#"name="linux",namespace="ci",repository="app",organization="org",enterprise="""#;
        for line in [
            format!("gha_assigned_jobs{{{scale_set}}} 5"),
            format!("gha_running_jobs{{{scale_set}}} 2"),
            format!("gha_desired_runners{{{scale_set}}} 6"),
            format!("gha_min_runners{{{scale_set}}} 1"),
            format!("gha_max_runners{{{scale_set}}} 10"),
            format!("rssc_listener_queue_depth{{{scale_set}}} 3"),
            r#"gha_started_jobs_total{enterprise="",organization="org",repository="app",job_name="build",event_name="push"} 1"#.to_owned(),
            r#"gha_completed_jobs_total{enterprise="",organization="org",repository="app",job_name="build",event_name="push",job_result="succeeded"} 1"#.to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains(r#"job_result="canceled""#),
            "jobs no runner ran are not completed jobs"
        );
        assert!(text.contains("gha_job_startup_duration_seconds_bucket"));
        assert!(text.contains(r#"le="3600.0""#), "ARC's buckets");
        assert!(
            text.contains("# TYPE rssc_github_token_refreshes counter"),
            "{text}"
        );
        metrics.session_conflicts.inc();
        let call = rssc_runtime::kube_client::KubeCall {
            verb: "patch",
            resource: "ephemeralrunnersets".into(),
        };
        rssc_runtime::kube_client::request_metrics().record(&call, Some(200), Duration::from_millis(2));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let line = format!("rssc_listener_session_conflicts_total{{{scale_set}}} 1");
        assert!(text.contains(&line), "missing {line} in\n{text}");
        let line = format!(
            r#"rssc_kube_requests_total{{{scale_set},verb="patch",resource="ephemeralrunnersets",status_class="2xx"}}"#
        );
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
}
