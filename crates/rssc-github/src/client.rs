//! The client: auth chain and every Actions Service call.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::auth::{CachedToken, Credentials, SingleFlight, app_jwt};
use crate::config::GitHubConfig;
use crate::decode::{self, DecodeError, ScaleSetMessage};
use crate::error::Error;
use crate::http::{Auth, ClientOptions, Request, Response, Transport};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::types::*;

/// The `api-version` every Actions Service call carries.
pub const API_VERSION: &str = "6.0-preview";
const SCALE_SETS: [&str; 3] = ["_apis", "runtime", "runnerscalesets"];
const AGENTS: [&str; 5] = ["_apis", "distributedtask", "pools", "0", "agents"];
const JSON: &str = "application/json";

/// The Actions Service connection obtained from a registration token.
#[derive(Debug, Clone)]
pub struct AdminConnection {
    /// Actions Service base URL (ends in `/`).
    pub url: Url,
    /// Admin bearer token.
    pub token: Secret<String>,
}

/// A live message session with the scale set it belongs to.
#[derive(Debug, Clone)]
pub struct MessageSession {
    /// The scale set id.
    pub scale_set_id: i64,
    /// The session as last returned by create or refresh.
    pub session: ScaleSetSession,
}

impl MessageSession {
    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session.session_id
    }
}

/// Client for one `githubConfigUrl` and its credentials. Cheap to clone.
#[derive(Clone)]
pub struct ActionsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ActionsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionsClient")
            .field("config_url", &self.inner.config.config_url)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: GitHubConfig,
    credentials: Credentials,
    opts: ClientOptions,
    transport: Transport,
    admin: SingleFlight<AdminConnection>,
    installation: SingleFlight<Secret<String>>,
    jit_limit: tokio::sync::Semaphore,
}

fn json_body<T: Serialize>(v: &T) -> Result<Option<(Bytes, &'static str)>, Error> {
    serde_json::to_vec(v)
        .map(|b| Some((Bytes::from(b), JSON)))
        .map_err(|e| Error::InvalidConfig(format!("cannot encode request: {e}")))
}

fn parse_json<T: DeserializeOwned>(r: &Response) -> Result<T, DecodeError> {
    decode::json(&r.body)
}

fn no_body(_: &Response) -> Result<(), DecodeError> {
    Ok(())
}

fn malformed(endpoint: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        endpoint,
        reason: reason.into(),
    }
}

impl ActionsClient {
    /// Builds a client; no network traffic until the first call.
    pub fn new(config: GitHubConfig, credentials: Credentials, opts: ClientOptions) -> Result<Self, Error> {
        Self::with_metrics(config, credentials, opts, Arc::new(Metrics::default()))
    }

    /// Builds a client that counts its calls in `metrics`, which other clients may share.
    pub fn with_metrics(
        config: GitHubConfig,
        credentials: Credentials,
        opts: ClientOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        if opts.jit_concurrency == 0 {
            return Err(Error::InvalidConfig("jit_concurrency must be at least 1".into()));
        }
        let transport = Transport::new(&opts, metrics)?;
        Ok(Self {
            inner: Arc::new(Inner {
                admin: SingleFlight::new(opts.token_refresh_margin),
                installation: SingleFlight::new(opts.token_refresh_margin),
                jit_limit: tokio::sync::Semaphore::new(opts.jit_concurrency),
                config,
                credentials,
                opts,
                transport,
            }),
        })
    }

    /// The parsed config URL.
    pub fn config(&self) -> &GitHubConfig {
        &self.inner.config
    }

