//! Bad input end to end: each invalid custom resource shape is refused by `kubectl apply` with
//! its rule's message; missing or wrong credentials give a condition and recover once fixed;
//! nothing crashes.

use std::process::Command;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use rssc_api::v1alpha1::{AutoscaleSet, RunnerSet};
use rssc_e2e::{
    Harness, eventually,
    invariants::{Expect, teardown_and_check},
    scenario::{
        AUTOSCALE_SET, JOB, RUNNER_SET, autoscale_set, autoscale_set_condition, listener_ready, queue_jobs,
        runner_set, wait_jobs,
    },
};
use serde_json::{Value, json};

/// A token GitHub does not know; planted so the test can check it never reaches a log.
const WRONG_TOKEN: &str = "ghp_e2e_wrong_planted_secret_77d1";

/// Runs `kubectl apply` of `manifest` in the harness's namespace; returns (success, output).
fn kubectl_apply(h: &Harness, manifest: &Value) -> (bool, String) {
    let file = h.logs.join(format!("manifest-{:x}.json", rand::random::<u32>()));
    std::fs::write(&file, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&h.cluster().kubeconfig)
        .args(["--namespace", &h.namespace, "apply", "--server-side", "--force-conflicts", "--field-manager=e2e", "-f"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({e}): this scenario needs it on PATH; `bash scripts/tools ensure kubectl` \
                 installs it into .tools/bin (`PATH=$(bash scripts/tools bin):$PATH`), or run `scripts/test`"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Asserts `kubectl apply` of `manifest` fails and says `message`.
fn refused(h: &Harness, what: &str, manifest: &Value, message: &str) {
    let (ok, text) = kubectl_apply(h, manifest);
    assert!(!ok, "{what}: kubectl apply was accepted:\n{text}");
    assert!(
        text.contains(message),
        "{what}: kubectl's error names the rule's message {message:?}:\n{text}"
    );
}

fn with(mut manifest: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = manifest.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    if value.is_null() {
        target.remove(key);
    } else {
        target.insert(key.to_owned(), value);
    }
    manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_resources_are_refused_and_bad_credentials_recover() {
    let mut h = Harness::start("bad-input").await;
    let good = autoscale_set(&h, 0, 5, "github-token");

    // Each invalid shape, refused with its message.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "minRunners above maxRunners",
            with(good.clone(), "/spec/minRunners", json!(6)),
            "minRunners must not be greater than maxRunners",
        ),
        (
            "both credentials",
            with(
                good.clone(),
                "/spec/githubApp",
                json!({"clientID": "Iv1.x", "installationID": 1, "privateKeySecretRef": {"name": "app"}}),
            ),
            "set exactly one of githubApp or personalAccessToken",
        ),
        (
            "no credentials",
            with(good.clone(), "/spec/personalAccessToken", Value::Null),
            "set exactly one of githubApp or personalAccessToken",
        ),
        (
            "a config URL that is not https",
            with(
                good.clone(),
                "/spec/githubConfigURL",
                json!("http://github.com/octo-org"),
            ),
            "githubConfigURL must be an https URL",
        ),
        (
            "a config URL without an owner",
            with(good.clone(), "/spec/githubConfigURL", json!("https://github.com")),
            "githubConfigURL must be an https URL",
        ),
        (
            "a name too long for a label",
            with(good.clone(), "/metadata/name", json!("a".repeat(64))),
            "AutoscaleSet names are at most 63 characters",
        ),
        (
            "kubernetes mode without its work volume",
            with(good.clone(), "/spec/containerMode", json!({"type": "kubernetes"})),
            "containerMode 'kubernetes' needs kubernetesModeWorkVolumeClaim",
        ),
        (
            "a negative maxRunners",
            with(good.clone(), "/spec/maxRunners", json!(-1)),
            "spec.maxRunners",
        ),
        (
            "an unknown container mode",
            with(good.clone(), "/spec/containerMode", json!({"type": "podman"})),
            "spec.containerMode.type",
        ),
        (
            "a RunnerSet name too long for its runners' names",
            with(
                runner_set(RUNNER_SET, json!({})),
                "/metadata/name",
                json!("r".repeat(51)),
            ),
            "RunnerSet names are at most 50 characters",
        ),
        (
            "a RunnerSet name that is not a DNS label",
            with(
                runner_set(RUNNER_SET, json!({})),
                "/metadata/name",
                json!("ci.linux"),
            ),
            "RunnerSet names must be DNS labels",
        ),
    ];
    for (what, manifest, message) in &cases {
        refused(&h, what, manifest, message);
    }

    // Credentials: the Secret is missing at first.
    let missing = autoscale_set(&h, 0, 5, "github-token-later");
    let (ok, text) = kubectl_apply(&h, &missing);
    assert!(ok, "a valid AutoscaleSet is accepted:\n{text}");
    h.apply::<RunnerSet>(runner_set(RUNNER_SET, json!({}))).await;
    eventually("CredentialsValid=False, SecretNotFound", || async {
        autoscale_set_condition(&h, "CredentialsValid")
            .await
            .is_some_and(|c| c.status == "False" && c.reason == "SecretNotFound")
    })
    .await;

    // The Secret appears, with a token GitHub refuses.
    h.secret("github-token-later", "token", WRONG_TOKEN).await;
    eventually("CredentialsValid=False, CredentialsRejected", || async {
        autoscale_set_condition(&h, "CredentialsValid")
            .await
            .is_some_and(|c| c.status == "False" && c.reason == "CredentialsRejected")
    })
    .await;
    assert!(h.controller_alive(), "the controller runs on");

    // The Secret is fixed: the scale set registers and jobs run.
    h.api::<Secret>()
        .patch(
            "github-token-later",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": rssc_e2e::PAT}})),
        )
        .await
        .unwrap();
    eventually("the credentials are accepted and the listener runs", || async {
        autoscale_set_condition(&h, "CredentialsValid")
            .await
            .is_some_and(|c| c.status == "True")
            && listener_ready(&h, RUNNER_SET).await
    })
    .await;
    let jobs = queue_jobs(&h, 2, JOB);
    wait_jobs(&h, &jobs).await;

    // Rules that compare with the stored object.
    let registered = h.api::<AutoscaleSet>().get(AUTOSCALE_SET).await.unwrap();
    assert!(registered.status.and_then(|s| s.scale_set_id).is_some());
    refused(
        &h,
        "a config URL change after registration",
        &with(
            missing.clone(),
            "/spec/githubConfigURL",
            json!(h.github.config_url("other-org")),
        ),
        "githubConfigURL cannot change once the scale set is registered",
    );
    refused(
        &h,
        "a RunnerSet moved to another AutoscaleSet",
        &with(
            runner_set(RUNNER_SET, json!({})),
            "/spec/autoscaleSetRef",
            json!({"name": "other"}),
        ),
        "autoscaleSetRef is immutable",
    );
    assert!(h.controller_alive(), "the controller runs on");
    let mut expect = Expect::jobs(&jobs);
    expect.secrets.push(WRONG_TOKEN.to_owned());
    teardown_and_check(h, expect).await;
}
