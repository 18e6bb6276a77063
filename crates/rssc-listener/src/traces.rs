//! One trace per job: a root span opened when the job is offered, the acquisition and the
//! runner that started it recorded on it, closed with the job's result. The `traceparent`s of
//! jobs just acquired travel with the next scale-up decision (GitHub counts a job as assigned,
//! which is what scaling follows, a poll or so after it was acquired), so the runners the
//! controller creates for them join their traces. Spans cost nothing while traces are off.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rssc_github::{JobInfo, JobMessage, ScaleSetMessage};
use tracing::{Span, field::Empty, info, info_span};

/// Open jobs are forgotten after this long (GitHub unassigns a job after a day).
const MAX_OPEN: Duration = Duration::from_secs(24 * 3600);
/// At most this many `traceparent`s ride on one decision (the annotation stays small).
pub const MAX_PER_DECISION: usize = 100;
/// A job acquired this long ago without a scale-up is being served by a runner that existed.
const SCALE_UP_WINDOW: Duration = Duration::from_secs(30);

/// Open job traces.
#[derive(Default)]
pub struct JobTraces {
    open: HashMap<i64, (Span, Instant)>,
    acquired: Vec<(String, Instant)>,
}

impl JobTraces {
    /// Records what `message` says about jobs of the scale set `scale_set_id`; `acquired` are the request IDs
    /// this listener acquired from it.
    pub fn observe(&mut self, scale_set_id: i64, message: &ScaleSetMessage, acquired: &[i64]) {
        self.expire(Instant::now());
        for job in &message.jobs {
            match job {
                JobMessage::Available { job, .. } => {
                    self.open_span(scale_set_id, job);
                }
                JobMessage::Assigned { .. } => {}
                JobMessage::Started { job, runner_name, .. } => {
                    let span = self.open_span(scale_set_id, job);
                    span.record("runner_name", runner_name.as_str());
                    span.in_scope(|| info!(runner = %runner_name, "job started"));
                }
                JobMessage::Completed {
                    job,
                    result,
                    runner_name,
                    ..
                } => {
                    let span = self.open_span(scale_set_id, job).clone();
                    span.record("result", result.as_str());
                    if !runner_name.is_empty() {
                        span.record("runner_name", runner_name.as_str());
                    }
                    span.in_scope(|| info!(result = %result, "job completed"));
                    // Dropping the last handle ends the span.
                    self.open.remove(&job.runner_request_id);
                }
            }
        }
        for id in acquired {
            if let Some((span, _)) = self.open.get(id) {
                span.in_scope(|| info!("job acquired"));
                if let Some(traceparent) = rssc_runtime::telemetry::traceparent(span)
                    && self.acquired.len() < MAX_PER_DECISION
                {
                    self.acquired.push((traceparent, Instant::now()));
                }
            }
        }
    }

    /// The `traceparent`s of jobs acquired recently and not yet handed to a scale-up, for the
    /// scale-up decision about to be written.
    pub fn take_for_scale_up(&mut self) -> Vec<String> {
        self.expire(Instant::now());
        std::mem::take(&mut self.acquired)
            .into_iter()
            .map(|(traceparent, _)| traceparent)
            .collect()
    }

    /// Jobs with an open trace.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    fn open_span(&mut self, scale_set_id: i64, job: &JobInfo) -> &Span {
        &self
            .open
            .entry(job.runner_request_id)
            .or_insert_with(|| {
                let repository = match (job.owner_name.as_str(), job.repository_name.as_str()) {
                    ("", repo) => repo.to_owned(),
                    (owner, repo) => format!("{owner}/{repo}"),
                };
                let span = info_span!(
                    parent: None,
                    "job",
                    scale_set_id,
                    repository,
                    workflow_ref = job.job_workflow_ref.as_str(),
                    job_name = job.job_display_name.as_str(),
                    job_id = job.job_id.as_str(),
                    runner_request_id = job.runner_request_id,
                    runner_name = Empty,
                    result = Empty,
                );
                (span, Instant::now())
            })
            .0
    }

    fn expire(&mut self, now: Instant) {
        self.open
            .retain(|_, (_, opened)| now.duration_since(*opened) < MAX_OPEN);
        self.acquired
            .retain(|(_, at)| now.duration_since(*at) < SCALE_UP_WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(jobs: serde_json::Value) -> ScaleSetMessage {
        let body = serde_json::json!({
            "messageId": 1, "messageType": "RunnerScaleSetJobMessages",
            "body": jobs.to_string(),
            "statistics": {"totalAssignedJobs": 1}
        });
        rssc_github::decode::message(body.to_string().as_bytes()).expect("a valid message")
    }

    #[test]
    fn a_job_trace_opens_on_offer_and_closes_on_completion() {
        let mut traces = JobTraces::default();
        let offered = message(serde_json::json!([
            {"messageType": "JobAvailable", "runnerRequestId": 7, "acquireJobUrl": "x",
             "repositoryName": "app", "ownerName": "octo", "jobDisplayName": "build"}
        ]));
        traces.observe(1, &offered, &[7]);
        assert_eq!(traces.open(), 1);
        // Traces are off in unit tests, so nothing rides on the decision.
        assert!(traces.take_for_scale_up().is_empty());

        let started = message(serde_json::json!([
            {"messageType": "JobStarted", "runnerRequestId": 7, "runnerId": 3, "runnerName": "ci-runner-abcde"}
        ]));
        traces.observe(1, &started, &[]);
        assert_eq!(traces.open(), 1);
        let completed = message(serde_json::json!([
            {"messageType": "JobCompleted", "runnerRequestId": 7, "result": "succeeded",
             "runnerId": 3, "runnerName": "ci-runner-abcde"}
        ]));
        traces.observe(1, &completed, &[]);
        assert_eq!(traces.open(), 0, "completion closes the trace");
    }

    #[test]
    fn forgotten_jobs_expire() {
        let mut traces = JobTraces::default();
        let offered = message(serde_json::json!([
            {"messageType": "JobAvailable", "runnerRequestId": 1, "acquireJobUrl": "x"}
        ]));
        traces.observe(1, &offered, &[]);
        traces.expire(Instant::now() + MAX_OPEN + Duration::from_secs(1));
        assert_eq!(traces.open(), 0);
    }
}
