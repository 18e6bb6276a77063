//! What component and end-to-end tests share: the Kubernetes API to test against — the
//! in-process test server, or the cluster `RSSC_E2E_KUBECONFIG` names — with our CRDs installed
//! and a namespace of the test's own, bounded waits on conditions, and a fault-injecting proxy
//! in front of either.

pub mod binaries;
pub mod fault_proxy;

use std::{future::Future, path::PathBuf, time::Duration};

use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use rssc_sim_kube::KubeServer;
/// The test server's fault switches, so tests inject faults without depending on it directly.
pub use rssc_sim_kube::{FaultConfig, Faults, RequestRecord};
use tokio::time::timeout;

/// The environment variable naming a real cluster's kubeconfig.
pub const KUBECONFIG_VAR: &str = "RSSC_E2E_KUBECONFIG";

/// A Kubernetes API to test against, with our CRDs and a namespace of the test's own.
pub struct Cluster {
    /// Client with the kubeconfig's (admin) credentials.
    pub client: Client,
    /// The kubeconfig in use (for processes the test starts).
    pub kubeconfig: PathBuf,
    /// The test's namespace; deleted when a real cluster's test ends.
    pub namespace: String,
    server: Option<KubeServer>,
}

impl Cluster {
    /// Connects (starting the test server unless `RSSC_E2E_KUBECONFIG` is set), installs the
    /// CRDs and creates a namespace named after `test`.
    pub async fn connect(test: &str) -> Self {
        Self::connect_with_crds(test, &rssc_api::crd::all()).await
    }

    /// As [`Cluster::connect`], installing `crds` (e.g. read from `deploy/crds/`) instead of
    /// those generated from the API types.
    pub async fn connect_with_crds(test: &str, crds: &[CustomResourceDefinition]) -> Self {
        let (kubeconfig, server) = match std::env::var_os(KUBECONFIG_VAR) {
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
                "cannot read the kubeconfig {}: {e} ({KUBECONFIG_VAR} must name a readable kubeconfig)",
                kubeconfig.display()
            )
        });
        let config = Config::from_custom_kubeconfig(raw, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        install_these_crds(&client, crds).await;
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

    /// Whether this is a real cluster rather than the test server.
    pub fn is_real(&self) -> bool {
        self.server.is_none()
    }

    /// The Kubernetes API test server, for its fault switches and request log; `None` on a
    /// real cluster.
    pub fn test_server(&self) -> Option<&KubeServer> {
        self.server.as_ref()
    }

    /// An API for `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.server.is_none() {
            // On a real cluster, leave nothing behind.
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

/// Installs (server-side applies) our CRDs and waits until each is established.
pub async fn install_crds(client: &Client) {
    install_these_crds(client, &rssc_api::crd::all()).await;
}

/// Installs (server-side applies) `crds` and waits until each is established.
pub async fn install_these_crds(client: &Client, crds: &[CustomResourceDefinition]) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("rssc-tests").force(),
            &Patch::Apply(crd),
        )
        .await
        .unwrap();
        eventually(
            &format!("CRD {name} is established"),
            Duration::from_secs(60),
            || async {
                let crd = api.get(&name).await.unwrap();
                crd.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            },
        )
        .await;
    }
}

/// Waits until `check` holds, asking every 50 ms, for at most `limit`; panics naming `what`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let done = timeout(limit, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "timed out after {limit:?} waiting until {what}");
}
