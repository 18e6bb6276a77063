//! The Kubernetes client of both binaries, with an optional client-side request rate limit (QPS
//! and burst, as client-go has; off by default, as the API server's own flow control is what
//! protects it and the controller's reconcile concurrency bounds its requests in flight),
//! retries of requests the server's flow control rejected (429 with `Retry-After`, as client-go
//! retries them), and request metrics by verb, resource and status class.

use std::{
    future::Future,
    num::NonZeroU32,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use clap::Args;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::{
    Client, Config,
    client::{Body, ClientBuilder},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tower::{Layer, Service};

/// Kubernetes client flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct KubeArgs {
    /// Sustained Kubernetes API requests per second; 0 (the default) leaves the pace to the API
    /// server's flow control.
    #[arg(long, env = "RSSC_KUBE_QPS", default_value_t = 0)]
    pub kube_qps: u32,
    /// Requests that may go at once above the sustained rate (at least the QPS), when there is
    /// one.
    #[arg(long, env = "RSSC_KUBE_BURST", default_value_t = 1000)]
    pub kube_burst: u32,
}

impl Default for KubeArgs {
    fn default() -> Self {
        Self {
            kube_qps: 0,
            kube_burst: 1000,
        }
    }
}

impl KubeArgs {
    /// The token-bucket quota these flags describe; `None` when unlimited.
    pub fn quota(&self) -> Option<Quota> {
        let qps = NonZeroU32::new(self.kube_qps)?;
        let burst = NonZeroU32::new(self.kube_burst.max(self.kube_qps)).unwrap_or(qps);
        Some(Quota::per_second(qps).allow_burst(burst))
    }
}

/// A client from the in-cluster config or the kubeconfig, limited as `args` says.
pub async fn client(args: &KubeArgs) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    client_for(config, args)
}

/// A client for `config`, limited as `args` says, that sends a request flow control rejected
/// again after the server's `Retry-After` ([`RetryThrottled`]).
pub fn client_for(config: Config, args: &KubeArgs) -> Result<Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?.with_layer(&RequestMetricsLayer);
    let limited = match args.quota() {
        Some(quota) => builder.with_layer(&RateLimitLayer::new(quota)).build(),
        None => builder.build(),
    };
    let namespace = limited.default_namespace().to_owned();
    // kube's own stack cannot be called twice for one request; a client can.
    Ok(Client::new(RetryThrottled::new(Sender(limited)), namespace))
}

/// How many times a request rejected with 429 and `Retry-After` is sent again (client-go's
/// default).
pub const THROTTLED_RETRIES: u32 = 10;

/// The longest wait a `Retry-After` gets, whatever it asks.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Sends a request again, up to [`THROTTLED_RETRIES`] times, when the API server answered it
/// 429 Too Many Requests with a `Retry-After` header, after the seconds that header asks: what
/// API Priority and Fairness (and `--max-requests-inflight`) answer a request they will not
/// queue, having done nothing with it. A 429 without `Retry-After` (an eviction a
/// PodDisruptionBudget blocks) is the answer, as in client-go.
#[derive(Clone, Debug)]
pub struct RetryThrottled<S> {
    inner: S,
}

impl<S> RetryThrottled<S> {
    /// Retries `inner`'s throttled requests.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, RB> Service<http::Request<Body>> for RetryThrottled<S>
where
    S: Service<http::Request<Body>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The service made ready goes with this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await?;
            let mut retries = 0;
            loop {
                let mut again = http::Request::builder()
                    .method(parts.method.clone())
                    .uri(parts.uri.clone())
                    .version(parts.version);
                if let Some(headers) = again.headers_mut() {
                    headers.clone_from(&parts.headers);
                }
                let again = again.body(Body::from(body.clone()))?;
                std::future::poll_fn(|cx| inner.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                let response = inner.call(again).await.map_err(Into::into)?;
                match throttled_wait(&response) {
                    Some(wait) if retries < THROTTLED_RETRIES => {
                        retries += 1;
                        let call = KubeCall::of(&parts.method, parts.uri.path(), parts.uri.query());
                        request_metrics().retried(&call);
                        tracing::debug!(
                            verb = call.verb,
                            resource = %call.resource,
                            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                            retries,
                            "the API server is throttling; sending the request again"
                        );
                        tokio::time::sleep(wait).await;
                    }
                    _ => return Ok(response),
                }
            }
        })
    }
}

