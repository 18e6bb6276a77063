//! The HTTP server: routing, authentication, fault injection and the call record.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::faults::{FaultKind, Faults, OneShot};
use crate::model::*;
use crate::scenario::Scenario;
use crate::wire::*;

type Resp = Response<Full<Bytes>>;

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    faults: Mutex<Faults>,
    fault_rng: Mutex<StdRng>,
    refuse: AtomicBool,
    rest_rate_limit: Mutex<RestRateLimit>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Requests a personal access token may make to the REST API per hour on github.com.
const REST_RATE_LIMIT: u64 = 5000;

/// GitHub's primary REST rate limit, as its documentation describes the `x-ratelimit-*`
/// headers every REST response carries: `limit` per hour, `used` so far in the window that
/// resets at `reset` (Unix seconds). Counted for all callers together.
#[derive(Debug, Default)]
struct RestRateLimit {
    reset: u64,
    used: u64,
}

impl RestRateLimit {
    /// Counts one request at `now` (Unix seconds) and returns the headers of its response.
    fn count(&mut self, now: u64) -> [(&'static str, String); 5] {
        if now >= self.reset {
            self.reset = now + 3600;
            self.used = 0;
        }
        self.used += 1;
        [
            ("x-ratelimit-limit", REST_RATE_LIMIT.to_string()),
            (
                "x-ratelimit-remaining",
                REST_RATE_LIMIT.saturating_sub(self.used).to_string(),
            ),
            ("x-ratelimit-used", self.used.to_string()),
            ("x-ratelimit-reset", self.reset.to_string()),
            ("x-ratelimit-resource", "core".to_owned()),
        ]
    }
}

/// A running fake GitHub; dropping it stops the server.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    scheme: &'static str,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeGitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitHub")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// TLS material for [`FakeGitHub::start_tls`].
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert_chain_pem: String,
    /// Private key, PEM.
    pub private_key_pem: String,
}

impl FakeGitHub {
    /// Starts a plain-HTTP fake on `127.0.0.1:0`.
    pub async fn start(cfg: FakeConfig) -> std::io::Result<Self> {
        Self::start_inner(cfg, None).await
    }

