//! The AutoscaleSet controller against the Kubernetes API (test server or `RSSC_E2E_KUBECONFIG`)
//! and the fake GitHub over TLS, trusted through the AutoscaleSet's CA bundle: registration,
//! healing, deletion, and each problem reported as a condition and recovered from.

mod support;

use std::sync::Arc;

use kube::api::{DeleteParams, PostParams};
use rssc_api::v1alpha1::{AutoscaleSet, AutoscaleSetPhase};
use rssc_controller::context::Context;
use support::{Controllers, PAT, Reconciler, Target, eventually, github};

fn autoscale_set(name: &str, url: &str, secret: &str) -> AutoscaleSet {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1",
        "kind": "AutoscaleSet",
        "metadata": {"name": name},
        "spec": {
            "githubConfigURL": url,
            "scaleSetName": name,
            "runnerImage": "ghcr.io/actions/actions-runner:latest",
            "labels": [{"name": "linux"}, {"type": "User", "name": "gpu"}],
            "personalAccessToken": {"tokenSecretRef": {"name": secret}},
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}}
        }
    }))
    .unwrap()
}

async fn status(t: &Target, name: &str) -> Option<rssc_api::v1alpha1::AutoscaleSetStatus> {
    t.api::<AutoscaleSet>()
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|a| a.status)
}