/// How long to wait before sending again a request answered `response`: `None` unless it is a
/// 429 with `Retry-After` in seconds.
fn throttled_wait<B>(response: &http::Response<B>) -> Option<Duration> {
    if response.status() != http::StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let seconds: u64 = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(LONGEST_RETRY_AFTER))
}

/// A [`Client`] as a service, so [`RetryThrottled`] can send through it more than once.
#[derive(Clone)]
struct Sender(Client);

impl Service<http::Request<Body>> for Sender {
    type Response = http::Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The client's own buffer waits for readiness inside `send`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move { client.send(request).await })
    }
}

/// Counts every request of the process's Kubernetes clients (one set per process, whichever
/// registry serves it).
#[derive(Clone, Debug)]
pub struct KubeRequestMetrics {
    requests: Family<KubeRequestLabels, Counter>,
    retries: Family<CallLabels, Counter>,
    duration: Family<VerbLabels, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KubeRequestLabels {
    verb: &'static str,
    resource: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    verb: &'static str,
    resource: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

fn request_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// The process's Kubernetes request metrics.
pub fn request_metrics() -> &'static KubeRequestMetrics {
    static METRICS: OnceLock<KubeRequestMetrics> = OnceLock::new();
    METRICS.get_or_init(|| KubeRequestMetrics {
        requests: Family::default(),
        retries: Family::default(),
        duration: Family::new_with_constructor(request_histogram),
    })
}

impl KubeRequestMetrics {
    /// Registers `rssc_kube_requests_total`, `rssc_kube_request_retries_total` and
    /// `rssc_kube_request_duration_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rssc_kube_requests",
            "Kubernetes API requests by verb, resource and status class",
            self.requests.clone(),
        );
        registry.register(
            "rssc_kube_request_retries",
            "Kubernetes API requests sent again after the server rejected them with 429 and Retry-After",
            self.retries.clone(),
        );
        registry.register(
            "rssc_kube_request_duration_seconds",
            "Time until the Kubernetes API answered, by verb (watches excluded)",
            self.duration.clone(),
        );
    }

    /// Records that a throttled request is sent again.
    pub fn retried(&self, call: &KubeCall) {
        let labels = CallLabels {
            verb: call.verb,
            resource: call.resource.clone(),
        };
        self.retries.get_or_create(&labels).inc();
    }

    /// Records one request.
    pub fn record(&self, call: &KubeCall, status: Option<u16>, took: Duration) {
        let labels = KubeRequestLabels {
            verb: call.verb,
            resource: call.resource.clone(),
            status_class: rssc_github::metrics::status_class(status),
        };
        self.requests.get_or_create(&labels).inc();
        if call.verb != "watch" {
            self.duration
                .get_or_create(&VerbLabels { verb: call.verb })
                .observe(took.as_secs_f64());
        }
    }
}

/// What a request does, in Kubernetes' terms: the verb (`get`, `list`, `watch`, `create`,
/// `update`, `patch`, `delete`, `deletecollection`) and the resource (`pods`,
/// `ephemeralrunners/status`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeCall {
    /// The verb.
    pub verb: &'static str,
    /// The resource, with its subresource after a `/`; `discovery` for API discovery.
    pub resource: String,
}

impl KubeCall {
    /// Reads the verb and resource from a request's method, path and query.
    pub fn of(method: &http::Method, path: &str, query: Option<&str>) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = match segments.first() {
            Some(&"api") if segments.len() >= 2 => &segments[2..],
            Some(&"apis") if segments.len() >= 3 => &segments[3..],
            _ => &[][..],
        };
        let rest = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
            &rest[2..]
        } else {
            rest
        };
        // Discovery paths (`/version`, `/apis`) read one document.
        let named = rest.len() >= 2 || rest.is_empty();
        let resource = match rest {
            [] => "discovery".to_owned(),
            [resource, _, sub, ..] => format!("{resource}/{sub}"),
            [resource, ..] => (*resource).to_owned(),
        };
        let watch = query
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1");
        let verb = match *method {
            http::Method::GET if watch => "watch",
            http::Method::GET if named => "get",
            http::Method::GET => "list",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE if named => "delete",
            http::Method::DELETE => "deletecollection",
            _ => "other",
        };
        Self { verb, resource }
    }
}

/// Records each request in [`request_metrics`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner }
    }
}

/// The service [`RequestMetricsLayer`] wraps around kube's stack.
#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for RequestMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = KubeCall::of(request.method(), request.uri().path(), request.uri().query());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let status = response.as_ref().ok().map(|r| r.status().as_u16());
            request_metrics().record(&call, status, started.elapsed());
            response
        })
    }
}

