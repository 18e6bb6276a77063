//! What the Kubernetes API test server itself sustains: Secret + Pod pairs created by a client
//! with the controller's connection settings (the same client code, QPS, burst and concurrency).

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, Secret, ServiceAccount};
use kube::{
    Api, Client, Config,
    api::{ObjectMeta, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use rssc_runtime::kube_client::{KubeArgs, client_for};

/// How the controller's client is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// Requests per second.
    pub qps: u32,
    /// Burst above the rate.
    pub burst: u32,
    /// Pairs created at once (the controller's EphemeralRunner reconcile concurrency).
    pub concurrency: usize,
}

/// Creates `pairs` Secret + Pod pairs in a namespace of their own (no node simulator watches it)
/// and returns the seconds it took.
pub async fn measure(kubeconfig: &Path, pairs: usize, settings: ClientSettings) -> anyhow::Result<f64> {
    let raw = Kubeconfig::read_from(kubeconfig).context("reading the test server's kubeconfig")?;
    let config = Config::from_custom_kubeconfig(raw, &KubeConfigOptions::default())
        .await
        .context("loading the test server's kubeconfig")?;
    let client: Client = client_for(
        config,
        &KubeArgs {
            kube_qps: settings.qps,
            kube_burst: settings.burst,
        },
    )
    .context("building the client")?;
    let namespace = format!(
        "bench-limit-{:x}",
        std::process::id() ^ u32::try_from(pairs).unwrap_or(0)
    );
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .context("creating the limit namespace")?;
    default_service_account(&client, &namespace).await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    let pods = Api::<Pod>::namespaced(client, &namespace);
    let started = Instant::now();
    futures::stream::iter(0..pairs)
        .map(|i| {
            let (secrets, pods) = (secrets.clone(), pods.clone());
            async move {
                let name = format!("limit-{i}");
                secrets
                    .create(&PostParams::default(), &secret(&name))
                    .await
                    .with_context(|| format!("creating Secret {name}"))?;
                pods.create(&PostParams::default(), &pod(&name))
                    .await
                    .with_context(|| format!("creating Pod {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(settings.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Makes sure the namespace's `default` ServiceAccount exists, as Pod admission needs it: a
/// real cluster's ServiceAccount controller makes it shortly after the namespace, which the
/// controller's own namespaces have long had.
async fn default_service_account(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let api = Api::<ServiceAccount>::namespaced(client.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".to_owned()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating the limit namespace's default ServiceAccount"),
    }
}

/// A Secret the size of a JIT config Secret (a few KiB).
fn secret(name: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        string_data: Some([("jitConfig".to_owned(), "x".repeat(2048))].into()),
        ..Secret::default()
    }
}

/// A runner-like Pod reading its Secret.
fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([("app".to_owned(), "bench-limit".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            containers: vec![Container {
                name: "runner".into(),
                image: Some("ghcr.io/actions/actions-runner:latest".into()),
                command: Some(vec!["/home/runner/run.sh".into()]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}
