//! A Kubernetes API test server for tests on machines without a cluster: discovery, built-in
//! types and CRDs (with OpenAPI schema and CEL validation), the REST verbs with the API
//! server's object semantics, watches, server-side apply, finalizers and garbage collection, a
//! minimal Deployment controller, and run-time fault injection with a request log.
//!
//! Start it with [`KubeServer::start`]; it listens on `127.0.0.1:0` over plain HTTP and writes
//! a kubeconfig that kube-rs clients and `kubectl` can use. See `docs/testing-kube-server.md`.

pub mod body;
pub mod controllers;
pub mod encoded;
pub mod error;
pub mod events;
pub mod faults;
pub mod patch;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod server;
pub mod ssa;
pub mod store;
pub mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use error::ApiError;
pub use faults::{
    FaultConfig, Faults, Refused, RequestRecord, TOO_MANY_REQUESTS_BODY, TOO_MANY_REQUESTS_RETRY_AFTER,
};
pub use store::Store;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// How many change events are kept for watches to resume from; older versions get 410.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Minor version reported by `/version`.
    pub minor_version: u32,
    /// Directory for the kubeconfig; a fresh temporary directory if `None`.
    pub dir: Option<PathBuf>,
    /// Whether to run the controllers (garbage collection, namespaces, Deployments).
    pub controllers: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            minor_version: 30,
            dir: None,
            controllers: true,
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listener failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// Writing the kubeconfig failed.
    #[error("cannot write the kubeconfig to {path}: {source}")]
    Kubeconfig {
        /// Where it was being written.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// A running test server; stops when dropped.
pub struct KubeServer {
    addr: SocketAddr,
    store: Arc<Store>,
    faults: Arc<Faults>,
    kubeconfig: PathBuf,
    owned_dir: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

impl KubeServer {
    /// Starts a server with default settings.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(Config::default()).await
    }

    /// Starts a server with the given settings.
    pub async fn start_with(config: Config) -> Result<Self, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let store = Store::new(config.history_limit);
        let faults = Arc::new(Faults::default());
        let (dir, owned_dir) = match &config.dir {
            Some(d) => (d.clone(), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "rssc-kube-sim-{}-{}",
                    std::process::id(),
                    addr.port()
                ));
                (d.clone(), Some(d))
            }
        };
        let kubeconfig = dir.join("kubeconfig");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&kubeconfig, kubeconfig_yaml(addr)))
            .map_err(|source| StartError::Kubeconfig {
                path: kubeconfig.clone(),
                source,
            })?;
        let ctx = Arc::new(server::Ctx {
            store: store.clone(),
            faults: faults.clone(),
            bookmark_interval: config.bookmark_interval,
            minor_version: config.minor_version,
            encoded: encoded::EncodedObjects::default(),
        });
        let mut tasks = vec![tokio::spawn(accept_loop(listener, ctx))];
        if config.controllers {
            tasks.push(tokio::spawn(controllers::run(store.clone())));
        }
        Ok(Self {
            addr,
            store,
            faults,
            kubeconfig,
            owned_dir,
            tasks,
        })
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Path of the kubeconfig that points at this server.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The object store (for tests that inspect state directly).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Fault injection switches and the request log.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(d) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A kubeconfig for a server at `addr`: cluster, user and context all named `rssc-kube-sim`.
pub fn kubeconfig_yaml(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rssc-kube-sim\n  cluster:\n    server: http://{addr}\nusers:\n- name: rssc-kube-sim\n  user:\n    token: rssc-kube-sim\ncontexts:\n- name: rssc-kube-sim\n  context:\n    cluster: rssc-kube-sim\n    user: rssc-kube-sim\n    namespace: default\ncurrent-context: rssc-kube-sim\npreferences: {{}}\n"
    )
}

async fn accept_loop(listener: TcpListener, ctx: Arc<server::Ctx>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                // Go, the API server's language, turns Nagle's algorithm off on every TCP
                // connection. With it on, an answer or watch event written while the previous
                // one was unacknowledged waited for the client's delayed ACK (up to 40 ms).
                let _ = stream.set_nodelay(true);
                stream
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| server::handle(ctx.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