    /// Starts an HTTPS fake on `127.0.0.1:0` serving the given certificate.
    pub async fn start_tls(cfg: FakeConfig, tls: TlsFiles) -> std::io::Result<Self> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let io_err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        let certs = CertificateDer::pem_slice_iter(tls.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err(&e))?;
        let key = PrivateKeyDer::from_pem_slice(tls.private_key_pem.as_bytes()).map_err(|e| io_err(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| io_err(&e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| io_err(&e))?;
        Self::start_inner(cfg, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_inner(cfg: FakeConfig, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tick = cfg.tick;
        let seed = cfg.seed;
        let mut state = State::new(cfg);
        state.base_url = format!("{scheme}://{addr}");
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Notify::new(),
            faults: Mutex::new(Faults::default()),
            fault_rng: Mutex::new(StdRng::seed_from_u64(seed.wrapping_add(1))),
            refuse: AtomicBool::new(false),
            rest_rate_limit: Mutex::new(RestRateLimit::default()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), tls));
        let ticker = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut iv = tokio::time::interval(tick.max(Duration::from_millis(1)));
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    iv.tick().await;
                    let changed = {
                        let mut st = shared.lock();
                        let before = st.event_count();
                        st.tick();
                        st.event_count() != before
                    };
                    if changed {
                        shared.changed.notify_waiters();
                    }
                }
            }
        });
        Ok(Self {
            shared,
            addr,
            scheme,
            tasks: vec![accept, ticker],
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// A config URL on this fake, e.g. `config_url("my-org")` (GHES-style: API under `/api/v3`).
    pub fn config_url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url(), path.trim_start_matches('/'))
    }

    /// Runs `f` on the state and wakes long polls.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.shared.lock());
        self.shared.changed.notify_waiters();
        r
    }

    /// Accepts this personal access token.
    pub fn add_pat(&self, token: &str) {
        self.with_state(|s| s.pats.insert(token.to_owned()));
    }

    /// Registers a GitHub App by id with its RSA public key (PEM).
    pub fn add_app(&self, app_id: &str, public_key_pem: &str) {
        self.with_state(|s| s.apps.insert(app_id.to_owned(), public_key_pem.to_owned()));
    }

    /// Installs an App (installation id → app id).
    pub fn add_installation(&self, app_id: &str, installation_id: i64) {
        self.with_state(|s| s.installations.insert(installation_id, app_id.to_owned()));
    }

    /// Adds a runner group (group 1 `Default` always exists); returns its id.
    pub fn add_runner_group(&self, name: &str) -> i64 {
        self.with_state(|s| s.add_group(name))
    }

    /// Queues a job; returns its `runnerRequestId`.
    pub fn queue_job(&self, spec: JobSpec) -> i64 {
        self.with_state(|s| s.queue_job(spec))
    }

    /// Node simulator: a runner starts with its JIT config.
    pub fn runner_start(&self, encoded_jit_config: &str) -> Result<StartedRunner, ApiError> {
        self.with_state(|s| s.runner_start(encoded_jit_config))
    }

    /// Node simulator: the runner takes an assigned job, if there is one.
    pub fn runner_take_job(&self, runner_id: i64) -> Result<Option<TakenJob>, ApiError> {
        self.with_state(|s| s.runner_take_job(runner_id))
    }

    /// Node simulator: the runner finishes its job with a result (`succeeded`, `failed`, ...).
    pub fn runner_finish(&self, runner_id: i64, result: &str) -> Result<i64, ApiError> {
        self.with_state(|s| s.runner_finish(runner_id, result))
    }

    /// Node simulator: the runner process died while running its job; the job fails.
    pub fn runner_lost(&self, runner_id: i64) -> Result<Option<i64>, ApiError> {
        self.with_state(|s| s.runner_lost(runner_id))
    }

    /// Current statistics of a scale set.
    pub fn statistics(&self, scale_set_id: i64) -> StatisticsJson {
        self.shared.lock().statistics(scale_set_id)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.shared.lock().calls.clone()
    }

    /// Forgets the call record.
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Waits until `pred` holds on the state, or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&State) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pred(&self.shared.lock()) {
                return true;
            }
            // Record changes do not notify; poll them on a short period too.
            let step = tokio::time::Instant::now() + Duration::from_millis(10);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(step.min(deadline)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return pred(&self.shared.lock());
            }
        }
    }

    // ---- faults ----

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds latency to every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.faults().latency = latency;
    }

    /// Answers this fraction of requests with 500 (seeded RNG).
    pub fn set_server_error_rate(&self, rate: f64) {
        self.faults().server_error_rate = rate.clamp(0.0, 1.0);
    }

    /// Applies `kind` to the next `count` requests whose path contains `path_contains` (all if `None`).
    pub fn inject(&self, kind: FaultKind, count: u32, path_contains: Option<&str>) {
        self.faults().one_shots.push(OneShot {
            kind,
            remaining: count,
            path_contains: path_contains.map(str::to_owned),
        });
    }

    /// Clears all faults (latency, error rate, one-shots, refusing connections).
    pub fn clear_faults(&self) {
        *self.faults() = Faults::default();
        self.shared.refuse.store(false, Ordering::SeqCst);
    }

    /// Closes new and existing connections without answering while `on`.
    pub fn set_refuse_connections(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Expires every message-queue token now (a waiting long poll answers 401).
    pub fn expire_message_queue_tokens(&self) {
        self.with_state(State::expire_message_queue_tokens);
    }

    /// Expires every Actions Service admin token now.
    pub fn expire_admin_tokens(&self) {
        self.with_state(State::expire_admin_tokens);
    }

    /// Evicts sessions (all, or one scale set's): their tokens stop working and refresh answers 404.
    pub fn evict_sessions(&self, scale_set_id: Option<i64>) {
        self.with_state(|s| s.evict_sessions(scale_set_id));
    }

    /// Deletes a scale set server-side (as the dormant-set cleanup would).
    pub fn delete_scale_set_server_side(&self, scale_set_id: i64) -> Result<(), ApiError> {
        self.with_state(|s| s.delete_scale_set(scale_set_id))
    }

    /// Runs a scenario in the background; the task yields the queued request ids.
    pub fn run_scenario(&self, scenario: Scenario) -> JoinHandle<Vec<i64>> {
        let schedule = {
            let mut st = self.shared.lock();
            scenario.schedule(&mut st.rng)
        };
        let shared = self.shared.clone();
        let labels = scenario.labels.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut ids = Vec::with_capacity(schedule.len());
            for (offset, duration) in schedule {
                tokio::time::sleep_until(start + offset).await;
                let spec = JobSpec::for_labels(labels.clone()).with_duration(duration);
                ids.push(shared.lock().queue_job(spec));
                shared.changed.notify_waiters();
            }
            ids
        })
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // As GitHub's front ends and Go servers do: no Nagle stall (up to 40 ms) on answers
        // written in parts.
        let _ = stream.set_nodelay(true);
        if shared.refuse.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    if shared.refuse.load(Ordering::SeqCst) {
                        return Err(std::io::Error::other("refusing connections"));
                    }
                    Ok::<_, std::io::Error>(handle(shared, req).await)
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

