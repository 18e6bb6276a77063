//! A plain-HTTP proxy on loopback in front of any Kubernetes API server (the test server or a
//! real cluster) that injects the faults the test server can inject itself: a share of writes
//! answered 409 Conflict or 500 without reaching the server, particular writes refused (409
//! Conflict, 429 Too Many Requests as flow control answers, 500, or 409 AlreadyExists for a
//! taken generated name), and open watches ended on demand.
//! Scenarios point the processes under test at it, so Kubernetes faults run against a real
//! cluster too.
//!
//! Requests without credentials are sent on with the kubeconfig's; requests that carry a bearer
//! token (a listener's ServiceAccount token) are sent on with only that token, so RBAC applies
//! to them as it would without the proxy.

use std::{convert::Infallible, net::SocketAddr, path::Path, sync::Arc};

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, BodyStream, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use kube::{Client, Config};
use rssc_sim_kube::{Faults, Refused, RequestRecord};
use tokio::{net::TcpListener, task::JoinHandle};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Headers passed on to the API server; the rest (hop-by-hop, `Host`, lengths) the client sets.
const FORWARDED_HEADERS: [header::HeaderName; 4] = [
    header::ACCEPT,
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    header::USER_AGENT,
];

/// A running proxy.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No loopback port.
    #[error("cannot listen on loopback: {0}")]
    Listen(#[from] std::io::Error),
    /// The upstream kubeconfig makes no client.
    #[error("cannot build a client for the upstream API server: {0}")]
    Client(#[from] kube::Error),
    /// The upstream kubeconfig cannot be read.
    #[error("cannot read the upstream kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
}

struct Upstream {
    /// With the kubeconfig's credentials.
    admin: Client,
    /// With the kubeconfig's server and CA only, for requests that bring their own token.
    bearer: Client,
    faults: Arc<Faults>,
}

impl FaultProxy {
    /// Starts a proxy to the API server `upstream` describes, on a free loopback port.
    pub async fn start(upstream: Config) -> Result<Self, Error> {
        let bearer_config = Config {
            auth_info: kube::config::AuthInfo::default(),
            ..upstream.clone()
        };
        let faults = Arc::new(Faults::default());
        let upstream = Arc::new(Upstream {
            admin: Client::try_from(upstream)?,
            bearer: Client::try_from(bearer_config)?,
            faults: faults.clone(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // A proxy adds no Nagle stall of its own (see the test server's accept loop).
                let _ = stream.set_nodelay(true);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let upstream = upstream.clone();
                        async move { Ok::<_, Infallible>(forward(&upstream, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, faults, task })
    }

    /// Starts a proxy to the API server the kubeconfig at `path` names, with its credentials.
    pub async fn in_front_of(path: &Path) -> Result<Self, Error> {
        let file = kube::config::Kubeconfig::read_from(path)?;
        let config =
            Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await?;
        Self::start(config).await
    }

    /// A client that talks through the proxy, with `namespace` as its default.
    pub fn client(&self, namespace: &str) -> Client {
        let mut config = Config::new(self.url().parse().expect("the proxy's URL is a URI"));
        config.default_namespace = namespace.to_owned();
        Client::try_from(config).expect("a client for a plain-HTTP loopback URL")
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault switches and the log of requests through the proxy.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// Writes a kubeconfig that reaches the cluster through the proxy (without credentials: the
    /// proxy adds the upstream kubeconfig's) to `path`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: {url}\n\
             contexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: proxy\n    \
             namespace: {namespace}\ncurrent-context: proxy\nusers:\n- name: proxy\n  user: {{}}\n",
            url = self.url()
        );
        std::fs::write(path, text)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(upstream: &Upstream, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let target = Target::of(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or(""));
    let record = |code: u16| RequestRecord {
        verb: target.verb.to_owned(),
        resource: target.resource.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        code,
    };
    if target.is_write() {
        let config = upstream.faults.config();
        let roll = rand::random::<f64>();
        let injected = if let Some(answer) = upstream.faults.take_refusal(target.verb, &target.resource) {
            Some(match answer {
                Refused::Conflict => conflict(&target),
                Refused::ServerError => internal_error(),
                Refused::NameTaken => name_taken(&target),
                Refused::TooManyRequests => {
                    upstream.faults.record(record(429));
                    return too_many_requests();
                }
            })
        } else if roll < config.write_conflict_rate {
            Some(conflict(&target))
        } else if roll < config.write_conflict_rate + config.write_error_rate {
            Some(internal_error())
        } else {
            None
        };
        if let Some((code, status)) = injected {
            upstream.faults.record(record(code.as_u16()));
            return json_response(code, &status);
        }
    }
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &status(400, "BadRequest", &e.to_string()),
            );
        }
    };
    let client = if parts.headers.contains_key(header::AUTHORIZATION) {
        &upstream.bearer
    } else {
        &upstream.admin
    };
    let mut out = Request::builder().method(parts.method.clone()).uri(
        parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str),
    );
    if let Some(headers) = out.headers_mut() {
        copy_headers(&parts.headers, headers);
    }
    let request = out
        .body(kube::client::Body::from(body.to_vec()))
        .expect("a request made of a valid request's parts");
    let response = match client.send(request).await {
        Ok(response) => response,
        Err(e) => {
            upstream.faults.record(record(502));
            let message = format!("the proxy cannot reach the API server: {e}");
            return json_response(
                StatusCode::BAD_GATEWAY,
                &status(502, "ServiceUnavailable", &message),
            );
        }
    };
    upstream.faults.record(record(response.status().as_u16()));
    if let Some(delay) = upstream.faults.answer_delay(target.verb, &target.resource) {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = response.into_parts();
    let body: ProxyBody = if target.verb == "watch" {
        // A dropped watch ends as a real one does when the server closes it: the stream stops.
        let mut drops = upstream.faults.watch_drops();
        let frames = BodyStream::new(body).map(|frame| frame.map_err(|e| Box::new(e) as BoxError));
        let frames = match upstream.faults.watch_delay(&target.resource) {
            Some(delay) => held_back(frames, delay).boxed(),
            None => frames.boxed(),
        };
        let stream = frames.take_until(async move {
            let _ = drops.recv().await;
        });
        UnsyncBoxBody::new(StreamBody::new(stream))
    } else {
        body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
    };
    Response::from_parts(parts, body)
}

/// `frames`, each passed on `delay` after it arrived: a lag, not a limit on throughput, since
/// the frames are read as they come, and they keep their order.
fn held_back<S, T>(frames: S, delay: std::time::Duration) -> impl futures::Stream<Item = T> + Send
where
    S: futures::Stream<Item = T> + Send + 'static,
    T: Send + 'static,
{
    let (arrived, waiting) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut frames = std::pin::pin!(frames);
        loop {
            // Stops with the watch, or when its client has gone.
            let frame = tokio::select! {
                frame = frames.next() => frame,
                () = arrived.closed() => None,
            };
            let Some(frame) = frame else { break };
            let _ = arrived.send((tokio::time::Instant::now() + delay, frame));
        }
    });
    futures::stream::unfold(waiting, |mut waiting| async move {
        let (due, frame) = waiting.recv().await?;
        tokio::time::sleep_until(due).await;
        Some((frame, waiting))
    })
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARDED_HEADERS {
        if let Some(value) = from.get(&name) {
            to.insert(name, value.clone());
        }
    }
}

/// What API Priority and Fairness answers a request it rejects: 429, `Retry-After`, and a
/// plain-text body (not a `Status`).
fn too_many_requests() -> Response<ProxyBody> {
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::RETRY_AFTER, rssc_sim_kube::TOO_MANY_REQUESTS_RETRY_AFTER)
        .body(
            Full::new(Bytes::from_static(
                rssc_sim_kube::TOO_MANY_REQUESTS_BODY.as_bytes(),
            ))
            .map_err(|never| match never {})
            .boxed_unsync(),
        )
        .expect("a valid response")
}

