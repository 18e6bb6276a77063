//! An OTLP trace receiver on loopback, so scenarios can check the spans the binaries export. It
//! takes all three OTLP transports: HTTP with JSON or protobuf bodies on
//! [`OtlpReceiver::endpoint`] (`/v1/traces`), and gRPC (`TraceService/Export`) on
//! [`OtlpReceiver::grpc_endpoint`]; [`OtlpReceiver::env_for`] gives the `OTEL_*` variables that
//! make a process use one of them. Every request is kept in its OTLP/JSON form.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use prost::Message as _;
use serde_json::Value;
use tokio::net::TcpListener;

/// An OTLP transport, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl Protocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL` that selects it.
    pub fn env_value(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::HttpJson => "http/json",
        }
    }
}

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

/// One export request as received: its transport and its OTLP/JSON form.
type Received = (Protocol, Value);

/// What the transports share: every request received, and its spans flattened.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
    spans: Arc<Mutex<Vec<(Protocol, ReceivedSpan)>>>,
}

impl Sink {
    fn keep(&self, protocol: Protocol, request: Value) {
        let spans = flatten(&request).into_iter().map(|s| (protocol, s));
        self.spans.lock().unwrap().extend(spans);
        self.received.lock().unwrap().push((protocol, request));
    }

    /// Keeps a protobuf request in its OTLP/JSON form (the proto types' serde is OTLP/JSON's
    /// mapping: hex IDs, 64-bit integers as strings, camelCase names).
    fn keep_proto(&self, protocol: Protocol, request: &ExportTraceServiceRequest) {
        let json = serde_json::to_value(request).expect("OTLP types serialize to JSON");
        self.keep(protocol, json);
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep_proto(Protocol::Grpc, request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Answers one OTLP/HTTP request as the OTLP specification says: `POST /v1/traces` with a
/// protobuf or JSON body, the response in the request's encoding; 404 for other paths, 405 for
/// other methods, 415 for other content types, 400 for a body that does not decode.
async fn http_export(sink: Sink, request: Request<Incoming>) -> Response<Full<hyper::body::Bytes>> {
    let respond = |status: u16, content_type: &str, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(body.into()))
            .unwrap()
    };
    if request.uri().path() != "/v1/traces" {
        return respond(
            404,
            "text/plain",
            b"not found; OTLP traces go to /v1/traces".to_vec(),
        );
    }
    if request.method() != hyper::Method::POST {
        return respond(405, "text/plain", b"POST only".to_vec());
    }
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        return respond(400, "text/plain", b"the body could not be read".to_vec());
    };
    match content_type.as_str() {
        "application/x-protobuf" => match ExportTraceServiceRequest::decode(body) {
            Ok(decoded) => {
                sink.keep_proto(Protocol::HttpProtobuf, &decoded);
                let response = ExportTraceServiceResponse::default().encode_to_vec();
                respond(200, "application/x-protobuf", response)
            }
            Err(e) => respond(
                400,
                "text/plain",
                format!("not an ExportTraceServiceRequest: {e}").into(),
            ),
        },
        "application/json" => match serde_json::from_slice::<Value>(&body) {
            Ok(json) => {
                sink.keep(Protocol::HttpJson, json);
                respond(200, "application/json", b"{}".to_vec())
            }
            Err(e) => respond(400, "text/plain", format!("not JSON: {e}").into()),
        },
        other => respond(
            415,
            "text/plain",
            format!("content type {other:?}: use application/x-protobuf or application/json").into(),
        ),
    }
}