fn json_resp<T: Serialize>(status: u16, v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn empty(status: u16) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn error_resp(e: &ApiError) -> Resp {
    let mut r = json_resp(
        e.status,
        &ErrorBody {
            type_name: e.type_name.map(str::to_owned),
            message: e.message.clone(),
        },
    );
    r.headers_mut().insert(
        "activityid",
        HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
    );
    r
}

const RECORDED_HEADERS: [&str; 5] = [
    "user-agent",
    "x-scalesetmaxcapacity",
    "accept",
    "content-type",
    "authorization",
];

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let at = SystemTime::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), 4 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };

    let (latency, fault, random_500) = {
        let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        let fault = f.take(&path);
        let rate = f.server_error_rate;
        let random_500 = rate > 0.0
            && shared
                .fault_rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .random_bool(rate);
        (f.latency, fault, random_500)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut truncate = false;
    let resp = match fault {
        Some(FaultKind::Status(s)) => error_resp(&ApiError::new(s, None, "injected failure")),
        Some(FaultKind::RateLimit { retry_after_secs }) => {
            let mut r = error_resp(&ApiError::new(429, None, "rate limited"));
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after_secs));
            r
        }
        Some(FaultKind::GitHubRateLimit { reset_in_secs }) => {
            let mut r = error_resp(&ApiError::new(403, None, "API rate limit exceeded"));
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                + reset_in_secs;
            r.headers_mut()
                .insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            r.headers_mut()
                .insert("x-ratelimit-reset", HeaderValue::from(reset));
            r
        }
        Some(FaultKind::Truncate) => {
            truncate = true;
            route(&shared, &method, &path, query.as_deref(), &headers, &body).await
        }
        None if random_500 => error_resp(&ApiError::new(500, None, "injected random failure")),
        None => route(&shared, &method, &path, query.as_deref(), &headers, &body).await,
    };
    let resp = if truncate && resp.status() == StatusCode::OK {
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let cut = bytes.slice(..bytes.len() / 2);
        Response::from_parts(parts, Full::new(cut))
    } else {
        resp
    };
    let recorded: Vec<(String, String)> = RECORDED_HEADERS
        .iter()
        .filter_map(|h| {
            let v = headers.get(*h)?.to_str().ok()?;
            // Record only the scheme of credentials.
            let v = if *h == "authorization" {
                v.split(' ').next().unwrap_or_default()
            } else {
                v
            };
            Some(((*h).to_owned(), v.to_owned()))
        })
        .collect();
    let status = resp.status().as_u16();
    tracing::debug!(%method, %path, status, elapsed = ?started.elapsed(), "fake GitHub call");
    shared.lock().calls.push(CallRecord {
        method: method.to_string(),
        path,
        query,
        status,
        at,
        elapsed: started.elapsed(),
        headers: recorded,
        body: String::from_utf8_lossy(&body[..body.len().min(64 << 10)]).into_owned(),
    });
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn remote_auth(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("remoteauth").then_some(token.trim())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn int(s: &str) -> Result<i64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::not_found(format!("{s} is not an id")))
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Resp {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match segs.as_slice() {
        ["api", "v3", rest @ ..] => {
            let mut resp = rest_api(shared, method, rest, headers, body).unwrap_or_else(|e| error_resp(&e));
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let counted = shared
                .rest_rate_limit
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .count(now);
            for (name, value) in counted {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    resp.headers_mut().insert(name, value);
                }
            }
            Ok(resp)
        }
        ["_services", "pipelines", rest @ ..] => {
            if query_param(query, "api-version").is_none() {
                Err(ApiError::bad_request(
                    "No api-version was supplied for the request.",
                ))
            } else {
                actions_service(shared, method, rest, path.ends_with('/'), query, headers, body)
            }
        }
        ["broker", "scalesets", "message"] if method == Method::GET => {
            return long_poll(shared, query, headers).await;
        }
        ["broker", "scalesets", "message", id] if method == Method::DELETE => {
            let token = bearer(headers).unwrap_or_default().to_owned();
            let mut st = shared.lock();
            st.session_for_queue_token(&token, query_param(query, "sessionId").as_deref())
                .and_then(|sid| st.ack_message(&sid, int(id)?))
                .map(|()| empty(204))
        }
        _ => Err(ApiError::not_found(format!("no route for {method} {path}"))),
    };
    shared.changed.notify_waiters();
    result.unwrap_or_else(|e| error_resp(&e))
}

