//! The listener's configuration: written by the controller into the listener's config Secret
//! (key [`CONFIG_KEY`]) and read by the listener, so both sides share one definition.
//!
//! The listener reads the mounted file at start and watches the Secret through the API, so a
//! change of `minRunners`/`maxRunners` takes effect within seconds without a restart; any other
//! change restarts the listener Pod (the controller stamps [`ListenerConfig::restart_hash`] on
//! the Pod template).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Key of the configuration inside the listener's Secret.
pub const CONFIG_KEY: &str = "config.json";
/// Where the listener Pod mounts the Secret.
pub const CONFIG_DIR: &str = "/etc/rssc-listener";

/// Everything a listener needs to run one scale set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerConfig {
    /// URL the scale set is registered at.
    #[serde(rename = "githubConfigURL")]
    pub github_config_url: String,
    /// ID of the scale set on GitHub.
    #[serde(rename = "scaleSetID")]
    pub scale_set_id: i64,
    /// Name of the scale set on GitHub, for logs and metrics.
    pub scale_set_name: String,
    /// Namespace of the EphemeralRunnerSet (and its runners).
    pub namespace: String,
    /// Name of the EphemeralRunnerSet the listener patches.
    pub ephemeral_runner_set: String,
    /// Name of the listener's own config Secret, watched for min/max changes.
    pub config_secret: String,
    /// Idle runners on top of runners with jobs.
    pub min_runners: i32,
    /// Most runners; also sent to GitHub as the scale set's capacity.
    pub max_runners: i32,
    /// Owner name of the message session, stable across restarts of the listener Pod.
    pub session_owner: String,
    /// Credentials.
    pub auth: ListenerAuth,
    /// Proxy for GitHub traffic, credentials included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ListenerProxy>,
    /// Extra trusted CA certificates (PEM), for GitHub Enterprise Server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

impl ListenerConfig {
    /// A hash of everything except the limits the listener picks up live: when it changes, the
    /// listener Pod is restarted.
    pub fn restart_hash(&self) -> String {
        let mut fixed = self.clone();
        fixed.min_runners = 0;
        fixed.max_runners = 0;
        let bytes = serde_json::to_vec(&fixed).expect("the listener config serializes");
        format!("{:08x}", crate::names::fnv1a32(&bytes))
    }
}

/// Credentials of a listener.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerAuth {
    /// A GitHub App.
    GithubApp {
        /// Client ID or App ID.
        #[serde(rename = "clientID")]
        client_id: String,
        /// Installation ID.
        #[serde(rename = "installationID")]
        installation_id: i64,
        /// PEM private key.
        private_key: String,
    },
    /// A personal access token.
    Token {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for ListenerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerAuth::GithubApp {
                client_id,
                installation_id,
                ..
            } => f
                .debug_struct("GithubApp")
                .field("client_id", client_id)
                .field("installation_id", installation_id)
                .field("private_key", &"<redacted>")
                .finish(),
            ListenerAuth::Token { .. } => f.debug_struct("Token").field("token", &"<redacted>").finish(),
        }
    }
}

/// Proxy settings with credentials resolved from their Secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerProxy {
    /// Proxy URL for `http://` targets, credentials included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Proxy URL for `https://` targets, credentials included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
    /// Hosts reached directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
}

impl fmt::Debug for ListenerProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Proxy URLs may carry credentials.
        f.debug_struct("ListenerProxy")
            .field("http", &self.http.as_ref().map(|_| "<redacted>"))
            .field("https", &self.https.as_ref().map(|_| "<redacted>"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ListenerConfig {
        ListenerConfig {
            github_config_url: "https://github.com/org".into(),
            scale_set_id: 7,
            scale_set_name: "linux".into(),
            namespace: "ci".into(),
            ephemeral_runner_set: "linux".into(),
            config_secret: "linux-listener".into(),
            min_runners: 1,
            max_runners: 10,
            session_owner: "ci/linux".into(),
            auth: ListenerAuth::GithubApp {
                client_id: "Iv1".into(),
                installation_id: 3,
                private_key: "-----BEGIN KEY-----KEYMATERIAL".into(),
            },
            proxy: Some(ListenerProxy {
                https: Some("http://user:pw@proxy:3128".into()),
                ..Default::default()
            }),
            ca_bundle: None,
        }
    }

    #[test]
    fn round_trips_as_json() {
        let json = serde_json::to_string(&config()).unwrap();
        assert!(
            json.contains(r#""githubApp":{"clientID":"Iv1","installationID":3"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ListenerConfig>(&json).unwrap(), config());
    }

    #[test]
    fn debug_output_hides_credentials() {
        let text = format!("{:?}", config());
        assert!(!text.contains("KEYMATERIAL") && !text.contains("pw@"), "{text}");
        let token = format!(
            "{:?}",
            ListenerAuth::Token {
                token: "ghp_abc".into()
            }
        );
        assert!(!token.contains("ghp_abc"));
    }

    #[test]
    fn limits_do_not_restart_the_listener_anything_else_does() {
        let base = config();
        let mut scaled = base.clone();
        scaled.min_runners = 5;
        scaled.max_runners = 50;
        assert_eq!(base.restart_hash(), scaled.restart_hash());
        let mut moved = base.clone();
        moved.scale_set_id = 8;
        assert_ne!(base.restart_hash(), moved.restart_hash());
    }
}
