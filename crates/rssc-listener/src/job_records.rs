//! What one message records on each runner, in message order. A job that started and ended
//! within one message (a short job, or a listener catching up) is recorded in one write: each
//! write is an API round trip and a watch event for everyone watching runners.

use std::collections::BTreeMap;

use rssc_api::v1alpha1::RunnerJob;

use crate::handler::{Completed, Handled};

/// One write on a runner.
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerRecord<'a> {
    /// The job the runner started, with its end if the same message reported it.
    Started(RunnerJob),
    /// How the runner's job (recorded earlier) ended.
    Completed(&'a Completed),
}

/// The writes a message makes, by runner name; each runner's in the order they must be made.
pub fn by_runner(handled: &Handled) -> BTreeMap<&str, Vec<RunnerRecord<'_>>> {
    let mut records: BTreeMap<&str, Vec<RunnerRecord<'_>>> = BTreeMap::new();
    for started in &handled.started {
        records
            .entry(&started.runner_name)
            .or_default()
            .push(RunnerRecord::Started(started.job.clone()));
    }
    for completed in handled.completed.iter().filter(|c| !c.runner_name.is_empty()) {
        let runner = records.entry(&completed.runner_name).or_default();
        match runner.last_mut() {
            Some(RunnerRecord::Started(job)) if job.result.is_none() => {
                job.result = Some(completed.result.clone());
                job.finished_at = completed.finished_at.clone();
            }
            _ => runner.push(RunnerRecord::Completed(completed)),
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, chrono::Utc};

    use super::*;
    use crate::handler::Started;

    fn started(runner: &str, request_id: i64) -> Started {
        Started {
            runner_name: runner.into(),
            job: RunnerJob {
                request_id,
                ..Default::default()
            },
            labels: Default::default(),
            startup: None,
        }
    }

    fn completed(runner: &str, result: &str) -> Completed {
        Completed {
            runner_name: runner.into(),
            finished_at: Some(Time(Utc::now())),
            labels: Default::default(),
            result: result.into(),
            execution: None,
            ran: !runner.is_empty(),
        }
    }

    #[test]
    fn a_job_that_started_and_ended_in_one_message_is_one_write() {
        let handled = Handled {
            started: vec![started("a", 1), started("b", 2)],
            completed: vec![completed("a", "succeeded")],
            ..Default::default()
        };
        let records = by_runner(&handled);
        assert_eq!(records.len(), 2);
        let [RunnerRecord::Started(a)] = records["a"].as_slice() else {
            panic!("one write for a: {:?}", records["a"]);
        };
        assert_eq!((a.request_id, a.result.as_deref()), (1, Some("succeeded")));
        assert_eq!(a.finished_at, handled.completed[0].finished_at);
        let [RunnerRecord::Started(b)] = records["b"].as_slice() else {
            panic!("one write for b: {:?}", records["b"]);
        };
        assert_eq!(b.result, None, "b's job goes on");
    }

    #[test]
    fn an_end_without_its_start_is_written_alone_and_jobs_without_a_runner_not_at_all() {
        let handled = Handled {
            completed: vec![completed("a", "failed"), completed("", "canceled")],
            ..Default::default()
        };
        let records = by_runner(&handled);
        assert_eq!(
            records.into_iter().collect::<Vec<_>>(),
            vec![("a", vec![RunnerRecord::Completed(&handled.completed[0])])]
        );
    }
}
