//! What one long-poll message means, without doing any of it: which jobs to acquire, which
//! runners started which jobs, which jobs finished, and the statistics to scale on.
//!
//! Scaling never counts messages (they repeat, and a job can be assigned, canceled and offered
//! again); it uses the statistics every message carries. Job messages only drive acquisition,
//! the busy marks on runners, and metrics.

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, chrono::DateTime};
use rssc_api::v1alpha1::RunnerJob;
use rssc_github::{JobInfo, JobMessage, ScaleSetMessage, Statistics, decode::rfc3339};

/// Labels describing a job, as ARC's job metrics carry them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobLabels {
    /// Repository owner (organization or user).
    pub organization: String,
    /// Repository name.
    pub repository: String,
    /// The job's display name.
    pub job_name: String,
    /// The event that triggered the workflow.
    pub event_name: String,
}

/// A runner started a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Started {
    /// The runner's name (its EphemeralRunner's name).
    pub runner_name: String,
    /// The job, as recorded on the EphemeralRunner.
    pub job: RunnerJob,
    /// Metric labels.
    pub labels: JobLabels,
    /// From assignment to the scale set until a runner took the job.
    pub startup: Option<Duration>,
}

/// A job finished, or was taken back from the scale set (`canceled` without a runner).
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    /// The runner that ran it (empty if none did).
    pub runner_name: String,
    /// When it finished.
    pub finished_at: Option<Time>,
    /// Metric labels.
    pub labels: JobLabels,
    /// `succeeded`, `failed`, `canceled`, ...
    pub result: String,
    /// From the runner taking the job until it finished; `None` if no runner ran it.
    pub execution: Option<Duration>,
    /// Whether a runner ran it (ARC counts only those as completed jobs).
    pub ran: bool,
}

/// Everything a message asks of the listener.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Handled {
    /// `runnerRequestId`s to acquire, once each, in message order.
    pub acquire: Vec<i64>,
    /// Runners that started jobs.
    pub started: Vec<Started>,
    /// Jobs that finished.
    pub completed: Vec<Completed>,
    /// Jobs assigned to the scale set in this message.
    pub assigned: usize,
    /// The statistics to scale on.
    pub statistics: Statistics,
}

/// The most job messages GitHub puts in one message.
pub const MESSAGE_CAPACITY: usize = 50;

/// Whether the poll after `message` may wait to gather more events: the message only reported
/// progress (jobs that started or ended), was not full, and GitHub counts no job on its way to
/// a runner: none offered and not yet acquired, none acquired and not yet assigned (its
/// `JobAssigned` is what the decision for it waits on; jobs waiting beyond `maxRunners` are
/// such). A job offered or assigned is demand, and the poll after it goes at once.
pub fn only_progress(message: &ScaleSetMessage, handled: &Handled) -> bool {
    handled.acquire.is_empty()
        && handled.assigned == 0
        && message.jobs.len() < MESSAGE_CAPACITY
        && handled.statistics.total_available_jobs == 0
        && handled.statistics.total_acquired_jobs == 0
}

/// Interprets one message.
pub fn handle(message: &ScaleSetMessage) -> Handled {
    let mut handled = Handled {
        statistics: message.statistics,
        ..Default::default()
    };
    let mut seen = BTreeSet::new();
    for job in &message.jobs {
        match job {
            JobMessage::Available { job, .. } => {
                if seen.insert(job.runner_request_id) {
                    handled.acquire.push(job.runner_request_id);
                }
            }
            JobMessage::Assigned { .. } => handled.assigned += 1,
            JobMessage::Started { job, runner_name, .. } => handled.started.push(Started {
                runner_name: runner_name.clone(),
                job: runner_job(job),
                labels: labels(job),
                startup: between(&job.scale_set_assign_time, &job.runner_assign_time),
            }),
            JobMessage::Completed {
                job,
                result,
                runner_name,
                ..
            } => {
                let ran = !runner_name.is_empty() && time(&job.runner_assign_time).is_some();
                handled.completed.push(Completed {
                    runner_name: runner_name.clone(),
                    finished_at: time(&job.finish_time).map(|t| Time(DateTime::from(t))),
                    labels: labels(job),
                    result: result.clone(),
                    execution: if ran {
                        between(&job.runner_assign_time, &job.finish_time)
                    } else {
                        None
                    },
                    ran,
                });
            }
        }
    }
    handled
}

fn labels(job: &JobInfo) -> JobLabels {
    JobLabels {
        organization: job.owner_name.clone(),
        repository: job.repository_name.clone(),
        job_name: job.job_display_name.clone(),
        event_name: job.event_name.clone(),
    }
}

fn runner_job(job: &JobInfo) -> RunnerJob {
    RunnerJob {
        request_id: job.runner_request_id,
        job_id: job.job_id.clone(),
        repository: match (job.owner_name.as_str(), job.repository_name.as_str()) {
            ("", repo) => repo.to_owned(),
            (owner, repo) => format!("{owner}/{repo}"),
        },
        workflow_ref: job.job_workflow_ref.clone(),
        display_name: job.job_display_name.clone(),
        workflow_run_id: Some(job.workflow_run_id).filter(|id| *id != 0),
        started_at: time(&job.runner_assign_time).map(|t| Time(DateTime::from(t))),
        result: None,
        finished_at: None,
    }
}

/// A timestamp from a message; the service's zero time (year 1) means "not yet".
fn time(value: &Option<String>) -> Option<std::time::SystemTime> {
    value.as_deref().and_then(rfc3339)
}

