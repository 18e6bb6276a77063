//! rssc's listener: one long-polling process per RunnerSet. It holds the scale set's message
//! session with GitHub, acquires the jobs offered, marks runners busy when they start a job,
//! and writes how many runners are wanted into the RunnerSet's EphemeralRunnerSet.

pub mod assigned;
pub mod cluster;
pub mod config;
pub mod handler;
pub mod job_records;
pub mod metrics;
pub mod patches;
pub mod scaler;
pub mod service;
pub mod traces;

use std::{path::PathBuf, sync::Arc};

use clap::Parser;
use prometheus_client::registry::Registry;
use rssc_runtime::{
    admin::{AdminState, serve},
    args::{AdminArgs, LogArgs},
    health::Health,
    shutdown,
};
use tokio::{net::TcpListener, sync::watch};
use tracing::{Instrument, info, info_span};

use crate::{
    cluster::KubeCluster,
    metrics::{ListenerMetrics, ScaleSetLabels},
    service::{Listener, Settings},
};

/// The listener's flags (each also an `RSSC_*` environment variable).
#[derive(Parser, Debug)]
#[command(
    name = "rssc-listener",
    version,
    about = "Listens for one scale set's jobs and scales its runners"
)]
pub struct Args {
    /// The configuration the controller writes (a mounted Secret).
    #[arg(long, env = "RSSC_CONFIG", default_value = "/etc/rssc-listener/config.json")]
    pub config: PathBuf,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// Admin server.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is missing or invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// No Kubernetes client configuration (in-cluster or kubeconfig) was found.
    #[error("cannot set up the Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// The admin address cannot be bound.
    #[error("cannot listen on {addr} for the admin server: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the listener until SIGTERM; then closes the session and returns.
pub async fn run(args: Args) -> Result<(), StartError> {
    let config = config::load(&args.config)?;
    let span = info_span!("listener", scale_set = %config.scale_set_name, namespace = %config.namespace);
    async move {
        let user_agent = format!("listener; scale-set-id={}", config.scale_set_id);
        let github = config::github_client(&config, &user_agent)?;
        // No client-side rate limit: one listener makes a few requests per job.
        let unlimited = rssc_runtime::kube_client::KubeArgs {
            kube_qps: 0,
            kube_burst: 0,
        };
        let kube = rssc_runtime::kube_client::client(&unlimited).await?;

        let mut registry = Registry::default();
        let scope = rssc_github::GitHubConfig::parse(&config.github_config_url)
            .map_err(config::ConfigError::from)?
            .scope;
        let labels = ScaleSetLabels::new(&config.scale_set_name, &config.namespace, &scope);
        let metrics = ListenerMetrics::register(&mut registry, labels, github.clone());
        let health = Health::default();
        let admin = TcpListener::bind(args.admin.admin_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: args.admin.admin_addr,
                source,
            })?;
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(serve(
            admin,
            AdminState {
                health: health.clone(),
                registry: Arc::new(registry),
            },
            async move {
                let _ = admin_stopped.await;
            },
        ));

        let (limits_tx, limits) = watch::channel(config::limits(&config));
        tokio::spawn(config::follow_limits(
            kube.clone(),
            config.namespace.clone(),
            config.config_secret.clone(),
            limits_tx,
        ));

        info!(scale_set_id = config.scale_set_id, "listener starting");
        Listener {
            client: github,
            cluster: KubeCluster::new(kube, &config.namespace, &config.ephemeral_runner_set),
            settings: Settings::new(config.scale_set_id, config.session_owner.clone()),
            limits,
            metrics,
            health,
        }
        .run(shutdown::signal())
        .await;
        let _ = stop_admin.send(());
        let _ = admin.await;
        Ok(())
    }
    .instrument(span)
    .await
}
