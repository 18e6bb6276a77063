//! Test harness: a Kubernetes API (the test server, or the cluster `RSSC_E2E_KUBECONFIG` names)
//! with our CRDs and a namespace of the test's own, and the fake GitHub over TLS.

#![allow(dead_code)]

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use rssc_github::{ClientOptions, backoff::RetryPolicy};
use rssc_sim_github::{FakeConfig, FakeGitHub, TlsFiles};
use rssc_sim_kube::KubeServer;
use tokio::time::timeout;

/// How long any condition may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// The token the fake GitHub accepts.
pub const PAT: &str = "ghp_controller_test_token";

/// The API server under test and our namespace on it.
pub struct Target {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub namespace: String,
    server: Option<KubeServer>,
}

/// Sends the controller's logs to the test output (`RUST_LOG` filters them, default `warn`).
pub fn logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

impl Target {
    pub async fn new(test: &str) -> Self {
        logs();
        let (kubeconfig, server) = match std::env::var_os("RSSC_E2E_KUBECONFIG") {
            Some(path) => (PathBuf::from(path), None),
            None => {
                let server = KubeServer::start()
                    .await
                    .expect("the Kubernetes API test server starts");
                (server.kubeconfig_path().to_owned(), Some(server))
            }
        };
        let raw = Kubeconfig::read_from(&kubeconfig).unwrap_or_else(|e| {
            panic!(
                "cannot read the kubeconfig {}: {e} (RSSC_E2E_KUBECONFIG must name a readable kubeconfig)",
                kubeconfig.display()
            )
        });
        let config = Config::from_custom_kubeconfig(raw, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        install_crds(&client).await;
        let namespace = format!("{test}-{:x}", rand::random::<u32>());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        Self {
            client,
            kubeconfig,
            namespace,
            server,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
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

impl Drop for Target {
    fn drop(&mut self) {
        if self.server.is_none() {
            let (client, namespace) = (self.client.clone(), self.namespace.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let _ = Api::<Namespace>::all(client)
                        .delete(&namespace, &DeleteParams::default())
                        .await;
                });
            })
            .join()
            .ok();
        }
    }
}

async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in rssc_api::crd::all() {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("rssc-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        eventually(&format!("CRD {name} is established"), || async {
            let crd = api.get(&name).await.unwrap();
            crd.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
        .await;
    }
}

/// Waits until `check` holds, asking every 50 ms, for at most [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let done = timeout(WAIT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "timed out waiting until {what}");
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
