//! Credentials, the GitHub App JWT, and a single-flight token cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::Error;
use crate::secret::Secret;

/// How the client authenticates to api.github.com (or GHES).
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A GitHub App installation.
    App {
        /// App id or client id (the JWT `iss`).
        app_id: String,
        /// Installation id.
        installation_id: i64,
        /// PEM private key (PKCS#1 or PKCS#8).
        private_key: Secret<String>,
    },
    /// A personal access token.
    Token(Secret<String>),
}

impl Credentials {
    /// GitHub App credentials; fails early if the key is not an RSA PEM key.
    pub fn app(
        app_id: impl Into<String>,
        installation_id: i64,
        private_key_pem: Secret<String>,
    ) -> Result<Self, Error> {
        let app_id = app_id.into();
        if app_id.trim().is_empty() {
            return Err(Error::InvalidConfig("GitHub App id is empty".into()));
        }
        if installation_id <= 0 {
            return Err(Error::InvalidConfig(
                "GitHub App installation id must be positive".into(),
            ));
        }
        encoding_key(&private_key_pem)?;
        Ok(Credentials::App {
            app_id,
            installation_id,
            private_key: private_key_pem,
        })
    }

    /// Personal access token credentials.
    pub fn token(token: Secret<String>) -> Result<Self, Error> {
        if token.expose().trim().is_empty() {
            return Err(Error::InvalidConfig("GitHub token is empty".into()));
        }
        Ok(Credentials::Token(token))
    }
}

fn encoding_key(pem: &Secret<String>) -> Result<jsonwebtoken::EncodingKey, Error> {
    // The library's error says what kind of key problem it was, never the key itself.
    jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose().as_bytes())
        .map_err(|e| Error::InvalidConfig(format!("GitHub App private key is not a valid RSA PEM key ({e})")))
}

#[derive(Serialize)]
struct AppClaims<'a> {
    iat: u64,
    exp: u64,
    iss: &'a str,
}

/// Builds the App JWT: `iat` = now − 60 s, `exp` = iat + 9 min, RS256.
pub fn app_jwt(app_id: &str, private_key: &Secret<String>, now: SystemTime) -> Result<Secret<String>, Error> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let iat = now.saturating_sub(60);
    let claims = AppClaims {
        iat,
        exp: iat + 9 * 60,
        iss: app_id,
    };
    let key = encoding_key(private_key)?;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map(Secret::new)
    .map_err(|e| Error::InvalidConfig(format!("cannot sign the GitHub App JWT ({e})")))
}

/// A token with an optional expiry.
#[derive(Debug, Clone)]
pub struct CachedToken<T> {
    /// The cached value.
    pub value: T,
    /// When it expires (`None`: unknown, so always refreshed).
    pub expires_at: Option<SystemTime>,
}

/// A cache that refreshes its value shortly before expiry, one refresh at a time: callers that
/// arrive during a refresh wait for it and share its result.
#[derive(Debug)]
pub struct SingleFlight<T> {
    current: RwLock<Option<Arc<CachedToken<T>>>>,
    gate: tokio::sync::Mutex<Option<Error>>,
    generation: AtomicU64,
    refreshes: AtomicU64,
    margin: Duration,
}

impl<T> SingleFlight<T> {
    /// An empty cache refreshing `margin` before expiry.
    pub fn new(margin: Duration) -> Self {
        Self {
            current: RwLock::new(None),
            gate: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            margin,
        }
    }

    /// How many refreshes ran (successful or not).
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }

    fn fresh(&self, now: SystemTime) -> Option<Arc<CachedToken<T>>> {
        let cur = self.current.read().unwrap_or_else(|e| e.into_inner());
        cur.as_ref()
            .filter(|c| matches!(c.expires_at, Some(exp) if exp > now + self.margin))
            .cloned()
    }

    /// Drops the cached value if it is still `stale` (e.g. after the server rejected it).
    pub fn invalidate(&self, stale: &Arc<CachedToken<T>>) {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, stale)) {
            *cur = None;
        }
    }

    /// Returns the cached value, or runs `refresh` (once, for all concurrent callers).
    pub async fn get<F, Fut>(&self, refresh: F) -> Result<Arc<CachedToken<T>>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedToken<T>, Error>>,
    {
        if let Some(c) = self.fresh(SystemTime::now()) {
            return Ok(c);
        }
        let seen = self.generation.load(Ordering::SeqCst);
        let mut last_error = self.gate.lock().await;
        if let Some(c) = self.fresh(SystemTime::now()) {
            return Ok(c);
        }
        if self.generation.load(Ordering::SeqCst) != seen {
            // A refresh ran while we waited: share its outcome instead of refreshing again, even
            // if the new token is already inside the margin (as long as it has not expired).
            if let Some(e) = last_error.as_ref() {
                return Err(e.clone());
            }
            let cur = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(c) = cur.filter(|c| c.expires_at.is_none_or(|exp| exp > SystemTime::now())) {
                return Ok(c);
            }
        }
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let result = refresh().await;
        self.generation.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(tok) => {
                let tok = Arc::new(tok);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(tok.clone());
                *last_error = None;
                Ok(tok)
            }
            Err(e) => {
                *last_error = Some(e.clone());
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn single_flight_refreshes_once_for_many_callers() {
        let cache = Arc::new(SingleFlight::<u32>::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok(CachedToken {
                            value: 7,
                            expires_at: Some(SystemTime::now() + Duration::from_secs(3600)),
                        })
                    })
                    .await
                    .map(|t| t.value)
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.refresh_count(), 1);
    }

    #[tokio::test]
    async fn near_expiry_and_unknown_expiry_refresh() {
        let cache = SingleFlight::<u32>::new(Duration::from_secs(60));
        let soon = Some(SystemTime::now() + Duration::from_secs(30));
        cache
            .get(|| async {
                Ok(CachedToken {
                    value: 1,
                    expires_at: soon,
                })
            })
            .await
            .unwrap();
        let v = cache
            .get(|| async {
                Ok(CachedToken {
                    value: 2,
                    expires_at: None,
                })
            })
            .await
            .unwrap();
        assert_eq!(v.value, 2);
        let v = cache
            .get(|| async {
                Ok(CachedToken {
                    value: 3,
                    expires_at: None,
                })
            })
            .await
            .unwrap();
        assert_eq!(v.value, 3);
        assert_eq!(cache.refresh_count(), 3);
    }

    #[tokio::test]
    async fn invalidate_forces_refresh() {
        let cache = SingleFlight::<u32>::new(Duration::from_secs(60));
        let later = Some(SystemTime::now() + Duration::from_secs(3600));
        let a = cache
            .get(|| async {
                Ok(CachedToken {
                    value: 1,
                    expires_at: later,
                })
            })
            .await
            .unwrap();
        cache.invalidate(&a);
        let b = cache
            .get(|| async {
                Ok(CachedToken {
                    value: 2,
                    expires_at: later,
                })
            })
            .await
            .unwrap();
        assert_eq!(b.value, 2);
    }

    #[test]
    fn bad_key_is_rejected_without_echoing_it() {
        let err = Credentials::app(
            "1",
            2,
            Secret::new("-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----".into()),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        let creds = Credentials::token(Secret::new("ghp_abc".into())).unwrap();
        assert!(!format!("{creds:?}").contains("ghp_abc"));
    }
}
