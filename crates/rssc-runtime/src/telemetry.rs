//! OpenTelemetry traces: `tracing` spans exported over OTLP (gRPC, HTTP/protobuf or HTTP/JSON)
//! as the standard `OTEL_*` environment variables say, and off when no endpoint is set.
//!
//! Read here: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp` or `none`),
//! `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`. Read by the OpenTelemetry SDK and exporter:
//! `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `_HEADERS`, `_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`.

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::{
    Resource, runtime,
    trace::{SdkTracer, SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};

/// How traces leave the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Export {
    /// No export (no endpoint, or disabled).
    Off,
    /// OTLP over gRPC.
    Grpc,
    /// OTLP over HTTP with protobuf bodies (the OTLP default).
    HttpProtobuf,
    /// OTLP over HTTP with JSON bodies.
    HttpJson,
}

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The protocol variable names no OTLP protocol.
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL {0:?} is not one of grpc, http/protobuf, http/json; traces are off")]
    Protocol(String),
    /// The exporter could not be built.
    #[error("cannot set up the OTLP exporter: {0}; traces are off")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// What the environment (`var` looks a variable up) asks for.
pub fn export_from(var: impl Fn(&str) -> Option<String>) -> Result<Export, Error> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(Export::Off);
    }
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_none()
    {
        return Ok(Export::Off);
    }
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match protocol.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Ok(Export::HttpProtobuf),
        Some("grpc") => Ok(Export::Grpc),
        Some("http/json") => Ok(Export::HttpJson),
        Some(other) => Err(Error::Protocol(other.to_owned())),
    }
}

/// Resource attributes: the SDK's (service name and `OTEL_RESOURCE_ATTRIBUTES`), `service`
/// as the service name unless `OTEL_SERVICE_NAME` says otherwise, and the Pod's namespace and
/// name from the downward-API variables `POD_NAMESPACE` and `POD_NAME`.
fn resource(service: &str) -> Resource {
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name(service.to_owned());
    }
    let given = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    for (key, var) in [
        ("k8s.namespace.name", "POD_NAMESPACE"),
        ("k8s.pod.name", "POD_NAME"),
    ] {
        if let Ok(value) = std::env::var(var)
            && !given.contains(key)
        {
            builder = builder.with_attribute(KeyValue::new(key, value));
        }
    }
    builder.build()
}

/// The process's trace export; flush it with [`Telemetry::shutdown`] before exiting.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    service: &'static str,
}

impl Telemetry {
    /// Sets up export for `service` as the environment says. Call inside a Tokio runtime.
    /// Errors leave traces off (the process runs on); report them once logging is up.
    pub fn start(service: &'static str) -> (Self, Option<Error>) {
        let off = Self {
            provider: None,
            service,
        };
        let export = match export_from(|name| std::env::var(name).ok()) {
            Ok(Export::Off) => return (off, None),
            Ok(export) => export,
            Err(err) => return (off, Some(err)),
        };
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let exporter = match export {
            Export::Grpc => builder.with_tonic().build(),
            Export::HttpProtobuf => builder.with_http().with_protocol(Protocol::HttpBinary).build(),
            Export::HttpJson => builder.with_http().with_protocol(Protocol::HttpJson).build(),
            Export::Off => unreachable!("handled above"),
        };
        let exporter = match exporter {
            Ok(exporter) => exporter,
            Err(err) => return (off, Some(err.into())),
        };
        // Exports run on a thread of their own, so neither binary's runtime waits on a collector.
        let processor = BatchSpanProcessor::builder(exporter, runtime::TokioCurrentThread).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource(service))
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        (
            Self {
                provider: Some(provider),
                service,
            },
            None,
        )
    }

    /// The tracer `tracing` spans go to, when export is on.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.provider.as_ref().map(|p| p.tracer(self.service))
    }

    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is buffered and stops.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// The W3C `traceparent` of `span`, when it is exported (none while traces are off).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The remote span context a `traceparent` names, if it parses.
fn remote(traceparent: &str) -> Option<opentelemetry::Context> {
    use opentelemetry::{propagation::TextMapPropagator as _, trace::TraceContextExt as _};
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.trim().to_owned())]);
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` a child of the span `traceparent` names (ignored if it does not parse).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if let Some(context) = remote(traceparent) {
        let _ = span.set_parent(context);
    }
}

/// Links `span` to the span `traceparent` names (ignored if it does not parse).
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if let Some(context) = remote(traceparent) {
        span.add_link(context.span().span_context().clone());
    }
}

/// Joins `span` to the job traces in a `traceparent` annotation value (comma-separated): one
/// becomes its parent, several become links.
pub fn join(span: &tracing::Span, annotation: &str) {
    let parents: Vec<&str> = annotation.split(',').filter(|p| !p.trim().is_empty()).collect();
    match parents.as_slice() {
        [one] => set_parent(span, one),
        many => many.iter().for_each(|p| add_link(span, p)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn export(vars: &[(&str, &str)]) -> Result<Export, Error> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        export_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn traceparents_parse_only_when_well_formed() {
        assert!(remote("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
        assert!(remote("not-a-traceparent").is_none());
        assert!(remote("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        // Without an exporter, spans have no context to hand on.
        assert!(traceparent(&tracing::info_span!("job")).is_none());
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(export(&[]).unwrap(), Export::Off);
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]).unwrap(),
            Export::Off
        );
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            export(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).unwrap(),
            Export::Off
        );
        assert_eq!(
            export(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            Export::Off
        );
    }

    #[test]
    fn the_protocol_variables_choose_the_transport() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(export(&[endpoint]).unwrap(), Export::HttpProtobuf);
        assert_eq!(
            export(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap(),
            Export::Grpc
        );
        assert_eq!(
            export(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ])
            .unwrap(),
            Export::HttpJson,
            "the traces-specific variables win"
        );
        let err = export(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]).unwrap_err();
        assert!(err.to_string().contains("thrift"), "{err}");
    }
}
