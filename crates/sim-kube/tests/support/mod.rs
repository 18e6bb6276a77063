//! Test environment: the test server by default, or the cluster `RSSC_E2E_KUBECONFIG` points
//! at; our CRDs installed; one fresh namespace per test, deleted afterwards.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rssc_sim_kube::KubeServer;
use serde_json::{Value, json};

/// Upper bound for any wait on a condition.
pub const WAIT: Duration = Duration::from_secs(60);

/// A client, the namespace for this test, and the server if it is the test server.
pub struct Env {
    /// Client for the server under test.
    pub client: Client,
    /// The test's own namespace.
    pub ns: String,
    /// The kubeconfig file in use.
    pub kubeconfig: PathBuf,
    /// The test server, when not running against a real cluster.
    pub server: Option<Arc<KubeServer>>,
}

impl Env {
    /// Whether this runs against a real cluster.
    pub fn real(&self) -> bool {
        self.server.is_none()
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn client_for(path: &std::path::Path) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("a client from the kubeconfig")
}

/// Our CRDs, from `deploy/crds/`, as the real cluster gets them (parsed once per test binary).
pub fn crd_documents() -> Vec<Value> {
    static DOCS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    DOCS.get_or_init(read_crd_documents).clone()
}

fn read_crd_documents() -> Vec<Value> {
    let dir = repo_root().join("deploy/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("CRD file");
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("YAML"))
                .filter(|d| !d.is_null())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Applies our CRDs and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in crd_documents() {
        let name = doc["metadata"]["name"].as_str().expect("CRD name").to_owned();
        crds.patch(
            &name,
            &PatchParams::apply("rssc-conformance").force(),
            &Patch::Apply(&doc),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            |crd: Option<&CustomResourceDefinition>| {
                crd.and_then(|c| c.status.as_ref())
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
            },
        );
        tokio::time::timeout(WAIT, established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not Established within {WAIT:?}"))
            .expect("watching the CRD");
    }
}

/// A unique name with a prefix.
pub fn unique(prefix: &str) -> String {
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    format!("{prefix}-{:x}{:x}", std::process::id() % 4096, n % 0xfffff)
}

/// Sets up the environment, runs the test, deletes the namespace (also on failure), and
/// re-raises a failure.
pub async fn run<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let (client, kubeconfig, server) = match std::env::var_os("RSSC_E2E_KUBECONFIG") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "RSSC_E2E_KUBECONFIG={} is not a file: point it at a kubeconfig for a test cluster, or unset it to use the test server",
                path.display()
            );
            (client_for(&path).await, path, None)
        }
        None => {
            let server = Arc::new(KubeServer::start().await.expect("starting the test server"));
            let path = server.kubeconfig_path().to_owned();
            (client_for(&path).await, path, Some(server))
        }
    };
    install_crds(&client).await;
    let ns = unique(&format!("rssc-conf-{name}"));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
        )
        .await
        .expect("creating the test namespace");
    // Pods need the namespace's default ServiceAccount, which a controller creates.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
    eventually("the default ServiceAccount", || async {
        accounts.get_opt("default").await.ok().flatten().is_some()
    })
    .await;
    // Keep the server alive for the whole test, whatever the test body captures.
    let keep = server.clone();
    let env = Env {
        client: client.clone(),
        ns: ns.clone(),
        kubeconfig,
        server,
    };
    let result = std::panic::AssertUnwindSafe(test(env)).catch_unwind().await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    drop(keep);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Sends a raw request and returns the status code and the JSON body (for whole `Status`
/// objects, which kube's error type does not carry in full).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).expect("JSON")
    };
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(bytes)
        .expect("request");
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .expect("sending the request");
    let code = response.status().as_u16();
    let data = response
        .into_body()
        .collect()
        .await
        .expect("reading the body")
        .to_bytes();
    (code, serde_json::from_slice(&data).unwrap_or(Value::Null))
}

/// Waits for `cond` to become true, polling the API with `check` until [`WAIT`] runs out.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut backoff = Duration::from_millis(20);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}