/// The receiver; it stops when dropped.
pub struct OtlpReceiver {
    sink: Sink,
    endpoint: String,
    grpc_endpoint: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Listens on two free loopback ports: OTLP/HTTP and OTLP/gRPC.
    pub async fn start() -> Self {
        let sink = Sink::default();
        let http = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let endpoint = format!("http://{}", http.local_addr().unwrap());
        let http_sink = sink.clone();
        let http_task = tokio::spawn(async move {
            while let Ok((stream, _)) = http.accept().await {
                // Like a collector's Go server: no Nagle stall on the answers.
                let _ = stream.set_nodelay(true);
                let sink = http_sink.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let sink = sink.clone();
                        async move { Ok::<_, Infallible>(http_export(sink, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let grpc_endpoint = format!("http://{}", grpc.local_addr().unwrap());
        let grpc_service = TraceServiceServer::new(sink.clone());
        let grpc_task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(grpc);
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(grpc_service, incoming)
                .await;
        });
        Self {
            sink,
            endpoint,
            grpc_endpoint,
            tasks: vec![http_task, grpc_task],
        }
    }

    /// The OTLP/HTTP base URL (the exporter appends `/v1/traces`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The OTLP/gRPC endpoint.
    pub fn grpc_endpoint(&self) -> &str {
        &self.grpc_endpoint
    }

    /// Every span received so far, over any transport.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.sink
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The spans received over `protocol`.
    pub fn spans_via(&self, protocol: Protocol) -> Vec<ReceivedSpan> {
        self.sink
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == protocol)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The resource attributes (string forms) of every resource that sent spans over
    /// `protocol`, one map per `resourceSpans` entry.
    pub fn resources_via(&self, protocol: Protocol) -> Vec<BTreeMap<String, String>> {
        self.received()
            .iter()
            .filter(|(p, _)| *p == protocol)
            .flat_map(|(_, r)| r["resourceSpans"].as_array().cloned().unwrap_or_default())
            .map(|rs| attributes(&rs["resource"]["attributes"]))
            .collect()
    }

    fn received(&self) -> Vec<Received> {
        self.sink.received.lock().unwrap().clone()
    }

    /// Everything received, as one OTLP/JSON `ExportTraceServiceRequest` (what a collector's
    /// file exporter writes), for tools that read OTLP files.
    pub fn as_otlp_json(&self) -> Value {
        let resource_spans: Vec<Value> = self
            .received()
            .iter()
            .flat_map(|(_, r)| r["resourceSpans"].as_array().cloned().unwrap_or_default())
            .collect();
        serde_json::json!({ "resourceSpans": resource_spans })
    }

    /// Environment that makes a process export its traces here over OTLP/HTTP with JSON,
    /// quickly.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_for(Protocol::HttpJson)
    }

    /// Environment that makes a process export its traces here over `protocol`, quickly.
    pub fn env_for(&self, protocol: Protocol) -> Vec<(String, String)> {
        let endpoint = match protocol {
            Protocol::Grpc => &self.grpc_endpoint,
            Protocol::HttpProtobuf | Protocol::HttpJson => &self.endpoint,
        };
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.env_value()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
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

    #[test]
    fn a_protobuf_request_flattens_like_its_json_form() {
        use opentelemetry_proto::tonic::{
            common::v1::{AnyValue, KeyValue, any_value},
            resource::v1::Resource,
            trace::v1::{ResourceSpans, ScopeSpans, Span},
        };
        let text = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "rssc-controller")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
                        name: "pod.create".into(),
                        start_time_unix_nano: 10,
                        end_time_unix_nano: 20,
                        attributes: vec![KeyValue {
                            key: "attempt".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(3)),
                            }),
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        // Through the wire and back, as the HTTP/protobuf transport receives it.
        let decoded = ExportTraceServiceRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        let sink = Sink::default();
        sink.keep_proto(Protocol::HttpProtobuf, &decoded);
        let spans = sink.spans.lock().unwrap().clone();
        assert_eq!(spans.len(), 1);
        let (protocol, span) = &spans[0];
        assert_eq!(*protocol, Protocol::HttpProtobuf);
        assert_eq!(span.service, "rssc-controller");
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.span_id, "0102030405060708");
        assert_eq!(span.parent_span_id, "");
        assert_eq!(span.attributes["attempt"], "3");
        assert_eq!((span.start_ns, span.end_ns), (10, 20));
    }
}