/// Holds each request until the shared token bucket has a token for it.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl RateLimitLayer {
    /// A layer allowing `quota`.
    pub fn new(quota: Quota) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
            waiting: None,
            permitted: false,
        }
    }
}

/// The service [`RateLimitLayer`] wraps around kube's stack: it is not ready until a token is
/// available, so kube's request buffer queues requests instead of sending them.
pub struct RateLimited<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    permitted: bool,
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            if self.limiter.check().is_ok() {
                self.permitted = true;
            } else {
                let limiter = self.limiter.clone();
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(async move { limiter.until_ready().await }));
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.waiting = None;
                self.permitted = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // Each call spends the token poll_ready took.
        self.permitted = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        time::{Duration, Instant},
    };

    use tower::ServiceExt;

    use super::*;

    #[test]
    fn zero_qps_means_unlimited_and_burst_is_at_least_the_rate() {
        let unlimited = KubeArgs {
            kube_qps: 0,
            kube_burst: 10,
        };
        assert!(unlimited.quota().is_none());
        let small_burst = KubeArgs {
            kube_qps: 50,
            kube_burst: 5,
        };
        assert_eq!(small_burst.quota().unwrap().burst_size().get(), 50);
        assert!(
            KubeArgs::default().quota().is_none(),
            "no client-side limit by default"
        );
        let limited = KubeArgs {
            kube_qps: 500,
            ..KubeArgs::default()
        };
        assert_eq!(limited.quota().unwrap().burst_size().get(), 1000);
    }

    #[test]
    fn verbs_and_resources_from_paths() {
        use http::Method;
        let call = |method: Method, path: &str, query: Option<&str>| {
            let c = KubeCall::of(&method, path, query);
            (c.verb, c.resource)
        };
        let ers = "/apis/scaleset.actions.github.com/v1alpha1/namespaces/ci/ephemeralrunners";
        assert_eq!(call(Method::GET, ers, None), ("list", "ephemeralrunners".into()));
        assert_eq!(
            call(
                Method::GET,
                ers,
                Some("labelSelector=a%3Db&watch=true&resourceVersion=5")
            ),
            ("watch", "ephemeralrunners".into())
        );
        assert_eq!(
            call(Method::POST, ers, None),
            ("create", "ephemeralrunners".into())
        );
        assert_eq!(
            call(Method::PATCH, &format!("{ers}/r-1/status"), None),
            ("patch", "ephemeralrunners/status".into())
        );
        assert_eq!(
            call(Method::DELETE, "/api/v1/namespaces/ci/pods/r-1", None),
            ("delete", "pods".into())
        );
        assert_eq!(
            call(Method::DELETE, "/api/v1/namespaces/ci/pods", None),
            ("deletecollection", "pods".into())
        );
        assert_eq!(
            call(Method::GET, "/api/v1/namespaces/ci", None),
            ("get", "namespaces".into())
        );
        assert_eq!(call(Method::GET, "/api/v1/pods", None), ("list", "pods".into()));
        assert_eq!(
            call(
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/rssc/leases/rssc-controller",
                None
            ),
            ("update", "leases".into())
        );
        assert_eq!(call(Method::GET, "/version", None), ("get", "discovery".into()));
        assert_eq!(call(Method::GET, "/apis", None), ("get", "discovery".into()));
    }

    #[tokio::test]
    async fn requests_are_counted_by_verb_resource_and_status_class() {
        let mut service = RequestMetricsLayer.layer(tower::service_fn(|r: http::Request<()>| async move {
            let status = if r.uri().path().ends_with("missing") {
                404
            } else {
                200
            };
            Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap())
        }));
        for path in [
            "/api/v1/namespaces/metrics-test/secrets/missing",
            "/api/v1/namespaces/metrics-test/secrets/there",
        ] {
            let request = http::Request::get(path).body(()).unwrap();
            service.ready().await.unwrap().call(request).await.unwrap();
        }
        let mut registry = Registry::default();
        request_metrics().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"rssc_kube_requests_total{verb="get",resource="secrets",status_class="4xx"} "#,
            r#"rssc_kube_requests_total{verb="get",resource="secrets",status_class="2xx"} "#,
            r#"rssc_kube_request_duration_seconds_count{verb="get"} "#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    /// Method, URI, content type and body of a request a test server got.
    type Seen = Arc<std::sync::Mutex<Vec<(http::Method, String, Option<String>, Vec<u8>)>>>;

    /// A server that answers every request with the next of `answers` (the last one again
    /// once they run out), and the requests it got.
    fn answering(
        answers: Vec<(u16, Option<&'static str>)>,
    ) -> (
        impl Service<http::Request<Body>, Response = http::Response<()>, Error = Infallible, Future = impl Send>
        + Clone
        + Send
        + 'static,
        Seen,
    ) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let answers = Arc::new(answers);
        let service = tower::service_fn(move |r: http::Request<Body>| {
            let (log, answers) = (log.clone(), answers.clone());
            async move {
                let (parts, body) = r.into_parts();
                let body = body.collect_bytes().await.unwrap().to_vec();
                let content_type = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_owned());
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push((parts.method, parts.uri.to_string(), content_type, body));
                    log.len()
                };
                let (status, retry_after) = answers[(n - 1).min(answers.len() - 1)];
                let mut response = http::Response::builder().status(status);
                if let Some(seconds) = retry_after {
                    response = response.header(http::header::RETRY_AFTER, seconds);
                }
                Ok::<_, Infallible>(response.body(()).unwrap())
            }
        });
        (service, seen)
    }

    fn create_secret() -> http::Request<Body> {
        http::Request::post("/api/v1/namespaces/retry-test/secrets")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(br#"{"metadata":{"name":"s"}}"#.to_vec()))
            .unwrap()
    }

    #[tokio::test]
    async fn throttled_requests_are_sent_again_whole_after_retry_after() {
        let (server, seen) = answering(vec![(429, Some("0")), (429, Some("0")), (201, None)]);
        let mut service = RetryThrottled::new(server);
        let response = service
            .ready()
            .await
            .unwrap()
            .call(create_secret())
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            3,
            "two rejections, then the request that went through"
        );
        for request in seen.iter() {
            assert_eq!(request, &seen[0], "every attempt is the same request");
        }
        assert_eq!(seen[0].0, http::Method::POST);
        assert_eq!(seen[0].1, "/api/v1/namespaces/retry-test/secrets");
        assert_eq!(seen[0].2.as_deref(), Some("application/json"));
        assert_eq!(seen[0].3, br#"{"metadata":{"name":"s"}}"#);
        let mut registry = Registry::default();
        request_metrics().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let line = r#"rssc_kube_request_retries_total{verb="create",resource="secrets"} "#;
        assert!(text.contains(line), "missing {line} in\n{text}");
    }

    #[tokio::test]
    async fn a_429_without_retry_after_and_the_last_of_many_are_the_answer() {
        // An eviction a PodDisruptionBudget blocks: 429 without Retry-After, not retried.
        let (server, seen) = answering(vec![(429, None), (201, None)]);
        let response = RetryThrottled::new(server)
            .oneshot(create_secret())
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(seen.lock().unwrap().len(), 1);

        let (server, seen) = answering(vec![(429, Some("0"))]);
        let response = RetryThrottled::new(server)
            .oneshot(create_secret())
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            429,
            "after the last retry the 429 is the answer"
        );
        assert_eq!(seen.lock().unwrap().len(), 1 + THROTTLED_RETRIES as usize);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let answer = |status: u16, retry_after: Option<&str>| {
            let mut r = http::Response::builder().status(status);
            if let Some(v) = retry_after {
                r = r.header(http::header::RETRY_AFTER, v);
            }
            throttled_wait(&r.body(()).unwrap())
        };
        assert_eq!(answer(429, Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(answer(429, Some(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(answer(429, Some("3600")), Some(LONGEST_RETRY_AFTER));
        assert_eq!(answer(429, Some("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        assert_eq!(answer(429, None), None);
        assert_eq!(answer(503, Some("1")), None, "only 429 means nothing was done");
        assert_eq!(answer(200, Some("1")), None);
    }

    #[tokio::test]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        // 20 per second with a burst of 5: the first 5 pass at once, the next 5 need ~250 ms.
        let quota = Quota::per_second(NonZeroU32::new(20).unwrap()).allow_burst(NonZeroU32::new(5).unwrap());
        let mut service = RateLimitLayer::new(quota)
            .layer(tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }));
        let start = Instant::now();
        for n in 0..5 {
            assert_eq!(service.ready().await.unwrap().call(n).await.unwrap(), n);
        }
        let burst = start.elapsed();
        assert!(
            burst < Duration::from_millis(100),
            "the burst passes at once ({burst:?})"
        );
        for n in 5..10 {
            service.ready().await.unwrap().call(n).await.unwrap();
        }
        let limited = start.elapsed();
        assert!(
            limited >= Duration::from_millis(200),
            "five more requests at 20/s take about 250 ms ({limited:?})"
        );
    }
}