fn ready_reason(status: &rssc_api::v1alpha1::AutoscaleSetStatus) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_heals_and_removes_the_scale_set() {
    let t = Target::new("asss").await;
    let (fake, ca) = github().await;
    t.config_map("github-ca", &[("ca.pem", &ca)]).await;
    let url = fake.config_url("octo-org");

    let ctx = Arc::new(Context::new(t.client.clone(), support::settings()));
    let controllers = Controllers::start(&ctx, &[Reconciler::AutoscaleSets]);

    // Credentials missing: a clear condition, no crash.
    t.api::<AutoscaleSet>()
        .create(
            &PostParams::default(),
            &autoscale_set("linux", &url, "github-token"),
        )
        .await
        .unwrap();
    eventually("Ready=False with SecretNotFound", || async {
        status(&t, "linux").await.and_then(|s| ready_reason(&s))
            == Some(("False".into(), "SecretNotFound".into()))
    })
    .await;
    let s = status(&t, "linux").await.unwrap();
    let message = &s
        .conditions
        .iter()
        .find(|c| c.type_ == "CredentialsValid")
        .unwrap()
        .message;
    assert!(
        message.contains("github-token") && message.contains("not found"),
        "{message}"
    );

    // The Secret appears: registered, with labels and the runner group.
    t.secret("github-token", &[("token", PAT)]).await;
    eventually("Ready=True", || async {
        status(&t, "linux").await.and_then(|s| ready_reason(&s)) == Some(("True".into(), "Ready".into()))
    })
    .await;
    let s = status(&t, "linux").await.unwrap();
    let id = s.scale_set_id.expect("scale set id recorded");
    assert_eq!(s.runner_group_id, Some(1));
    assert_eq!(s.phase, Some(AutoscaleSetPhase::Active));
    let names: Vec<_> = s.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["linux", "gpu"], "the name first, then the extra labels");
    assert!(fake.with_state(|st| st.scale_sets.contains_key(&id)));

    // Deleted on GitHub (by hand, or dormant for 7 days): registered again.
    fake.delete_scale_set_server_side(id).unwrap();
    eventually("a new registration after the scale set vanished", || async {
        status(&t, "linux")
            .await
            .and_then(|s| s.scale_set_id)
            .is_some_and(|new| new != id)
    })
    .await;
    let new_id = status(&t, "linux").await.unwrap().scale_set_id.unwrap();

    // Deletion removes the scale set from GitHub, then the object.
    t.api::<AutoscaleSet>()
        .delete("linux", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the AutoscaleSet is gone", || async {
        t.api::<AutoscaleSet>().get_opt("linux").await.unwrap().is_none()
    })
    .await;
    assert!(
        !fake.with_state(|st| st.scale_sets.contains_key(&new_id)),
        "the scale set was removed from GitHub"
    );

    controllers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_unknown_runner_groups_are_reported() {
    let t = Target::new("asss-bad").await;
    let (fake, ca) = github().await;
    t.config_map("github-ca", &[("ca.pem", &ca)]).await;
    t.secret("wrong-token", &[("token", "ghp_not_the_right_one")])
        .await;
    t.secret("github-token", &[("token", PAT)]).await;
    let url = fake.config_url("octo-org");
    let ctx = Arc::new(Context::new(t.client.clone(), support::settings()));
    let controllers = Controllers::start(&ctx, &[Reconciler::AutoscaleSets]);

    t.api::<AutoscaleSet>()
        .create(
            &PostParams::default(),
            &autoscale_set("rejected", &url, "wrong-token"),
        )
        .await
        .unwrap();
    let mut grouped = autoscale_set("grouped", &url, "github-token");
    grouped.spec.runner_group = "no-such-group".into();
    t.api::<AutoscaleSet>()
        .create(&PostParams::default(), &grouped)
        .await
        .unwrap();

    eventually("CredentialsRejected", || async {
        status(&t, "rejected").await.and_then(|s| ready_reason(&s))
            == Some(("False".into(), "CredentialsRejected".into()))
    })
    .await;
    eventually("RunnerGroupNotFound", || async {
        status(&t, "grouped").await.and_then(|s| ready_reason(&s))
            == Some(("False".into(), "RunnerGroupNotFound".into()))
    })
    .await;
    let s = status(&t, "rejected").await.unwrap();
    let text = serde_json::to_string(&s).unwrap();
    assert!(!text.contains("ghp_not_the_right_one"), "no credential in status");

    for name in ["rejected", "grouped"] {
        t.api::<AutoscaleSet>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("both deleted (nothing was registered)", || async {
        t.api::<AutoscaleSet>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    controllers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secrets_unreachable_and_rate_limiting_github_are_reported_then_recovered_from() {
    let t = Target::new("asss-recover").await;
    let (fake, ca) = github().await;
    t.config_map("github-ca", &[("ca.pem", &ca)]).await;
    let url = fake.config_url("octo-org");
    let ctx = Arc::new(Context::new(t.client.clone(), support::settings()));
    let controllers = Controllers::start(&ctx, &[Reconciler::AutoscaleSets]);
    let ready = |reason: &'static str| {
        let t = &t;
        move || async move {
            status(t, "linux").await.and_then(|s| ready_reason(&s))
                == Some((
                    if reason == "Ready" { "True" } else { "False" }.into(),
                    reason.into(),
                ))
        }
    };

    // The Secret does not exist yet: a condition says so; creating it is noticed through the watch.
    t.api::<AutoscaleSet>()
        .create(
            &PostParams::default(),
            &autoscale_set("linux", &url, "github-token"),
        )
        .await
        .unwrap();
    eventually("SecretNotFound", ready("SecretNotFound")).await;
    t.secret("github-token", &[("token", PAT)]).await;
    eventually("registered once the Secret exists", ready("Ready")).await;

    // GitHub refuses connections: GitHubUnreachable, then recovery.
    fake.set_refuse_connections(true);
    eventually("GitHubUnreachable", ready("GitHubUnreachable")).await;
    fake.set_refuse_connections(false);
    eventually("ready again once GitHub answers", ready("Ready")).await;

    // GitHub's primary rate limit: RateLimited, then recovery when it lifts.
    fake.inject(
        rssc_sim_github::FaultKind::GitHubRateLimit { reset_in_secs: 60 },
        1000,
        None,
    );
    eventually("RateLimited", ready("RateLimited")).await;
    fake.clear_faults();
    eventually("ready again once the limit lifts", ready("Ready")).await;

    let s = status(&t, "linux").await.unwrap();
    assert_eq!(s.phase, Some(AutoscaleSetPhase::Active));
    controllers.stop().await;
}