#[derive(serde::Deserialize)]
struct AppClaims {
    iat: u64,
    exp: u64,
    iss: String,
}

fn verify_app_jwt(st: &State, token: &str) -> Result<String, ApiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let unauthorized = || ApiError::unauthorized("A JSON web token could not be decoded");
    for (app_id, pem) in &st.apps {
        let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()) else {
            continue;
        };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iat", "iss"]);
        v.set_issuer(&[app_id]);
        match jsonwebtoken::decode::<AppClaims>(token, &key, &v) {
            Ok(data) => {
                let c = data.claims;
                if c.iat > now + 1 {
                    return Err(ApiError::unauthorized(
                        "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
                    ));
                }
                if c.exp <= now || c.exp.saturating_sub(c.iat) > 600 {
                    return Err(ApiError::unauthorized(
                        "'Expiration time' claim ('exp') is too far in the future or expired",
                    ));
                }
                return Ok(c.iss);
            }
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                return Err(ApiError::unauthorized(
                    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
                ));
            }
            Err(_) => continue,
        }
    }
    Err(unauthorized())
}

fn rest_api(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let mut st = shared.lock();
    match (method.clone(), segs) {
        (Method::POST, ["app", "installations", id, "access_tokens"]) => {
            let jwt = bearer(headers).ok_or_else(|| ApiError::unauthorized("Requires authentication"))?;
            let app = verify_app_jwt(&st, jwt)?;
            let id = int(id)?;
            if st.installations.get(&id) != Some(&app) {
                return Err(ApiError::not_found("Integration not found"));
            }
            Ok(json_resp(201, &st.issue_installation_token()))
        }
        (Method::POST, [scope @ .., "actions", "runners", "registration-token"]) => {
            let scope_path = match scope {
                ["orgs", org] => (*org).to_owned(),
                ["enterprises", e] => format!("enterprises/{e}"),
                ["repos", o, r] => format!("{o}/{r}"),
                _ => return Err(ApiError::not_found("Not Found")),
            };
            let token = bearer(headers).ok_or_else(|| ApiError::unauthorized("Requires authentication"))?;
            if !st.bearer_is_valid_github_token(token) {
                return Err(ApiError::unauthorized("Bad credentials"));
            }
            Ok(json_resp(201, &st.issue_registration_token(scope_path)))
        }
        (Method::POST, ["actions", "runner-registration"]) => {
            let token = remote_auth(headers).ok_or_else(|| ApiError::unauthorized("Requires RemoteAuth"))?;
            let scope = st
                .registration_scope(token)
                .ok_or_else(|| ApiError::unauthorized("Bad registration token"))?
                .to_owned();
            let req: RegistrationRequest = parse_body(body)?;
            if req.runner_event != "register" {
                return Err(ApiError::bad_request("runner_event must be register"));
            }
            let url_path = url::Url::parse(&req.url)
                .map(|u| u.path().trim_matches('/').to_owned())
                .unwrap_or_default();
            if !url_path.eq_ignore_ascii_case(&scope) {
                return Err(ApiError::new(
                    403,
                    None,
                    "registration token does not match the URL",
                ));
            }
            let ttl = st.cfg.admin_token_ttl;
            let exp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                + ttl.as_secs().max(1);
            let claims =
                serde_json::json!({"exp": exp, "scp": "Actions.RunnerScaleSets", "jti": st.random_token("")});
            let admin = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&st.admin_signing_secret),
            )
            .map_err(|e| ApiError::new(500, None, e.to_string()))?;
            st.add_admin_token(admin.clone(), ttl);
            Ok(json_resp(
                200,
                &RegistrationResponse {
                    url: st.service_url(),
                    token: admin,
                    token_schema: "OAuthAccessToken".into(),
                },
            ))
        }
        _ => Err(ApiError::not_found("Not Found")),
    }
}

