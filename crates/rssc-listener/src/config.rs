//! Loading the listener's configuration, turning it into a GitHub client, and following the
//! config Secret so `minRunners`/`maxRunners` changes apply within seconds, without a restart.

use std::{path::Path, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use rssc_api::listener_config::{CONFIG_KEY, ListenerAuth, ListenerConfig, ListenerProxy};
use rssc_github::{
    ActionsClient, ClientOptions, Credentials, GitHubConfig, ProxyConfig, Secret as Sensitive,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::scaler::Limits;

/// Error loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the listener configuration {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a listener configuration.
    #[error("the listener configuration {path} is not valid: {reason}")]
    Parse {
        /// The path given.
        path: String,
        /// What is wrong (never the file's content: it holds credentials).
        reason: String,
    },
    /// The GitHub client cannot be built from it.
    #[error("cannot set up the GitHub client: {0}")]
    Client(#[from] rssc_github::Error),
}

/// Reads the configuration file the controller mounts.
pub fn load(path: &Path) -> Result<ListenerConfig, ConfigError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: display.clone(),
        source,
    })?;
    parse(&bytes).map_err(|reason| ConfigError::Parse {
        path: display,
        reason,
    })
}

/// Parses a configuration; the error names the problem (line, column, field), never the values.
pub fn parse(bytes: &[u8]) -> Result<ListenerConfig, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "{:?} error at line {}, column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    })
}

/// The limits in a configuration.
pub fn limits(config: &ListenerConfig) -> Limits {
    Limits {
        min_runners: config.min_runners,
        max_runners: config.max_runners,
    }
}

/// Builds the GitHub client of a configuration.
pub fn github_client(config: &ListenerConfig, user_agent: &str) -> Result<ActionsClient, ConfigError> {
    let github = GitHubConfig::parse(&config.github_config_url)?;
    let credentials = match &config.auth {
        ListenerAuth::GithubApp {
            client_id,
            installation_id,
            private_key,
        } => Credentials::app(
            client_id.clone(),
            *installation_id,
            Sensitive::new(private_key.clone()),
        )?,
        ListenerAuth::Token { token } => Credentials::token(Sensitive::new(token.clone()))?,
    };
    let options = ClientOptions {
        user_agent_suffix: Some(user_agent.to_owned()),
        proxy: config.proxy.as_ref().map(proxy),
        root_ca_pem: config.ca_bundle.iter().cloned().collect(),
        ..ClientOptions::default()
    };
    Ok(ActionsClient::new(github, credentials, options)?)
}

fn proxy(p: &ListenerProxy) -> ProxyConfig {
    ProxyConfig {
        http_url: p.http.clone(),
        https_url: p.https.clone(),
        no_proxy: Some(p.no_proxy.join(",")).filter(|s| !s.is_empty()),
        ..ProxyConfig::default()
    }
}

/// Follows the config Secret and publishes its limits; returns when the channel has no reader.
pub async fn follow_limits(client: Client, namespace: String, secret: String, limits: watch::Sender<Limits>) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={secret}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    loop {
        let next = tokio::select! {
            () = limits.closed() => return,
            next = events.next() => next,
        };
        match next {
            Some(Ok(secret)) => {
                let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) else {
                    warn!("the config Secret has no {CONFIG_KEY}; keeping the current limits");
                    continue;
                };
                match parse(&bytes.0) {
                    Ok(config) => {
                        let new = self::limits(&config);
                        limits.send_if_modified(|current| {
                            let changed = *current != new;
                            if changed {
                                info!(
                                    min_runners = new.min_runners,
                                    max_runners = new.max_runners,
                                    "limits updated"
                                );
                                *current = new;
                            }
                            changed
                        });
                    }
                    Err(reason) => {
                        warn!(%reason, "the config Secret is not valid; keeping the current limits")
                    }
                }
            }
            Some(Err(err)) if expired(&err) => {
                debug!(error = %err, "the config Secret's watch expired; listing again")
            }
            Some(Err(err)) => warn!(error = %err, "watching the config Secret failed; retrying"),
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Whether a watch failed only because its resource version expired (410), which long watches
/// meet in normal operation: the retry lists again, and nothing is wrong.
fn expired(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::WatchError(e) if e.code == 410)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_expired_resource_version_is_a_normal_watch_failure() {
        let answer = |code: u16| kube::core::ErrorResponse {
            status: "Failure".into(),
            message: String::new(),
            reason: String::new(),
            code,
        };
        assert!(expired(&watcher::Error::WatchError(answer(410))));
        assert!(!expired(&watcher::Error::WatchError(answer(403))));
        assert!(!expired(&watcher::Error::NoResourceVersion));
    }

    const CONFIG: &str = r#"{
        "githubConfigURL": "https://github.com/org", "scaleSetID": 3, "scaleSetName": "linux",
        "namespace": "ci", "ephemeralRunnerSet": "linux", "configSecret": "linux-listener",
        "minRunners": 1, "maxRunners": 5, "sessionOwner": "ci/linux",
        "auth": {"token": {"token": "ghp_SECRETVALUE"}}
    }"#;

    #[test]
    fn parses_the_controller_written_config() {
        let config = parse(CONFIG.as_bytes()).unwrap();
        assert_eq!(
            limits(&config),
            Limits {
                min_runners: 1,
                max_runners: 5
            }
        );
        assert!(github_client(&config, "listener").is_ok());
    }

    #[test]
    fn parse_errors_never_echo_the_content() {
        let broken = CONFIG.replace("\"minRunners\": 1", "\"minRunners\": \"ghp_SECRETVALUE\"");
        let err = parse(broken.as_bytes()).unwrap_err();
        assert!(!err.contains("SECRETVALUE"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = load(Path::new("/nonexistent/config.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/config.json"), "{err}");
    }
}