    /// Request counters and latencies.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.transport.metrics
    }

    /// The metrics this client counts in, to export them.
    pub fn shared_metrics(&self) -> Arc<Metrics> {
        self.inner.transport.metrics.clone()
    }

    /// How many admin-connection refreshes ran (registration token + exchange).
    pub fn admin_refresh_count(&self) -> u64 {
        self.inner.admin.refresh_count()
    }

    fn api_url(&self, segments: &[&str]) -> Result<Url, Error> {
        let mut url = self.inner.config.api_base.clone();
        url.path_segments_mut()
            .map_err(|_| Error::InvalidConfig("API base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, endpoint: &'static str, method: Method, url: Url, auth: Auth) -> Request {
        Request {
            endpoint,
            method,
            url,
            auth,
            headers: Vec::new(),
            body: None,
            timeout: self.inner.opts.request_timeout,
            ok: &[200],
            retry_auth: false,
        }
    }

    // ---- api.github.com: auth chain ----

    async fn installation_token(
        &self,
        app_id: &str,
        installation_id: i64,
        key: &Secret<String>,
    ) -> Result<Secret<String>, Error> {
        let tok = self
            .inner
            .installation
            .get(|| async {
                self.metrics().record_token_refresh("installation");
                let jwt = app_jwt(app_id, key, SystemTime::now())?;
                let id = installation_id.to_string();
                let url = self.api_url(&["app", "installations", &id, "access_tokens"])?;
                let mut req = self.request("app_installation_token", Method::POST, url, Auth::Bearer(jwt));
                req.ok = &[201];
                req.headers
                    .push((ACCEPT, HeaderValue::from_static("application/vnd.github+json")));
                req.body = Some((Bytes::new(), "application/vnd.github+json"));
                let t: ExpiringToken = self.inner.transport.send(req, parse_json).await?;
                if t.token.expose().is_empty() {
                    return Err(malformed("app_installation_token", "empty token"));
                }
                let expires_at = t.expires_at.as_deref().and_then(decode::rfc3339);
                Ok(CachedToken {
                    value: t.token,
                    expires_at,
                })
            })
            .await?;
        Ok(tok.value.clone())
    }

    async fn fetch_admin_connection(&self) -> Result<CachedToken<AdminConnection>, Error> {
        self.metrics().record_token_refresh("admin");
        let bearer = match &self.inner.credentials {
            Credentials::Token(t) => t.clone(),
            Credentials::App {
                app_id,
                installation_id,
                private_key,
            } => {
                self.installation_token(app_id, *installation_id, private_key)
                    .await?
            }
        };
        let segs = self.inner.config.registration_token_path();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let mut req = self.request(
            "registration_token",
            Method::POST,
            self.api_url(&segs)?,
            Auth::Bearer(bearer),
        );
        req.ok = &[201];
        req.headers
            .push((ACCEPT, HeaderValue::from_static("application/vnd.github+json")));
        req.body = Some((Bytes::new(), "application/vnd.github.v3+json"));
        let reg: ExpiringToken = self.inner.transport.send(req, parse_json).await?;

        let body = RunnerRegistrationBody {
            url: &self.inner.config.config_url,
            runner_event: "register",
        };
        let url = self.api_url(&["actions", "runner-registration"])?;
        let mut req = self.request("admin_connection", Method::POST, url, Auth::RemoteAuth(reg.token));
        req.ok = &[200, 201, 202, 203, 204];
        req.body = json_body(&body)?;
        req.retry_auth = true;
        let conn: AdminConnectionResponse = self.inner.transport.send(req, parse_json).await?;
        if conn.url.is_empty() || conn.token.expose().is_empty() {
            return Err(malformed("admin_connection", "the response lacks url or token"));
        }
        let mut url =
            Url::parse(&conn.url).map_err(|e| malformed("admin_connection", format!("bad url: {e}")))?;
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let expires_at = decode::jwt_expiry(conn.token.expose());
        Ok(CachedToken {
            value: AdminConnection {
                url,
                token: conn.token,
            },
            expires_at,
        })
    }

    /// The current admin connection, refreshed (single flight) when it expires within the margin.
    pub async fn admin_connection(&self) -> Result<Arc<CachedToken<AdminConnection>>, Error> {
        self.inner.admin.get(|| self.fetch_admin_connection()).await
    }

    // ---- Actions Service ----

    fn service_url(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, Error> {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|_| malformed("admin_connection", "service URL cannot have a path"))?
            .pop_if_empty()
            .extend(segments);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
            q.append_pair("api-version", API_VERSION);
        }
        Ok(url)
    }

    /// An admin-authenticated Actions Service call; a 401 drops the cached connection and
    /// retries once with a fresh one.
    #[allow(clippy::too_many_arguments)] // private plumbing; every argument is one request part
    async fn service<T>(
        &self,
        endpoint: &'static str,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<(Bytes, &'static str)>,
        ok: &'static [u16],
        parse: impl Fn(&Response) -> Result<T, DecodeError> + Copy,
    ) -> Result<T, Error> {
        let mut retried = false;
        loop {
            let conn = self.admin_connection().await?;
            let url = Self::service_url(&conn.value.url, segments, query)?;
            let mut req = self.request(
                endpoint,
                method.clone(),
                url,
                Auth::Bearer(conn.value.token.clone()),
            );
            req.ok = ok;
            req.body = body.clone();
            match self.inner.transport.send(req, parse).await {
                Err(Error::Unauthorized { status: 401, .. }) if !retried => {
                    tracing::info!(
                        endpoint,
                        "admin token rejected; refreshing the Actions Service connection"
                    );
                    self.inner.admin.invalidate(&conn);
                    retried = true;
                }
                other => return other,
            }
        }
    }

    /// Looks up a runner group by name (exactly one must match).
    pub async fn get_runner_group_by_name(&self, name: &str) -> Result<RunnerGroup, Error> {
        const EP: &str = "get_runner_group";
        let list: ListResponse<RunnerGroup> = self
            .service(
                EP,
                Method::GET,
                &["_apis", "runtime", "runnergroups", ""],
                &[("groupName", name)],
                None,
                &[200],
                parse_json,
            )
            .await?;
        match list.value.len() {
            0 => Err(Error::NotFound {
                type_name: None,
                message: format!("runner group {name:?} not found"),
            }),
            1 => Ok(list.value.into_iter().next().expect("one element")),
            n => Err(malformed(EP, format!("{n} runner groups named {name:?}"))),
        }
    }

    /// Finds a scale set by name in a runner group; `None` if there is none.
    pub async fn get_scale_set_by_name(
        &self,
        runner_group_id: i64,
        name: &str,
    ) -> Result<Option<RunnerScaleSet>, Error> {
        const EP: &str = "get_scale_set_by_name";
        let gid = runner_group_id.to_string();
        let list: ListResponse<RunnerScaleSet> = self
            .service(
                EP,
                Method::GET,
                &SCALE_SETS,
                &[("runnerGroupId", &gid), ("name", name)],
                None,
                &[200],
                parse_json,
            )
            .await?;
        match list.value.len() {
            0 => Ok(None),
            1 => Ok(list.value.into_iter().next()),
            n => Err(malformed(
                EP,
                format!("{n} scale sets named {name:?} in group {runner_group_id}"),
            )),
        }
    }

    /// Gets a scale set by id.
    pub async fn get_scale_set(&self, id: i64) -> Result<RunnerScaleSet, Error> {
        let id = id.to_string();
        self.service(
            "get_scale_set",
            Method::GET,
            &path(&SCALE_SETS, &[&id]),
            &[],
            None,
            &[200],
            parse_json,
        )
        .await
    }

    /// Creates a scale set.
    pub async fn create_scale_set(&self, new: &NewScaleSet) -> Result<RunnerScaleSet, Error> {
        let body = json_body(&new.body())?;
        self.service(
            "create_scale_set",
            Method::POST,
            &SCALE_SETS,
            &[],
            body,
            &[200, 201],
            parse_json,
        )
        .await
    }

    /// Updates a scale set's name and/or runner group.
    pub async fn update_scale_set(&self, id: i64, update: &ScaleSetUpdate) -> Result<RunnerScaleSet, Error> {
        let id = id.to_string();
        let body = json_body(update)?;
        self.service(
            "update_scale_set",
            Method::PATCH,
            &path(&SCALE_SETS, &[&id]),
            &[],
            body,
            &[200],
            parse_json,
        )
        .await
    }

    /// Deletes a scale set.
    pub async fn delete_scale_set(&self, id: i64) -> Result<(), Error> {
        let id = id.to_string();
        self.service(
            "delete_scale_set",
            Method::DELETE,
            &path(&SCALE_SETS, &[&id]),
            &[],
            None,
            &[200, 202, 204],
            no_body,
        )
        .await
    }

    /// Creates the scale set's message session (409 → [`Error::SessionConflict`]).
    pub async fn create_session(&self, scale_set_id: i64, owner_name: &str) -> Result<MessageSession, Error> {
        let id = scale_set_id.to_string();
        let body = json_body(&CreateSessionBody { owner_name })?;
        let session: ScaleSetSession = self
            .service(
                "create_session",
                Method::POST,
                &path(&SCALE_SETS, &[&id, "sessions"]),
                &[],
                body,
                &[200, 201],
                parse_json,
            )
            .await?;
        check_session("create_session", &session)?;
        Ok(MessageSession {
            scale_set_id,
            session,
        })
    }

    /// Refreshes the session's message-queue token; 404 → [`Error::SessionNotFound`].
    pub async fn refresh_session(&self, session: &mut MessageSession) -> Result<(), Error> {
        let id = session.scale_set_id.to_string();
        let sid = session.session.session_id.clone();
        let segs = path(&SCALE_SETS, &[&id, "sessions", &sid]);
        let fresh: ScaleSetSession = self
            .service(
                "refresh_session",
                Method::PATCH,
                &segs,
                &[],
                None,
                &[200],
                parse_json,
            )
            .await
            .map_err(|e| match e {
                Error::NotFound { message, .. } => Error::SessionNotFound { message },
                other => other,
            })?;
        check_session("refresh_session", &fresh)?;
        session.session = fresh;
        Ok(())
    }

    /// Deletes the session (on shutdown).
    pub async fn delete_session(&self, session: &MessageSession) -> Result<(), Error> {
        self.delete_session_by_id(session.scale_set_id, &session.session.session_id)
            .await
    }

    /// Deletes a session known only by its id, such as one a crashed listener left open.
    pub async fn delete_session_by_id(&self, scale_set_id: i64, session_id: &str) -> Result<(), Error> {
        let id = scale_set_id.to_string();
        let segs = path(&SCALE_SETS, &[&id, "sessions", session_id]);
        self.service(
            "delete_session",
            Method::DELETE,
            &segs,
            &[],
            None,
            &[200, 204],
            no_body,
        )
        .await
    }

    /// Runs a message-queue-token call; a 401 refreshes the session and retries once.
    async fn with_queue_token<T, F>(
        &self,
        session: &mut MessageSession,
        build: F,
        parse: impl Fn(&Response) -> Result<T, DecodeError> + Copy,
    ) -> Result<T, Error>
    where
        F: Fn(&ScaleSetSession) -> Result<Request, Error>,
    {
        let mut refreshed = false;
        loop {
            let req = build(&session.session)?;
            let endpoint = req.endpoint;
            match self.inner.transport.send(req, parse).await {
                Err(Error::Unauthorized { status: 401, .. }) if !refreshed => {
                    tracing::info!(endpoint, "message queue token expired; refreshing the session");
                    self.refresh_session(session).await?;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// Long-polls for the next message; `None` when the server's window passed with none (202).
    /// `last_message_id` 0 is omitted; `max_capacity` is sent as `X-ScaleSetMaxCapacity`.
    pub async fn get_message(
        &self,
        session: &mut MessageSession,
        last_message_id: i64,
        max_capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, Error> {
        let timeout = self.inner.opts.long_poll_timeout;
        self.with_queue_token(
            session,
            |s| {
                let mut url = Url::parse(&s.message_queue_url)
                    .map_err(|e| malformed("get_message", format!("bad messageQueueUrl: {e}")))?;
                if last_message_id > 0 {
                    url.query_pairs_mut()
                        .append_pair("lastMessageId", &last_message_id.to_string());
                }
                let mut req = self.request(
                    "get_message",
                    Method::GET,
                    url,
                    Auth::Bearer(s.message_queue_access_token.clone()),
                );
                req.ok = &[200, 202];
                req.timeout = timeout;
                req.headers.push((
                    ACCEPT,
                    HeaderValue::from_static("application/json; api-version=6.0-preview"),
                ));
                req.headers.push((
                    HeaderName::from_static("x-scalesetmaxcapacity"),
                    HeaderValue::from(max_capacity),
                ));
                Ok(req)
            },
            |r| {
                if r.status == 202 {
                    Ok(None)
                } else {
                    decode::message(&r.body).map(Some)
                }
            },
        )
        .await
    }

    /// Acknowledges (deletes) a message.
    pub async fn delete_message(&self, session: &mut MessageSession, message_id: i64) -> Result<(), Error> {
        self.with_queue_token(
            session,
            |s| {
                let mut url = Url::parse(&s.message_queue_url)
                    .map_err(|e| malformed("delete_message", format!("bad messageQueueUrl: {e}")))?;
                url.path_segments_mut()
                    .map_err(|_| malformed("delete_message", "messageQueueUrl cannot have a path"))?
                    .pop_if_empty()
                    .push(&message_id.to_string());
                let mut req = self.request(
                    "delete_message",
                    Method::DELETE,
                    url,
                    Auth::Bearer(s.message_queue_access_token.clone()),
                );
                req.ok = &[200, 204];
                req.headers.push((
                    ACCEPT,
                    HeaderValue::from_static("application/json; api-version=6.0-preview"),
                ));
                Ok(req)
            },
            no_body,
        )
        .await
    }

    /// Acquires jobs by `runnerRequestId`; returns the ids actually acquired.
    pub async fn acquire_jobs(
        &self,
        session: &mut MessageSession,
        request_ids: &[i64],
    ) -> Result<Vec<i64>, Error> {
        let conn = self.admin_connection().await?;
        let id = session.scale_set_id.to_string();
        let url = Self::service_url(&conn.value.url, &path(&SCALE_SETS, &[&id, "acquirejobs"]), &[])?;
        let body = json_body(&request_ids)?;
        let list: ListResponse<i64> = self
            .with_queue_token(
                session,
                |s| {
                    let mut req = self.request(
                        "acquire_jobs",
                        Method::POST,
                        url.clone(),
                        Auth::Bearer(s.message_queue_access_token.clone()),
                    );
                    req.body = body.clone();
                    Ok(req)
                },
                parse_json,
            )
            .await?;
        Ok(list.value)
    }

    /// Lists acquirable jobs (legacy endpoint); 204 means none.
    pub async fn acquirable_jobs(&self, scale_set_id: i64) -> Result<Vec<AcquirableJob>, Error> {
        let id = scale_set_id.to_string();
        self.service(
            "acquirable_jobs",
            Method::GET,
            &path(&SCALE_SETS, &[&id, "acquirablejobs"]),
            &[],
            None,
            &[200, 204],
            |r| {
                if r.status == 204 || r.body.is_empty() {
                    return Ok(vec![]);
                }
                decode::json::<ListResponse<AcquirableJob>>(&r.body).map(|l| l.value)
            },
        )
        .await
    }

    /// Registers a runner and returns its JIT config; at most `jit_concurrency` run at once.
    pub async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
        work_folder: &str,
    ) -> Result<JitConfig, Error> {
        let _permit = self
            .inner
            .jit_limit
            .acquire()
            .await
            .map_err(|_| Error::InvalidConfig("client closed".into()))?;
        let id = scale_set_id.to_string();
        let body = json_body(&JitRequest {
            name: runner_name,
            work_folder,
        })?;
        let jit: JitConfig = self
            .service(
                "generate_jit_config",
                Method::POST,
                &path(&SCALE_SETS, &[&id, "generatejitconfig"]),
                &[],
                body,
                &[200, 201],
                parse_json,
            )
            .await?;
        if jit.encoded_jit_config.expose().is_empty() {
            return Err(malformed("generate_jit_config", "empty encodedJITConfig"));
        }
        Ok(jit)
    }

    /// Gets a runner by id (`AgentNotFoundException` → [`Error::RunnerNotFound`]).
    pub async fn get_runner(&self, runner_id: i64) -> Result<RunnerReference, Error> {
        let id = runner_id.to_string();
        self.service(
            "get_runner",
            Method::GET,
            &path(&AGENTS, &[&id]),
            &[],
            None,
            &[200],
            parse_json,
        )
        .await
    }

    /// Finds a runner by name; `None` if there is none.
    pub async fn get_runner_by_name(&self, name: &str) -> Result<Option<RunnerReference>, Error> {
        const EP: &str = "get_runner_by_name";
        let list: ListResponse<RunnerReference> = self
            .service(
                EP,
                Method::GET,
                &AGENTS,
                &[("agentName", name)],
                None,
                &[200],
                parse_json,
            )
            .await?;
        match list.value.len() {
            0 => Ok(None),
            1 => Ok(list.value.into_iter().next()),
            n => Err(malformed(EP, format!("{n} runners named {name:?}"))),
        }
    }

    /// Removes a runner (404 is treated as already gone); a busy runner → [`Error::JobStillRunning`].
    pub async fn remove_runner(&self, runner_id: i64) -> Result<(), Error> {
        let id = runner_id.to_string();
        match self
            .service(
                "remove_runner",
                Method::DELETE,
                &path(&AGENTS, &[&id]),
                &[],
                None,
                &[200, 204],
                no_body,
            )
            .await
        {
            Err(Error::RunnerNotFound { .. }) | Err(Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// The timeout used for ordinary requests.
    pub fn request_timeout(&self) -> Duration {
        self.inner.opts.request_timeout
    }
}

fn check_session(endpoint: &'static str, s: &ScaleSetSession) -> Result<(), Error> {
    if s.session_id.is_empty()
        || s.message_queue_url.is_empty()
        || s.message_queue_access_token.expose().is_empty()
    {
        return Err(malformed(
            endpoint,
            "session lacks sessionId, messageQueueUrl or messageQueueAccessToken",
        ));
    }
    Url::parse(&s.message_queue_url).map_err(|e| malformed(endpoint, format!("bad messageQueueUrl: {e}")))?;
    Ok(())
}

fn path<'a>(base: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(rest.iter()).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_escape_queries_and_add_api_version() {
        let base = Url::parse("https://pipelines.example/tenant/").unwrap();
        let u = ActionsClient::service_url(
            &base,
            &SCALE_SETS,
            &[("runnerGroupId", "1"), ("name", "a&b #c+d%")],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://pipelines.example/tenant/_apis/runtime/runnerscalesets?runnerGroupId=1&name=a%26b+%23c%2Bd%25&api-version=6.0-preview"
        );
        let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(pairs[1], ("name".into(), "a&b #c+d%".into()));
        let u = ActionsClient::service_url(
            &base,
            &["_apis", "runtime", "runnergroups", ""],
            &[("groupName", "Default")],
        )
        .unwrap();
        assert_eq!(u.path(), "/tenant/_apis/runtime/runnergroups/");
    }
}
