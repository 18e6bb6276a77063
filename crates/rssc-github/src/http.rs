//! The HTTP transport: reqwest with rustls, proxy and CA options, retries, metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::backoff::{self, RetryPolicy};
use crate::decode::DecodeError;
use crate::error::{Error, map_status};
use crate::metrics::Metrics;
use crate::secret::Secret;

/// Proxy settings. Without them, no proxy is used (environment variables are ignored).
#[derive(Clone, Default)]
pub struct ProxyConfig {
    /// Proxy for `http://` URLs, e.g. `http://proxy:3128`.
    pub http_url: Option<String>,
    /// Proxy for `https://` URLs (an `http://` or `https://` proxy).
    pub https_url: Option<String>,
    /// Basic-auth user name for the proxy.
    pub username: Option<String>,
    /// Basic-auth password for the proxy.
    pub password: Option<Secret<String>>,
    /// Hosts that bypass the proxy, comma-separated (`localhost,.svc,10.0.0.0/8`).
    pub no_proxy: Option<String>,
}

/// A proxy URL with any `user:password@` part redacted, for `Debug` output.
fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("redacted");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparsable proxy URL>".to_owned(),
    }
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("http_url", &self.http_url.as_deref().map(redact_url))
            .field("https_url", &self.https_url.as_deref().map(redact_url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Options for building a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Appended to our User-Agent, e.g. `listener; scale-set-id=5`.
    pub user_agent_suffix: Option<String>,
    /// Timeout for one ordinary request attempt.
    pub request_timeout: Duration,
    /// Timeout for one long-poll attempt; must exceed the server's ~50 s window.
    pub long_poll_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retry policy for all calls.
    pub retry: RetryPolicy,
    /// Proxy settings.
    pub proxy: Option<ProxyConfig>,
    /// Extra trusted root CAs, PEM (may hold several certificates).
    pub root_ca_pem: Vec<String>,
    /// At most this many JIT config requests run at once.
    pub jit_concurrency: usize,
    /// Tokens are refreshed when they expire within this margin.
    pub token_refresh_margin: Duration,
    /// Seed for retry jitter (`None`: from the OS).
    pub jitter_seed: Option<u64>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            user_agent_suffix: None,
            request_timeout: Duration::from_secs(30),
            long_poll_timeout: Duration::from_secs(70),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            proxy: None,
            root_ca_pem: Vec::new(),
            jit_concurrency: 16,
            token_refresh_margin: Duration::from_secs(60),
            jitter_seed: None,
        }
    }
}

/// The User-Agent we send: `rssc/<version>`, plus the suffix in parentheses.
pub fn user_agent(suffix: Option<&str>) -> String {
    let base = concat!("rssc/", env!("CARGO_PKG_VERSION"));
    match suffix.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{base} ({s})"),
        None => base.to_owned(),
    }
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    Bearer(Secret<String>),
    RemoteAuth(Secret<String>),
}

/// One logical request (retried as a unit).
#[derive(Debug)]
pub(crate) struct Request {
    pub endpoint: &'static str,
    pub method: Method,
    pub url: Url,
    pub auth: Auth,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<(Bytes, &'static str)>,
    pub timeout: Duration,
    /// Success statuses; anything else is an error.
    pub ok: &'static [u16],
    /// Retry 401/403 too (the runner-registration exchange does).
    pub retry_auth: bool,
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Bytes,
}

pub(crate) struct Transport {
    http: reqwest::Client,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    rng: Mutex<StdRng>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("{what}: {e}"))
}

impl Transport {
    pub fn new(opts: &ClientOptions, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(user_agent(opts.user_agent_suffix.as_deref()))
            .connect_timeout(opts.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::limited(5));
        for pem in &opts.root_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| invalid("root CA PEM", e))?;
            if certs.is_empty() {
                return Err(Error::InvalidConfig("root CA PEM holds no certificate".into()));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        b = b.no_proxy();
        if let Some(p) = &opts.proxy {
            let no_proxy = p.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
            let configure = |proxy: reqwest::Proxy| {
                let proxy = match (&p.username, &p.password) {
                    (Some(u), Some(pw)) => proxy.basic_auth(u, pw.expose()),
                    (Some(u), None) => proxy.basic_auth(u, ""),
                    _ => proxy,
                };
                proxy.no_proxy(no_proxy.clone())
            };
            if let Some(u) = &p.http_url {
                let proxy =
                    reqwest::Proxy::http(u).map_err(|e| invalid("HTTP proxy URL", e.without_url()))?;
                b = b.proxy(configure(proxy));
            }
            if let Some(u) = &p.https_url {
                let proxy =
                    reqwest::Proxy::https(u).map_err(|e| invalid("HTTPS proxy URL", e.without_url()))?;
                b = b.proxy(configure(proxy));
            }
        }
        let http = b.build().map_err(|e| invalid("HTTP client", e))?;
        let rng = match opts.jitter_seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Ok(Self {
            http,
            retry: opts.retry.clone(),
            metrics,
            rng: Mutex::new(rng),
        })
    }