fn json_response(code: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("JSON values serialize"));
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes).map_err(|never| match never {}).boxed_unsync())
        .expect("a valid response")
}

/// A `metav1.Status` failure, as the API server writes one.
fn status(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

fn conflict(target: &Target) -> (StatusCode, serde_json::Value) {
    let message = format!(
        "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply \
         your changes to the latest version and try again",
        target.resource, target.name
    );
    (StatusCode::CONFLICT, status(409, "Conflict", &message))
}

fn name_taken(target: &Target) -> (StatusCode, serde_json::Value) {
    let message = format!("{} with a generated name already exists", target.resource);
    (StatusCode::CONFLICT, status(409, "AlreadyExists", &message))
}

fn internal_error() -> (StatusCode, serde_json::Value) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        status(500, "InternalError", "injected fault: etcd is unavailable"),
    )
}

/// What a request is about, in the terms of the test server's request log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    verb: &'static str,
    resource: String,
    namespace: String,
    name: String,
}

impl Target {
    fn of(method: &Method, path: &str, query: &str) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // After `/api/v1` or `/apis/<group>/<version>`.
        let rest = match segments.as_slice() {
            ["api", _, rest @ ..] => rest,
            ["apis", _, _, rest @ ..] => rest,
            _ => &[][..],
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (*ns, rest),
            _ => ("", rest),
        };
        let (resource, name) = match rest {
            [] => {
                return Self {
                    verb: "discovery",
                    resource: path.to_owned(),
                    namespace: String::new(),
                    name: String::new(),
                };
            }
            [plural] => ((*plural).to_owned(), ""),
            [plural, name] => ((*plural).to_owned(), *name),
            [plural, name, sub, ..] => (format!("{plural}/{sub}"), *name),
        };
        let watching = query
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1");
        let verb = match (method, name.is_empty()) {
            (&Method::GET, _) if watching => "watch",
            (&Method::GET, false) => "get",
            (&Method::GET, true) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, false) => "delete",
            (&Method::DELETE, true) => "deletecollection",
            _ => "other",
        };
        Self {
            verb,
            resource,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn is_write(&self) -> bool {
        matches!(
            self.verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_the_test_server_logs_them() {
        let t = Target::of(
            &Method::PATCH,
            "/apis/scaleset.actions.github.com/v1alpha1/namespaces/ci/ephemeralrunners/r-1/status",
            "fieldManager=rssc",
        );
        assert_eq!(
            (t.verb, t.resource.as_str(), t.namespace.as_str(), t.name.as_str()),
            ("patch", "ephemeralrunners/status", "ci", "r-1")
        );
        assert!(t.is_write());
        let t = Target::of(
            &Method::GET,
            "/api/v1/namespaces/ci/pods",
            "watch=true&resourceVersion=5",
        );
        assert_eq!((t.verb, t.resource.as_str()), ("watch", "pods"));
        assert!(!t.is_write());
        let t = Target::of(&Method::GET, "/api/v1/namespaces/ci", "");
        assert_eq!(
            (t.verb, t.resource.as_str(), t.name.as_str()),
            ("get", "namespaces", "ci")
        );
        let t = Target::of(&Method::DELETE, "/api/v1/namespaces/ci/secrets", "");
        assert_eq!(t.verb, "deletecollection");
        assert_eq!(Target::of(&Method::GET, "/apis", "").verb, "discovery");
    }

    #[test]
    fn injected_failures_are_api_statuses() {
        let target = Target::of(&Method::PUT, "/api/v1/namespaces/ci/pods/p", "");
        let (code, body) = conflict(&target);
        assert_eq!(code, StatusCode::CONFLICT);
        assert_eq!(body["reason"], "Conflict");
        assert_eq!(body["code"], 409);
        let (code, body) = internal_error();
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["reason"], "InternalError");
    }
}
