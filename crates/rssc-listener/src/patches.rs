//! The JSON merge patches the listener writes: its decision on the EphemeralRunnerSet, its
//! session state on the EphemeralRunnerSet's status, and the job a runner started on the
//! EphemeralRunner's status. Only the fields the listener owns appear in them.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, chrono::SecondsFormat};
use rssc_api::{consts::annotations, v1alpha1::RunnerJob};
use serde_json::{Value, json};

use crate::scaler::Decision;

/// Patch of `EphemeralRunnerSet.spec` with a decision, and the `traceparent`s of the jobs it
/// was made for (the annotation is removed when there are none, so no later runner joins an
/// old job's trace).
pub fn decision(decision: Decision, traceparents: &[String]) -> Value {
    let traceparents = (!traceparents.is_empty()).then(|| traceparents.join(","));
    json!({
        "metadata": {"annotations": {annotations::TRACEPARENT: traceparents}},
        "spec": {"replicas": decision.replicas, "beyondMax": decision.beyond_max,
                 "patchSequence": decision.sequence, "jobEnds": decision.job_ends,
                 "jobEndsThrough": decision.job_ends_through}
    })
}

/// JSON patch of `EphemeralRunnerSet.spec` with `decision`, applied only while the spec still
/// holds decision `previous`: a RunnerSet being deleted writes its own (no runners) under the
/// next sequence, and a stopping listener's must not undo it. Without traceparents: a decision
/// held back for the pace never asks for more runners.
pub fn decision_after(decision: Decision, previous: i64) -> Value {
    let mut ops = vec![
        json!({"op": "test", "path": "/spec/patchSequence", "value": previous}),
        json!({"op": "add", "path": "/spec/replicas", "value": decision.replicas}),
        json!({"op": "add", "path": "/spec/beyondMax", "value": decision.beyond_max}),
        json!({"op": "add", "path": "/spec/patchSequence", "value": decision.sequence}),
        json!({"op": "add", "path": "/spec/jobEnds", "value": decision.job_ends}),
    ];
    if let Some(through) = decision.job_ends_through {
        ops.push(json!({"op": "add", "path": "/spec/jobEndsThrough", "value": through}));
    }
    Value::Array(ops)
}

/// The listener's session state, as kept on the EphemeralRunnerSet's status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionState {
    /// The session is open and polls succeed.
    pub ready: bool,
    /// When the last poll completed.
    pub last_successful_poll: Option<Time>,
    /// Sessions created again since the listener was first deployed.
    pub session_restarts: i32,
    /// Last message acknowledged.
    pub last_message_id: Option<i64>,
    /// The open session.
    pub session_id: Option<String>,
}

/// Patch of `EphemeralRunnerSet.status.listener`.
pub fn session_state(state: &SessionState) -> Value {
    json!({"status": {"listener": {
        "ready": state.ready,
        "lastSuccessfulPollTime": state.last_successful_poll.as_ref().map(|t| t.0.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "sessionRestarts": state.session_restarts,
        "lastMessageId": state.last_message_id,
        "sessionId": state.session_id,
    }}})
}

/// Patch of `EphemeralRunner.status.job` when GitHub reports the runner started a job: this
/// is what marks the runner busy and protects it from scale-down.
pub fn job_started(job: &RunnerJob) -> Value {
    json!({"status": {"job": job}})
}

/// Patch of `EphemeralRunner.status.job` when GitHub reports the runner's job ended.
pub fn job_completed(result: &str, finished_at: Option<&Time>) -> Value {
    json!({"status": {"job": {
        "result": result,
        "finishedAt": finished_at.map(|t| t.0.to_rfc3339_opts(SecondsFormat::Secs, true)),
    }}})
}

#[cfg(test)]
mod tests {
    use k8s_openapi::chrono::{TimeZone, Utc};

    use rssc_api::v1alpha1::MessageMark;

    use super::*;

    #[test]
    fn the_decision_patch_touches_only_its_spec_fields_and_the_trace_annotation() {
        let seven = Decision {
            replicas: 7,
            beyond_max: 2,
            sequence: 12,
            job_ends: 3,
            job_ends_through: Some(MessageMark {
                scale_set_id: 4,
                message_id: 81,
            }),
        };
        assert_eq!(
            decision(seven, &[]),
            json!({"metadata": {"annotations": {"scaleset.actions.github.com/traceparent": null}},
                   "spec": {"replicas": 7, "beyondMax": 2, "patchSequence": 12, "jobEnds": 3,
                            "jobEndsThrough": {"scaleSetId": 4, "messageId": 81}}})
        );
        // The patch reads back as the CRD's spec fields.
        let through: MessageMark =
            serde_json::from_value(decision(seven, &[])["spec"]["jobEndsThrough"].clone()).unwrap();
        assert_eq!(Some(through), seven.job_ends_through);
        let traced = decision(seven, &["00-a-b-01".into(), "00-c-d-01".into()]);
        assert_eq!(
            traced["metadata"]["annotations"]["scaleset.actions.github.com/traceparent"],
            "00-a-b-01,00-c-d-01"
        );
    }

    #[test]
    fn session_state_uses_the_crd_field_names() {
        let state = SessionState {
            ready: true,
            last_successful_poll: Some(Time(Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap())),
            session_restarts: 2,
            last_message_id: Some(99),
            session_id: Some("5a3e".into()),
        };
        let patch = session_state(&state);
        assert_eq!(
            patch,
            json!({"status": {"listener": {"ready": true, "lastSuccessfulPollTime": "2026-11-22T10:00:00Z",
                "sessionRestarts": 2, "lastMessageId": 99, "sessionId": "5a3e"}}})
        );
        // The patch reads back as the CRD's status type.
        let status: rssc_api::v1alpha1::EphemeralRunnerSetStatus =
            serde_json::from_value(patch["status"].clone()).unwrap();
        assert_eq!(status.listener.unwrap().last_message_id, Some(99));
    }

    #[test]
    fn job_started_records_the_job_on_the_runner() {
        let job = RunnerJob {
            request_id: 5,
            job_id: "j".into(),
            repository: "org/app".into(),
            workflow_ref: "org/app/.github/workflows/ci.yml@refs/heads/main".into(),
            display_name: "build".into(),
            workflow_run_id: Some(8),
            started_at: None,
            result: None,
            finished_at: None,
        };
        let patch = job_started(&job);
        assert_eq!(patch["status"]["job"]["requestId"], 5);
        assert_eq!(patch["status"]["job"]["repository"], "org/app");
        let status: rssc_api::v1alpha1::EphemeralRunnerStatus =
            serde_json::from_value(patch["status"].clone()).unwrap();
        assert!(status.job.is_some());
    }

    #[test]
    fn job_completed_adds_the_result_to_the_job() {
        let patch = job_completed("succeeded", None);
        assert_eq!(
            patch,
            json!({"status": {"job": {"result": "succeeded", "finishedAt": null}}})
        );
        // Merged over the job recorded at start, it reads back as the CRD's status.
        let mut status = job_started(&RunnerJob {
            request_id: 5,
            ..Default::default()
        });
        status["status"]["job"]["result"] = patch["status"]["job"]["result"].clone();
        let status: rssc_api::v1alpha1::EphemeralRunnerStatus =
            serde_json::from_value(status["status"].clone()).unwrap();
        assert_eq!(status.job.unwrap().result.as_deref(), Some("succeeded"));
    }
}