    fn jitter(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).random::<f64>()
    }

    /// Sends `req`, retrying per policy, and parses a success with `parse`.
    pub async fn send<T>(
        &self,
        req: Request,
        parse: impl Fn(&Response) -> Result<T, DecodeError>,
    ) -> Result<T, Error> {
        let mut attempt: u32 = 0;
        loop {
            let (err, server_delay, retryable) = match self.attempt(&req).await {
                Ok(resp) => match parse(&resp) {
                    Ok(v) => return Ok(v),
                    Err(DecodeError::Truncated(reason)) => {
                        tracing::debug!(endpoint = req.endpoint, %reason, "truncated response body");
                        (
                            Error::Malformed {
                                endpoint: req.endpoint,
                                reason,
                            },
                            None,
                            true,
                        )
                    }
                    Err(DecodeError::Malformed(reason)) => {
                        return Err(Error::Malformed {
                            endpoint: req.endpoint,
                            reason,
                        });
                    }
                },
                Err(Failure::Transport(e)) => (e, None, true),
                Err(Failure::Status {
                    status,
                    headers,
                    body,
                }) => {
                    let now = SystemTime::now();
                    let server_delay = headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| backoff::parse_retry_after(v, now))
                        .or_else(|| {
                            backoff::rate_limit_delay(
                                header_str(&headers, "x-ratelimit-remaining"),
                                header_str(&headers, "x-ratelimit-reset"),
                                now,
                            )
                        });
                    let rate_limited_403 = status == 403 && server_delay.is_some();
                    let retryable = backoff::is_retryable_status(status)
                        || rate_limited_403
                        || (req.retry_auth && (status == 401 || status == 403));
                    let err = map_status(
                        status,
                        &body,
                        server_delay.filter(|_| status == 429 || status == 403),
                    );
                    (err, server_delay, retryable)
                }
            };
            if !retryable || attempt >= self.retry.max_retries {
                return Err(err);
            }
            let Some(delay) = self.retry.delay(attempt, self.jitter(), server_delay) else {
                return Err(err);
            };
            tracing::debug!(endpoint = req.endpoint, attempt, ?delay, error = %err, "retrying");
            self.metrics.record_retry(req.endpoint);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, req: &Request) -> Result<Response, Failure> {
        let mut headers = HeaderMap::new();
        for (k, v) in &req.headers {
            headers.insert(k.clone(), v.clone());
        }
        let auth = match &req.auth {
            Auth::Bearer(t) => format!("Bearer {}", t.expose()),
            Auth::RemoteAuth(t) => format!("RemoteAuth {}", t.expose()),
        };
        {
            let a = auth;
            let mut v = HeaderValue::from_str(&a).map_err(|_| {
                Failure::Transport(Error::InvalidConfig("token is not a valid header value".into()))
            })?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut rb = self
            .http
            .request(req.method.clone(), req.url.clone())
            .timeout(req.timeout);
        if let Some((body, ct)) = &req.body {
            headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static(ct));
            rb = rb.body(body.clone());
        }
        rb = rb.headers(headers);
        let start = Instant::now();
        let result = async {
            let resp = rb.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        let elapsed = start.elapsed();
        match result {
            Err(e) => {
                self.metrics.record(req.endpoint, None, elapsed);
                let err = if e.is_timeout() {
                    Error::Timeout
                } else {
                    Error::Connection(error_chain(&e.without_url()))
                };
                Err(Failure::Transport(err))
            }
            Ok((status, headers, body)) => {
                self.metrics.record(req.endpoint, Some(status.as_u16()), elapsed);
                if let Some(limit) = crate::metrics::RateLimit::from_headers(
                    header_str(&headers, "x-ratelimit-remaining"),
                    header_str(&headers, "x-ratelimit-limit"),
                ) {
                    self.metrics.record_rate_limit(limit);
                }
                tracing::trace!(
                    endpoint = req.endpoint,
                    status = status.as_u16(),
                    ?elapsed,
                    "response"
                );
                if req.ok.contains(&status.as_u16()) {
                    Ok(Response {
                        status: status.as_u16(),
                        body,
                    })
                } else {
                    Err(Failure::Status {
                        status: status_u16(status),
                        headers,
                        body,
                    })
                }
            }
        }
    }
}

fn status_u16(s: StatusCode) -> u16 {
    s.as_u16()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

enum Failure {
    Transport(Error),
    Status {
        status: u16,
        headers: HeaderMap,
        body: Bytes,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_names_rssc_not_arc() {
        let ua = user_agent(None);
        assert!(ua.starts_with("rssc/"));
        assert!(!ua.contains("actions-runner-controller"));
        assert_eq!(user_agent(Some("listener")), format!("{ua} (listener)"));
    }

    #[test]
    fn proxy_debug_redacts_credentials() {
        let p = ProxyConfig {
            http_url: Some("http://user:hunter2@proxy:3128".into()),
            password: Some(Secret::new("hunter3".into())),
            ..Default::default()
        };
        let d = format!("{p:?}");
        assert!(
            !d.contains("hunter2") && !d.contains("hunter3") && !d.contains("user:"),
            "{d}"
        );
        assert!(d.contains("proxy:3128"));
    }

    #[test]
    fn bad_ca_pem_is_rejected() {
        let opts = ClientOptions {
            root_ca_pem: vec!["not a pem".into()],
            ..Default::default()
        };
        assert!(matches!(
            Transport::new(&opts, Arc::default()),
            Err(Error::InvalidConfig(_))
        ));
    }
}