fn actions_service(
    shared: &Arc<Shared>,
    method: &Method,
    segs: &[&str],
    trailing_slash: bool,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let mut st = shared.lock();
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("Requires authentication"))?
        .to_owned();
    // acquirejobs uses the message-queue token; everything else the admin token.
    if let ["_apis", "runtime", "runnerscalesets", id, "acquirejobs"] = segs
        && *method == Method::POST
    {
        let id = int(id)?;
        let sid = st.session_for_queue_token(&token, None)?;
        if st.sessions[&sid].scale_set_id != id {
            return Err(ApiError::unauthorized("token does not belong to this scale set"));
        }
        let ids: Vec<i64> = parse_body(body)?;
        let acquired = st.acquire(id, &ids);
        return Ok(json_resp(200, &List::of(acquired)));
    }
    if !st.admin_token_valid(&token) {
        return Err(ApiError::unauthorized("The token is invalid or expired"));
    }
    let q = |name: &str| query_param(query, name);
    match (method.clone(), segs) {
        (Method::GET, ["_apis", "runtime", "runnergroups", ..]) => {
            let _ = trailing_slash;
            let name = q("groupName").ok_or_else(|| ApiError::bad_request("groupName is required"))?;
            Ok(json_resp(200, &List::of(st.groups_named(&name))))
        }
        (Method::GET, ["_apis", "runtime", "runnerscalesets"]) => {
            let gid: i64 = q("runnerGroupId")
                .and_then(|g| g.parse().ok())
                .ok_or_else(|| ApiError::bad_request("runnerGroupId is required"))?;
            let name = q("name").ok_or_else(|| ApiError::bad_request("name is required"))?;
            let found: Vec<ScaleSetJson> = st
                .scale_sets
                .values()
                .filter(|s| s.group_id == gid && s.name.eq_ignore_ascii_case(&name))
                .map(|s| st.scale_set_json(s))
                .collect();
            Ok(json_resp(200, &List::of(found)))
        }
        (Method::POST, ["_apis", "runtime", "runnerscalesets"]) => {
            Ok(json_resp(200, &st.create_scale_set(parse_body(body)?)?))
        }
        (Method::GET, ["_apis", "runtime", "runnerscalesets", id]) => {
            let ss = st.scale_set(int(id)?)?;
            Ok(json_resp(200, &st.scale_set_json(ss)))
        }
        (Method::PATCH, ["_apis", "runtime", "runnerscalesets", id]) => {
            Ok(json_resp(200, &st.update_scale_set(int(id)?, parse_body(body)?)?))
        }
        (Method::DELETE, ["_apis", "runtime", "runnerscalesets", id]) => {
            st.delete_scale_set(int(id)?)?;
            Ok(empty(204))
        }
        (Method::POST, ["_apis", "runtime", "runnerscalesets", id, "sessions"]) => {
            let req: SessionRequest = parse_body(body)?;
            Ok(json_resp(200, &st.create_session(int(id)?, req.owner_name)?))
        }
        (Method::PATCH, ["_apis", "runtime", "runnerscalesets", id, "sessions", sid]) => {
            Ok(json_resp(200, &st.refresh_session(int(id)?, sid)?))
        }
        (Method::DELETE, ["_apis", "runtime", "runnerscalesets", id, "sessions", sid]) => {
            st.delete_session(int(id)?, sid)?;
            Ok(empty(204))
        }
        (Method::GET, ["_apis", "runtime", "runnerscalesets", id, "acquirablejobs"]) => {
            let id = int(id)?;
            st.scale_set(id)?;
            let jobs = st.acquirable(id);
            if jobs.is_empty() {
                Ok(empty(204))
            } else {
                Ok(json_resp(200, &List::of(jobs)))
            }
        }
        (Method::POST, ["_apis", "runtime", "runnerscalesets", id, "generatejitconfig"]) => {
            let req: JitRequestJson = parse_body(body)?;
            Ok(json_resp(200, &st.generate_jit(int(id)?, &req.name)?))
        }
        (Method::GET, ["_apis", "distributedtask", "pools", "0", "agents"]) => {
            let name = q("agentName").ok_or_else(|| ApiError::bad_request("agentName is required"))?;
            let found: Vec<RunnerJson> = st
                .runner_named(&name)
                .map(State::runner_json)
                .into_iter()
                .collect();
            Ok(json_resp(200, &List::of(found)))
        }
        (Method::GET, ["_apis", "distributedtask", "pools", "0", "agents", id]) => {
            Ok(json_resp(200, &st.get_runner(int(id)?)?))
        }
        (Method::DELETE, ["_apis", "distributedtask", "pools", "0", "agents", id]) => {
            st.remove_runner(int(id)?)?;
            Ok(empty(204))
        }
        _ => Err(ApiError::not_found("Not Found")),
    }
}

