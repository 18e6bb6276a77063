//! One trace per job, end to end: the real binaries export OTLP/HTTP to a receiver in the test;
//! the listener's job span, the controller's spans for the runner made for it, and the job's
//! start and end are one trace.

use std::time::Duration;

use rssc_e2e::{
    Harness, eventually,
    invariants::{Expect, teardown_and_check},
    otlp::{OtlpReceiver, ReceivedSpan},
    scenario::{apply_sets_and_wait_for_listener, queue_jobs, wait_jobs},
};

fn job_span(spans: &[ReceivedSpan]) -> Option<ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.service == "rssc-listener" && s.name == "job" && s.attributes.contains_key("result"))
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_from_offer_to_completion() {
    let otlp = OtlpReceiver::start().await;
    let env: Vec<(String, String)> = otlp.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The controller passes its OTEL_* variables on to the listeners it runs.
    let h = Harness::start_with_controller_env("traces", &env).await;
    apply_sets_and_wait_for_listener(&h, 0, 3).await;
    let jobs = queue_jobs(&h, 1, Duration::from_millis(300));
    wait_jobs(&h, &jobs).await;

    eventually("the listener exported the finished job's span", || async {
        job_span(&otlp.spans()).is_some()
    })
    .await;
    let job = job_span(&otlp.spans()).unwrap();
    assert!(job.parent_span_id.is_empty(), "the job span is a trace's root");
    assert_eq!(job.attributes["result"], "succeeded");
    for attribute in [
        "repository",
        "workflow_ref",
        "job_name",
        "runner_name",
        "scale_set_id",
    ] {
        assert!(
            job.attributes.contains_key(attribute),
            "the job span has {attribute}: {job:?}"
        );
    }
    for event in ["job acquired", "job started", "job completed"] {
        assert!(job.has_event(event), "the job span records {event:?}: {job:?}");
    }

    let in_trace = |name: &str| {
        let name = name.to_owned();
        let trace = job.trace_id.clone();
        let otlp = &otlp;
        move || {
            let (name, trace) = (name.clone(), trace.clone());
            async move {
                otlp.spans()
                    .iter()
                    .any(|s| s.service == "rssc-controller" && s.trace_id == trace && s.name == name)
            }
        }
    };
    for step in ["github.generate_jit_config", "secret.create", "pod.create"] {
        eventually(
            &format!("the controller's {step} span joins the job's trace"),
            in_trace(step),
        )
        .await;
    }
    let spans = otlp.spans();
    let reconciles: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "rssc-controller" && s.trace_id == job.trace_id && s.name == "reconcile")
        .collect();
    assert!(
        reconciles
            .iter()
            .any(|s| s.attributes.get("kind").map(String::as_str) == Some("EphemeralRunner")),
        "the runner's reconciles are in the job's trace"
    );
    assert!(
        reconciles.iter().any(|s| s.parent_span_id == job.span_id),
        "they hang off the job span"
    );
    for span in &spans {
        for value in span.attributes.values() {
            assert!(
                !value.contains(rssc_e2e::PAT),
                "no secret in a span attribute: {span:?}"
            );
        }
    }

    teardown_and_check(h, Expect::jobs(&jobs)).await;
}
