//! Log setup: `tracing` to stdout as JSON lines or text, filtered by `--log-level`.

use tracing_subscriber::{EnvFilter, filter, fmt, prelude::*};

use crate::args::{LogArgs, LogFormat};

/// Error setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--log-level` filter does not parse.
    #[error(
        "invalid --log-level {filter:?}; use a level such as `info` or directives such as `info,rssc_listener=debug`"
    )]
    Filter {
        /// The filter as given.
        filter: String,
        /// Why it does not parse.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is already installed.
    #[error("logging is already initialized")]
    AlreadyInitialized,
}

/// Parses a log filter.
pub fn filter(directives: &str) -> Result<EnvFilter, Error> {
    EnvFilter::try_new(directives).map_err(|source| Error::Filter {
        filter: directives.to_owned(),
        source,
    })
}

/// Whether a span or event goes out as a trace. Not:
/// - what the exporter's own HTTP/2 and gRPC stack records, which would trace itself into its
///   next export;
/// - kube-runtime's spans: its `reconciling object` wraps each of our `reconcile` spans, which
///   carry the same object and join the job's trace, while it stayed outside that trace, one
///   trace of its own per reconcile (about three per runner) that told a person nothing.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    let exporter = ["h2", "tonic", "tower", "hyper", "reqwest", "opentelemetry"]
        .iter()
        .any(|t| target.starts_with(t));
    let kube_runtime_span = meta.is_span() && target.starts_with("kube_runtime");
    !exporter && !kube_runtime_span
}

/// Installs the global subscriber for a binary; with a `tracer`, spans are also exported as
/// OpenTelemetry traces.
pub fn init(args: &LogArgs, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> Result<(), Error> {
    let filter = filter(&args.log_level)?;
    let traces = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_filter(filter::filter_fn(exported))
    });
    let registry = tracing_subscriber::registry().with(filter).with(traces);
    let result = match args.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
    };
    result.map_err(|_| Error::AlreadyInitialized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_levels_and_directives() {
        assert!(filter("info").is_ok());
        assert!(filter("warn,rssc_listener=debug").is_ok());
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        let err = filter("rssc=loud").unwrap_err();
        assert!(err.to_string().contains("--log-level"), "{err}");
    }
}
