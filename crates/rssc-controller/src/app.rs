//! The `rssc-controller` process: flags, the admin server, waiting for the CRDs, leader
//! election, and the four controllers.

use std::{future::Future, sync::Arc, time::Duration};

use clap::Parser;
use futures::future::join_all;
use kube::{Api, api::ListParams};
use rssc_api::v1alpha1::AutoscaleSet;
use rssc_runtime::{
    admin::{AdminState, serve},
    args::{AdminArgs, LogArgs},
    health::Health,
    kube_client::KubeArgs,
};
use tokio::{net::TcpListener, sync::watch};
use tracing::{info, warn};

use crate::{
    context::{Context, Settings},
    controllers,
    leader::{Leadership, LeaseConfig},
    runner_template::RunnerDefaults,
};

/// The controller's flags (each also an environment variable).
#[derive(Parser, Debug)]
#[command(
    name = "rssc-controller",
    version,
    about = "Runs GitHub Actions runner scale sets on Kubernetes"
)]
pub struct Args {
    /// Image of the listener each RunnerSet runs.
    #[arg(long, env = "RSSC_LISTENER_IMAGE", default_value = concat!("ghcr.io/rssc-dev/rssc-listener:", env!("CARGO_PKG_VERSION")))]
    pub listener_image: String,
    /// Image of the Docker daemon sidecar in `dind` mode.
    #[arg(long, env = "RSSC_DIND_IMAGE", default_value = "docker:dind")]
    pub dind_image: String,
    /// Manage only this namespace (all namespaces if unset).
    #[arg(long, env = "RSSC_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Seconds a pending runner is spared by scale-down (node provisioning).
    #[arg(long, env = "RSSC_PENDING_GRACE_SECONDS", default_value_t = 120)]
    pub pending_grace_seconds: u64,
    /// Seconds after which a runner still pending is replaced.
    #[arg(long, env = "RSSC_PENDING_TIMEOUT_SECONDS", default_value_t = 900)]
    pub pending_timeout_seconds: u64,
    /// Reconciles at once per kind.
    #[arg(long, env = "RSSC_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// EphemeralRunner reconciles at once (JIT configs, Secrets and Pods of a burst).
    #[arg(long, env = "RSSC_RUNNER_CONCURRENCY", default_value_t = 32)]
    pub runner_concurrency: u16,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = "RSSC_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "RSSC_LEASE_NAME", default_value = "rssc-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity in the Lease (the Pod's name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log level and format of the listeners.
    #[arg(long, env = "RSSC_LISTENER_LOG_LEVEL", default_value = "info")]
    pub listener_log_level: String,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// Admin server.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Kubernetes client rate limit.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
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

/// Runs until `shutdown` completes.
pub async fn run(args: Args, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
    let client = rssc_runtime::kube_client::client(&args.kube).await?;
    let health = Health::default();
    let admin = TcpListener::bind(args.admin.admin_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: args.admin.admin_addr,
            source,
        })?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let native_sidecars = match client.apiserver_version().await {
        Ok(v) => {
            let minor: u32 = v.minor.trim_end_matches('+').parse().unwrap_or(0);
            RunnerDefaults::native_sidecars_supported(v.major.parse().unwrap_or(1), minor)
        }
        Err(err) => {
            warn!(error = %err, "cannot read the server version; assuming native sidecars");
            true
        }
    };
    let settings = Settings {
        listener: crate::listener::ListenerDefaults {
            image: args.listener_image.clone(),
            log_level: args.listener_log_level.clone(),
            log_format: "json".into(),
            otel_env: crate::listener::ListenerDefaults::otel_env_of_this_process(),
        },
        runners: RunnerDefaults {
            native_sidecars,
            dind_image: args.dind_image.clone(),
        },
        pending_grace: Duration::from_secs(args.pending_grace_seconds),
        pending_timeout: Duration::from_secs(args.pending_timeout_seconds),
        watch_namespace: args.watch_namespace.clone(),
        concurrency: args.concurrency.max(1),
        runner_concurrency: args.runner_concurrency.max(1),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(client.clone(), settings));
    let admin = tokio::spawn(serve(
        admin,
        AdminState {
            health: health.clone(),
            registry: ctx.registry.clone(),
        },
        stopped(stop.clone()),
    ));

    if !wait_for_crds(&ctx, &health, stop.clone()).await {
        let _ = admin.await;
        return Ok(());
    }

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("rssc-controller-{:08x}", rand::random::<u32>()));
    loop {
        let leadership = if args.leader_election {
            health.set("leader", Ok(()));
            let lease = LeaseConfig {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(5),
            };
            let mut stopped_rx = stop.clone();
            tokio::select! {
                leadership = Leadership::acquire(client.clone(), lease) => Some(leadership),
                _ = stopped_rx.wait_for(|s| *s) => break,
            }
        } else {
            None
        };
        // Controllers run until shutdown or until the lease is lost.
        let (lost_tx, lost) = watch::channel(false);
        let until = |stop: watch::Receiver<bool>, lost: watch::Receiver<bool>| async move {
            let (mut stop, mut lost) = (stop, lost);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = lost.wait_for(|l| *l) => {}
            }
        };
        // Another replica may have registered runners while this one stood by.
        ctx.fresh_runners.clear();
        ctx.runner_expectations.clear();
        info!(
            watch_namespace = args.watch_namespace.as_deref().unwrap_or("(all)"),
            "controllers starting"
        );
        let controllers = join_all([
            tokio::spawn(controllers::run_autoscale_sets(
                ctx.clone(),
                until(stop.clone(), lost.clone()),
            )),
            tokio::spawn(controllers::run_runner_sets(
                ctx.clone(),
                until(stop.clone(), lost.clone()),
            )),
            tokio::spawn(controllers::run_ephemeral_runner_sets(
                ctx.clone(),
                until(stop.clone(), lost.clone()),
            )),
            tokio::spawn(controllers::run_ephemeral_runners(
                ctx.clone(),
                until(stop.clone(), lost.clone()),
            )),
        ]);
        match &leadership {
            Some(leadership) => {
                let mut stopped_rx = stop.clone();
                tokio::select! {
                    () = leadership.hold() => { lost_tx.send_replace(true); }
                    _ = stopped_rx.wait_for(|s| *s) => {}
                }
            }
            None => {
                let _ = stop.clone().wait_for(|s| *s).await;
            }
        }
        controllers.await;
        if let Some(leadership) = leadership {
            leadership.release().await;
        }
        if *stop.borrow() {
            break;
        }
        info!("lost the lease; standing by");
    }
    info!("controller stopped");
    let _ = admin.await;
    Ok(())
}

/// Waits until the CRDs are served, saying how to install them; false if shutdown came first.
async fn wait_for_crds(ctx: &Context, health: &Health, mut stop: watch::Receiver<bool>) -> bool {
    let api: Api<AutoscaleSet> = ctx.api();
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {
                health.set("crds", Ok(()));
                return true;
            }
            Err(err) => {
                let message = format!(
                    "the rssc CRDs are not served ({err}); install them with `kubectl apply -f deploy/crds/` or the Helm chart"
                );
                warn!("{message}");
                health.set("crds", Err(message));
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return false,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_client_is_unlimited_by_default_and_can_be_limited() {
        let defaults = Args::try_parse_from(["rssc-controller"]).unwrap();
        assert_eq!((defaults.kube.kube_qps, defaults.kube.kube_burst), (0, 1000));
        assert!(defaults.kube.quota().is_none());
        let limited = Args::try_parse_from(["rssc-controller", "--kube-qps", "200"]).unwrap();
        assert_eq!(limited.kube.quota().unwrap().burst_size().get(), 1000);
    }
}
