//! Shared test helpers: a fake GitHub plus a client pointed at it.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use rssc_github::backoff::RetryPolicy;
use rssc_github::{ActionsClient, ClientOptions, Credentials, GitHubConfig, Secret};
use rssc_sim_github::{FakeConfig, FakeGitHub};

pub const PAT: &str = "ghp_test_personal_access_token";
pub const APP_ID: &str = "12345";
pub const INSTALLATION_ID: i64 = 777;
pub const APP_KEY: &str = include_str!("../fixtures/test-app-key.pem");
pub const APP_PUB: &str = include_str!("../fixtures/test-app-key.pub.pem");
pub const WRONG_KEY: &str = include_str!("../fixtures/test-wrong-key.pem");

/// A fake with short windows so tests finish fast.
pub fn fast_fake() -> FakeConfig {
    FakeConfig {
        long_poll_window: Duration::from_millis(300),
        tick: Duration::from_millis(5),
        ..FakeConfig::default()
    }
}

/// Client options with short retries and timeouts.
pub fn fast_opts() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        long_poll_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_server_delay: Duration::from_secs(5),
        },
        jitter_seed: Some(7),
        ..ClientOptions::default()
    }
}

pub async fn start(cfg: FakeConfig) -> FakeGitHub {
    let fake = FakeGitHub::start(cfg).await.expect("fake starts");
    fake.add_pat(PAT);
    fake.add_app(APP_ID, APP_PUB);
    fake.add_installation(APP_ID, INSTALLATION_ID);
    fake
}

pub fn pat_client(fake: &FakeGitHub, opts: ClientOptions) -> ActionsClient {
    let config = GitHubConfig::parse_with(&fake.config_url("octo-org"), false).unwrap();
    ActionsClient::new(config, Credentials::token(Secret::new(PAT.into())).unwrap(), opts).unwrap()
}

pub fn app_client(fake: &FakeGitHub, key: &str, opts: ClientOptions) -> ActionsClient {
    let config = GitHubConfig::parse_with(&fake.config_url("octo-org"), false).unwrap();
    let creds = Credentials::app(APP_ID, INSTALLATION_ID, Secret::new(key.into())).unwrap();
    ActionsClient::new(config, creds, opts).unwrap()
}

/// Polls `cond` until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub const WAIT: Duration = Duration::from_secs(10);

/// Creates a scale set named `name` with labels, in the default group.
pub async fn make_scale_set(
    client: &ActionsClient,
    name: &str,
    labels: &[&str],
) -> rssc_github::RunnerScaleSet {
    client
        .create_scale_set(&rssc_github::NewScaleSet {
            name: name.into(),
            runner_group_id: 1,
            labels: labels.iter().map(|s| rssc_github::Label::system(*s)).collect(),
            disable_update: true,
        })
        .await
        .expect("create scale set")
}
