//! One trace per job, end to end: the real binaries export OTLP to a receiver in the test; the
//! listener's job span, the controller's spans for the runner made for it, and the job's start
//! and end are one trace. Each OTLP transport (HTTP/JSON, HTTP/protobuf, gRPC) is used by both
//! binaries in one scenario, and their spans arrive with the resource attributes the docs
//! promise.

use std::time::Duration;

use rssc_e2e::{
    Harness, eventually,
    invariants::{Expect, teardown_and_check},
    otlp::{OtlpReceiver, Protocol, ReceivedSpan},
    scenario::{AUTOSCALE_SET, apply_sets_and_wait_for_listener, queue_jobs, wait_jobs},
};
use rssc_sim_node::PodKind;

fn job_span(spans: &[ReceivedSpan]) -> Option<ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.service == "rssc-listener" && s.name == "job" && s.attributes.contains_key("result"))
        .cloned()
}

/// The name of the scenario's listener Pod, as the node simulator ran it.
fn listener_pod(h: &Harness) -> String {
    let summary = h.nodes.as_ref().expect("the node simulator runs").summary();
    let key = summary
        .pods
        .iter()
        .find(|(_, p)| p.kind == PodKind::Listener)
        .map(|(k, _)| k.clone())
        .expect("a listener Pod ran");
    key.rsplit('/').next().unwrap().to_owned()
}

/// Checks that both binaries' spans arrived over `protocol` with their resource attributes:
/// the service name, the Pod's namespace and name, and (for the listener) the scale set.
fn resources_arrived_over(otlp: &OtlpReceiver, protocol: Protocol, h: &Harness) {
    let resources = otlp.resources_via(protocol);
    let of = |service: &str| {
        resources
            .iter()
            .find(|r| r.get("service.name").map(String::as_str) == Some(service))
            .cloned()
            .unwrap_or_else(|| panic!("no spans from {service} over {protocol:?}: {resources:?}"))
    };
    let listener = of("rssc-listener");
    let controller = of("rssc-controller");
    let expect = |resource: &std::collections::BTreeMap<String, String>, key: &str, value: &str| {
        assert_eq!(
            resource.get(key).map(String::as_str),
            Some(value),
            "resource attribute {key} over {protocol:?}: {resource:?}"
        );
    };
    expect(&listener, "k8s.namespace.name", &h.namespace);
    expect(&listener, "k8s.pod.name", &listener_pod(h));
    expect(&listener, "rssc.scale_set", AUTOSCALE_SET);
    expect(&controller, "k8s.namespace.name", &h.namespace);
    // The harness runs the controller as the Pod `controller-0` (its POD_NAME).
    expect(&controller, "k8s.pod.name", "controller-0");
}

/// Runs one job with both binaries exporting over `protocol`; checks the job's span and the
/// controller's spans of its runner arrived that way, with the resource attributes.
async fn one_job_exported_over(protocol: Protocol) {
    let otlp = OtlpReceiver::start().await;
    let env = otlp.env_for(protocol);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let name = format!("traces-{}", protocol.env_value().replace('/', "-"));
    let h = Harness::start_with_controller_env(&name, &env).await;
    apply_sets_and_wait_for_listener(&h, 0, 3).await;
    let jobs = queue_jobs(&h, 1, Duration::from_millis(300));
    wait_jobs(&h, &jobs).await;
    eventually(
        &format!("the finished job's span arrived over {protocol:?}"),
        || async { job_span(&otlp.spans_via(protocol)).is_some() },
    )
    .await;
    let job = job_span(&otlp.spans_via(protocol)).unwrap();
    assert_eq!(job.attributes["result"], "succeeded", "{job:?}");
    eventually(
        &format!("the controller's pod.create span of that job arrived over {protocol:?}"),
        || async {
            otlp.spans_via(protocol).iter().any(|s| {
                s.service == "rssc-controller" && s.trace_id == job.trace_id && s.name == "pod.create"
            })
        },
    )
    .await;
    resources_arrived_over(&otlp, protocol, &h);
    for other in [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson] {
        if other != protocol {
            assert!(
                otlp.spans_via(other).is_empty(),
                "nothing arrives over {other:?} when {protocol:?} is configured"
            );
        }
    }
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_over_otlp_grpc() {
    one_job_exported_over(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_over_otlp_http_protobuf() {
    one_job_exported_over(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_from_offer_to_completion() {
    let otlp = OtlpReceiver::start().await;
    let env: Vec<(String, String)> = otlp.env_for(Protocol::HttpJson);
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
    assert!(
        spans.iter().all(|s| s.name != "reconciling object"),
        "kube-runtime's reconcile spans stay home: ours carry the object and join the job's trace"
    );
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
    resources_arrived_over(&otlp, Protocol::HttpJson, &h);
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
