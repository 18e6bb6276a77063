//! The admin server every binary runs: `/healthz` (the process serves requests), `/readyz`
//! (every [`Health`] check passes) and `/metrics` (Prometheus/OpenMetrics text).

use std::{convert::Infallible, future::Future, sync::Arc};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::CONTENT_TYPE,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::net::TcpListener;

use crate::health::Health;

/// Content type of the metrics page.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin server serves.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// Readiness checks.
    pub health: Health,
    /// Metrics, registered before the server starts.
    pub registry: Arc<Registry>,
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "admin server: accept failed");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &state);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "admin server: connection ended with an error");
            }
        });
    }
}

fn respond(request: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served here\n".to_owned(),
        );
    }
    match request.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => {
            let readiness = state.health.readiness();
            let status = if readiness.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, readiness.report)
        }
        "/metrics" => {
            let mut body = String::new();
            match encode(&mut body, &state.registry) {
                Ok(()) => Response::builder()
                    .status(StatusCode::OK)
                    .header(CONTENT_TYPE, METRICS_CONTENT_TYPE)
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response parts are valid"),
                Err(error) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode metrics: {error}\n"),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