fn between(from: &Option<String>, to: &Option<String>) -> Option<Duration> {
    time(to)?.duration_since(time(from)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: i64) -> JobInfo {
        JobInfo {
            runner_request_id: id,
            repository_name: "app".into(),
            owner_name: "org".into(),
            job_id: format!("job-{id}"),
            job_workflow_ref: "org/app/.github/workflows/ci.yml@refs/heads/main".into(),
            job_display_name: "build".into(),
            workflow_run_id: 77,
            event_name: "push".into(),
            queue_time: Some("2026-11-22T10:00:00Z".into()),
            scale_set_assign_time: Some("2026-11-22T10:00:01Z".into()),
            runner_assign_time: Some("2026-11-22T10:00:04Z".into()),
            finish_time: Some("2026-11-22T10:01:04Z".into()),
            ..Default::default()
        }
    }

    fn message(jobs: Vec<JobMessage>) -> ScaleSetMessage {
        ScaleSetMessage {
            message_id: 1,
            message_type: "RunnerScaleSetJobMessages".into(),
            statistics: Statistics {
                total_assigned_jobs: 3,
                total_running_jobs: 1,
                ..Default::default()
            },
            jobs,
        }
    }

    #[test]
    fn only_a_message_of_starts_and_ends_lets_the_next_poll_wait() {
        let started = || JobMessage::Started {
            job: info(3),
            runner_id: 9,
            runner_name: "ci-runner-abcde".into(),
        };
        let completed = || JobMessage::Completed {
            job: info(4),
            result: "succeeded".into(),
            runner_id: 8,
            runner_name: "ci-runner-fghij".into(),
        };
        let waits = |m: &ScaleSetMessage| only_progress(m, &handle(m));
        assert!(waits(&message(vec![started(), completed()])));
        let offered = JobMessage::Available {
            job: info(1),
            acquire_job_url: String::new(),
        };
        assert!(
            !waits(&message(vec![started(), offered])),
            "an offered job is acquired at once"
        );
        assert!(
            !waits(&message(vec![JobMessage::Assigned { job: info(1) }, completed()])),
            "an assigned job is demand"
        );
        let full = message((0..MESSAGE_CAPACITY).map(|_| completed()).collect());
        assert!(!waits(&full), "a full message means more are waiting");
        let mut waiting = message(vec![completed()]);
        waiting.statistics.total_available_jobs = 1;
        assert!(!waits(&waiting), "a job GitHub still offers is fetched at once");
        let mut unassigned = message(vec![completed()]);
        unassigned.statistics.total_acquired_jobs = 1;
        assert!(
            !waits(&unassigned),
            "a job acquired and not yet assigned is fetched at once"
        );
    }

    #[test]
    fn a_batch_with_all_four_types_and_duplicates() {
        let m = message(vec![
            JobMessage::Available {
                job: info(1),
                acquire_job_url: String::new(),
            },
            JobMessage::Available {
                job: info(2),
                acquire_job_url: String::new(),
            },
            JobMessage::Available {
                job: info(1),
                acquire_job_url: String::new(),
            },
            JobMessage::Assigned { job: info(1) },
            JobMessage::Started {
                job: info(3),
                runner_id: 9,
                runner_name: "ci-runner-abcde".into(),
            },
            JobMessage::Completed {
                job: info(4),
                result: "succeeded".into(),
                runner_id: 8,
                runner_name: "ci-runner-fghij".into(),
            },
        ]);
        let h = handle(&m);
        assert_eq!(h.acquire, [1, 2], "each job acquired once, in order");
        assert_eq!(h.assigned, 1);
        assert_eq!(
            h.statistics.total_assigned_jobs, 3,
            "scale on statistics, not on messages"
        );

        let started = &h.started[0];
        assert_eq!(started.runner_name, "ci-runner-abcde");
        assert_eq!(started.job.request_id, 3);
        assert_eq!(started.job.repository, "org/app");
        assert_eq!(started.job.workflow_run_id, Some(77));
        assert!(started.job.started_at.is_some());
        assert_eq!(started.startup, Some(Duration::from_secs(3)));
        assert_eq!(started.labels.job_name, "build");

        let done = &h.completed[0];
        assert!(done.ran);
        assert_eq!(done.result, "succeeded");
        assert_eq!(done.execution, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_job_canceled_before_any_runner_took_it_did_not_run() {
        let mut job = info(5);
        job.runner_assign_time = Some("0001-01-01T00:00:00Z".into());
        let h = handle(&message(vec![JobMessage::Completed {
            job,
            result: "canceled".into(),
            runner_id: 0,
            runner_name: String::new(),
        }]));
        assert!(!h.completed[0].ran);
        assert_eq!(h.completed[0].execution, None);
    }

    #[test]
    fn unknown_job_types_are_skipped_and_the_rest_handled() {
        let batch = serde_json::json!([
            {"messageType": "JobAvailable", "runnerRequestId": 1, "acquireJobUrl": "x"},
            {"messageType": "JobPaused", "runnerRequestId": 2},
            {"messageType": "JobAvailable", "runnerRequestId": 3, "acquireJobUrl": "y"}
        ]);
        let body = serde_json::json!({
            "messageId": 9,
            "messageType": "RunnerScaleSetJobMessages",
            "body": batch.to_string(),
            "statistics": {"totalAssignedJobs": 2}
        });
        let message = rssc_github::decode::message(body.to_string().as_bytes()).unwrap();
        let h = handle(&message);
        assert_eq!(h.acquire, [1, 3]);
        assert_eq!(h.statistics.total_assigned_jobs, 2);
    }

    #[test]
    fn an_empty_message_only_carries_statistics() {
        let h = handle(&message(vec![]));
        assert!(h.acquire.is_empty() && h.started.is_empty() && h.completed.is_empty());
        assert_eq!(h.statistics.total_running_jobs, 1);
    }
}
