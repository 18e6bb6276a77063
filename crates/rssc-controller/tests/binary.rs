//! The `rssc-controller` binary: two replicas elect a leader through a Lease, the leader
//! registers scale sets, and on SIGTERM it hands over and exits 0; its JSON log lines say
//! which object and scale set they are about.

mod support;

use std::process::Stdio;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use rssc_api::v1alpha1::AutoscaleSet;
use support::{PAT, Target, eventually, github};
use tokio::process::{Child, Command};

fn autoscale_set(name: &str, url: &str) -> AutoscaleSet {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
        "metadata": {"name": name},
        "spec": {
            "githubConfigURL": url, "scaleSetName": name,
            "runnerImage": "ghcr.io/actions/actions-runner:latest",
            "personalAccessToken": {"tokenSecretRef": {"name": "github-token"}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}}
        }
    }))
    .unwrap()
}

fn start(t: &Target, identity: &str) -> Child {
    start_logging_to(t, identity, Stdio::null())
}

fn start_logging_to(t: &Target, identity: &str, log: Stdio) -> Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Command::new(env!("CARGO_BIN_EXE_rssc-controller"))
        .env("KUBECONFIG", &t.kubeconfig)
        .env("POD_NAME", identity)
        .env("POD_NAMESPACE", &t.namespace)
        .env("RSSC_WATCH_NAMESPACE", &t.namespace)
        .env("RSSC_ADMIN_ADDR", format!("127.0.0.1:{port}"))
        .env("RSSC_LOG_FORMAT", "json")
        .stdout(log)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the rssc-controller binary starts")
}

async fn registered(t: &Target, name: &str) -> bool {
    t.api::<AutoscaleSet>()
        .get(name)
        .await
        .unwrap()
        .status
        .and_then(|s| s.scale_set_id)
        .is_some()
}

async fn holder(t: &Target) -> Option<String> {
    let lease = t.api::<Lease>().get_opt("rssc-controller").await.unwrap()?;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

async fn terminate(child: &mut Child) {
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(support::WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_works_and_hands_over_on_sigterm() {
    let t = Target::new("binary").await;
    let (fake, ca) = github().await;
    t.config_map("github-ca", &[("ca.pem", &ca)]).await;
    t.secret("github-token", &[("token", PAT)]).await;
    let mut a = start(&t, "controller-a");
    let mut b = start(&t, "controller-b");

    t.api::<AutoscaleSet>()
        .create(
            &PostParams::default(),
            &autoscale_set("first", &fake.config_url("octo-org")),
        )
        .await
        .unwrap();
    eventually("the leader registers the first scale set", || async {
        registered(&t, "first").await
    })
    .await;
    let leader = holder(&t).await.expect("a leader holds the lease");

    let (leading, standby) = if leader == "controller-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    terminate(leading).await;
    eventually("the standby takes the lease", || async {
        holder(&t).await.is_some_and(|h| h != leader)
    })
    .await;
    t.api::<AutoscaleSet>()
        .create(
            &PostParams::default(),
            &autoscale_set("second", &fake.config_url("octo-org")),
        )
        .await
        .unwrap();
    eventually("the new leader registers the second scale set", || async {
        registered(&t, "second").await
    })
    .await;
    terminate(standby).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_log_lines_name_the_object_and_its_scale_set() {
    let t = Target::new("binary-logs").await;
    let (fake, ca) = github().await;
    t.config_map("github-ca", &[("ca.pem", &ca)]).await;
    // No token Secret: the AutoscaleSet cannot register, which the controller logs.
    let log_path = std::env::temp_dir().join(format!("{}-controller.log", t.namespace));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut controller = start_logging_to(&t, "controller-logs", Stdio::from(log));
    t.api::<AutoscaleSet>()
        .create(
            &PostParams::default(),
            &autoscale_set("no-token", &fake.config_url("octo-org")),
        )
        .await
        .unwrap();
    let lines = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every log line is JSON"))
            .collect::<Vec<_>>()
    };
    eventually(
        "the controller logs why the AutoscaleSet is not ready",
        || async { lines().iter().any(|l| l["message"] == "AutoscaleSet not ready") },
    )
    .await;
    terminate(&mut controller).await;

    let in_reconciles: Vec<_> = lines()
        .into_iter()
        .filter(|l| l["span"]["name"] == "reconcile")
        .collect();
    assert!(!in_reconciles.is_empty(), "reconciles log inside their span");
    for line in &in_reconciles {
        let span = &line["span"];
        assert_eq!(span["kind"], "AutoscaleSet", "{line}");
        assert_eq!(span["namespace"], t.namespace.as_str(), "{line}");
        assert_eq!(span["object"], "no-token", "{line}");
        assert_eq!(span["scale_set"], "no-token", "{line}");
    }
    let _ = std::fs::remove_file(&log_path);
}
