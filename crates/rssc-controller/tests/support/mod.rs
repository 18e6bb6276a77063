//! Test harness: a Kubernetes API (the test server, or the cluster `RSSC_E2E_KUBECONFIG` names)
//! with our CRDs and a namespace of the test's own, and the fake GitHub over TLS.

#![allow(dead_code)]

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use rssc_github::{ClientOptions, backoff::RetryPolicy};
use rssc_sim_github::{FakeConfig, FakeGitHub, TlsFiles};
use rssc_test_support::Cluster;

/// How long any condition may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// The token the fake GitHub accepts.
pub const PAT: &str = "ghp_controller_test_token";

/// Sends the controller's logs to the test output (`RUST_LOG` filters them, default `warn`).
pub fn logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

/// The API server under test and our namespace on it.
pub struct Target {
    cluster: Cluster,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub namespace: String,
}

impl Target {
    pub async fn new(test: &str) -> Self {
        logs();
        let cluster = Cluster::connect(test).await;
        Self {
            client: cluster.client.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
            namespace: cluster.namespace.clone(),
            cluster,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        self.cluster.api()
    }

    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            string_data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        };
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    pub async fn config_map(&self, name: &str, data: &[(&str, &str)]) {
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        self.api::<ConfigMap>()
            .create(&PostParams::default(), &config_map)
            .await
            .unwrap();
    }
}

/// Waits until `check` holds, for at most [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    rssc_test_support::eventually(what, WAIT, check).await;
}

/// The fake GitHub over HTTPS with a certificate made for this run, and the CA to trust it.
pub async fn github() -> (Arc<FakeGitHub>, String) {
    let key =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = key.cert.pem();
    let fake = FakeGitHub::start_tls(
        FakeConfig {
            long_poll_window: Duration::from_millis(200),
            tick: Duration::from_millis(5),
            ..FakeConfig::default()
        },
        TlsFiles {
            cert_chain_pem: cert.clone(),
            private_key_pem: key.signing_key.serialize_pem(),
        },
    )
    .await
    .unwrap();
    fake.add_pat(PAT);
    (Arc::new(fake), cert)
}

/// Controller settings for tests: quick retries, rechecks and backoff (on a loaded machine a
/// few failed calls must not push the next attempt past a test's wait).
pub fn settings() -> rssc_controller::context::Settings {
    rssc_controller::context::Settings {
        github: github_options(),
        recheck: Duration::from_secs(1),
        max_backoff: Duration::from_secs(2),
        ..rssc_controller::context::Settings::default()
    }
}

/// GitHub client options with quick retries.
pub fn github_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_server_delay: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    }
}