async fn long_poll(shared: &Arc<Shared>, query: Option<&str>, headers: &HeaderMap) -> Resp {
    let token = bearer(headers).unwrap_or_default().to_owned();
    let session_q = query_param(query, "sessionId");
    let last: i64 = query_param(query, "lastMessageId")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cap: Option<u32> = headers
        .get("x-scalesetmaxcapacity")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let window = shared.lock().cfg.long_poll_window;
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = shared.lock();
            let sid = match st.session_for_queue_token(&token, session_q.as_deref()) {
                Ok(s) => s,
                Err(e) => return error_resp(&e),
            };
            if let Some(m) = st.next_message(&sid, last, cap) {
                return json_resp(200, &m);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return empty(202);
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_rate_limit_headers_count_down_and_reset_hourly() {
        let mut limit = RestRateLimit::default();
        let first = limit.count(1_000);
        assert_eq!(first[0], ("x-ratelimit-limit", "5000".to_owned()));
        assert_eq!(first[1], ("x-ratelimit-remaining", "4999".to_owned()));
        assert_eq!(first[3], ("x-ratelimit-reset", "4600".to_owned()));
        let second = limit.count(2_000);
        assert_eq!(second[1], ("x-ratelimit-remaining", "4998".to_owned()));
        assert_eq!(second[2], ("x-ratelimit-used", "2".to_owned()));
        let next_hour = limit.count(4_600);
        assert_eq!(next_hour[1], ("x-ratelimit-remaining", "4999".to_owned()));
        assert_eq!(next_hour[3], ("x-ratelimit-reset", "8200".to_owned()));
    }
}
