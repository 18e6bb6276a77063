//! An OTLP/HTTP trace receiver on loopback (JSON encoding), so scenarios can check the spans
//! the binaries export: point `OTEL_EXPORTER_OTLP_ENDPOINT` at [`OtlpReceiver::endpoint`] with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// One received span, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the process that sent it.
    pub service: String,
    /// Trace ID, as encoded on the wire.
    pub trace_id: String,
    /// Span ID.
    pub span_id: String,
    /// Parent span ID (empty for a root span).
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// String forms of its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_ns: u64,
    /// Its events: name and time (nanoseconds since the Unix epoch).
    pub events: Vec<(String, u64)>,
    /// Links' trace IDs.
    pub links: Vec<String>,
}

impl ReceivedSpan {
    /// Whether it has an event named `name`.
    pub fn has_event(&self, name: &str) -> bool {
        self.events.iter().any(|(n, _)| n == name)
    }
}

/// The receiver; it stops when dropped.
pub struct OtlpReceiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let store = (spans.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let store = store.clone();
                        async move {
                            let ok = request.uri().path() == "/v1/traces";
                            let body = request.into_body().collect().await.map(|b| b.to_bytes());
                            if let (true, Ok(body)) = (ok, body)
                                && let Ok(json) = serde_json::from_slice::<Value>(&body)
                            {
                                store.0.lock().unwrap().extend(flatten(&json));
                                store.1.lock().unwrap().push(json);
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(if ok { 200 } else { 404 })
                                    .header("content-type", "application/json")
                                    .body(Full::new(hyper::body::Bytes::from_static(b"{}")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            spans,
            requests,
            endpoint,
            task,
        }
    }

    /// The base URL to export to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Everything received, as one OTLP/JSON `ExportTraceServiceRequest` (what a collector's
    /// file exporter writes), for tools that read OTLP files.
    pub fn as_otlp_json(&self) -> Value {
        let resource_spans: Vec<Value> = self
            .requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r["resourceSpans"].as_array().cloned().unwrap_or_default())
            .collect();
        serde_json::json!({ "resourceSpans": resource_spans })
    }

    /// Environment that makes a process export its traces here, quickly.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The string form of an OTLP `AnyValue`.
fn any_value(value: &Value) -> String {
    for key in ["stringValue", "intValue", "boolValue", "doubleValue"] {
        if let Some(v) = value.get(key) {
            return v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        }
    }
    value.to_string()
}

fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["key"].as_str()?.to_owned(), any_value(&a["value"]))))
        .collect()
}

/// The spans of one `ExportTraceServiceRequest` in OTLP/JSON.
pub fn flatten(request: &Value) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request["resourceSpans"].as_array().into_iter().flatten() {
        let resource = attributes(&resource_spans["resource"]["attributes"]);
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |k: &str| span[k].as_str().unwrap_or_default().to_owned();
                let nanos = |v: &Value| {
                    v.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| v.as_u64())
                        .unwrap_or_default()
                };
                out.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent_span_id: text("parentSpanId"),
                    name: text("name"),
                    attributes: attributes(&span["attributes"]),
                    start_ns: nanos(&span["startTimeUnixNano"]),
                    end_ns: nanos(&span["endTimeUnixNano"]),
                    events: span["events"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| Some((e["name"].as_str()?.to_owned(), nanos(&e["timeUnixNano"]))))
                        .collect(),
                    links: span["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l["traceId"].as_str().map(str::to_owned))
                        .collect(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_an_otlp_json_request() {
        let request = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "rssc-listener"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                "parentSpanId": "", "name": "job",
                "startTimeUnixNano": "1000", "endTimeUnixNano": "5000",
                "attributes": [{"key": "repository", "value": {"stringValue": "octo/app"}},
                               {"key": "runner_request_id", "value": {"intValue": "7"}}],
                "events": [{"name": "job acquired", "timeUnixNano": "2000"}]
            }]}]
        }]});
        let spans = flatten(&request);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!((s.service.as_str(), s.name.as_str()), ("rssc-listener", "job"));
        assert_eq!(s.attributes["repository"], "octo/app");
        assert_eq!(s.attributes["runner_request_id"], "7");
        assert_eq!(s.events, [("job acquired".to_owned(), 2000)]);
        assert_eq!((s.start_ns, s.end_ns), (1000, 5000));
    }
}
