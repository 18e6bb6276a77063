//! `deploy/samples/` and RSSC-shaped manifests: each passes the generated CRD schemas and CEL
//! rules without losing a field, parses into our types, and round-trips.

mod support;

use std::{collections::BTreeMap, path::Path};

use k8s_openapi::api::core::v1::Secret;
use rssc_api::v1alpha1::{
    APP_PRIVATE_KEY_KEYS, AutoscaleSet, ContainerModeType, RunnerSet, SecretKeyRef, TOKEN_KEYS,
};
use serde_json::{Value, json};
use support::{documents, repo_root, schema_of, validate};

fn sample_documents() -> Vec<(String, Value)> {
    let dir = repo_root().join("deploy/samples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no samples in {}", dir.display());
    paths
        .iter()
        .flat_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            documents(p).into_iter().map(move |d| (name.clone(), d))
        })
        .collect()
}

/// Validates a manifest against its CRD and parses it; returns the parsed object.
fn admit<T: serde::de::DeserializeOwned + serde::Serialize>(origin: &str, doc: &Value) -> T {
    let kind = doc["kind"].as_str().unwrap();
    let errors = validate(doc, &schema_of(kind));
    assert!(errors.is_empty(), "{origin}: {kind} rejected: {errors:#?}");
    let parsed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{origin}: {e}"));
    // What we would write back is admitted too, and reads back the same.
    let written = serde_json::to_value(&parsed).unwrap();
    let errors = validate(&written, &schema_of(kind));
    assert!(
        errors.is_empty(),
        "{origin}: {kind} as serialized is rejected: {errors:#?}"
    );
    let reread: T = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&reread).unwrap(),
        written,
        "{origin}: round trip changed it"
    );
    parsed
}

#[test]
fn every_sample_is_admitted_and_parses() {
    let mut secrets: BTreeMap<String, Secret> = BTreeMap::new();
    let mut autoscale_sets = Vec::new();
    let mut runner_sets = Vec::new();
    for (file, doc) in sample_documents() {
        match doc["kind"].as_str() {
            Some("Secret") => {
                let secret: Secret = serde_json::from_value(doc).unwrap();
                secrets.insert(secret.metadata.name.clone().unwrap(), secret);
            }
            Some("AutoscaleSet") => autoscale_sets.push((file.clone(), admit::<AutoscaleSet>(&file, &doc))),
            Some("RunnerSet") => runner_sets.push((file.clone(), admit::<RunnerSet>(&file, &doc))),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
    }

    let with = |pred: &dyn Fn(&AutoscaleSet) -> bool| autoscale_sets.iter().any(|(_, a)| pred(a));
    assert!(
        with(&|a| a.spec.github_app.is_some()),
        "a sample with a GitHub App"
    );
    assert!(
        with(&|a| a.spec.personal_access_token.is_some()),
        "a sample with a token"
    );
    assert!(
        with(&|a| !a.spec.persistent_volumes.is_empty()),
        "a sample with cache volumes"
    );
    for mode in [
        ContainerModeType::Default,
        ContainerModeType::Dind,
        ContainerModeType::Kubernetes,
        ContainerModeType::KubernetesNovolume,
    ] {
        let mode_of = |a: &AutoscaleSet| {
            a.spec
                .container_mode
                .as_ref()
                .map(|m| m.type_)
                .unwrap_or_default()
        };
        assert!(
            with(&|a| mode_of(a) == mode),
            "a sample for container mode {mode:?}"
        );
    }
    assert!(!runner_sets.is_empty(), "a RunnerSet sample");

    // Every Secret a sample references is a sample too, with the key rssc will read.
    for (file, a) in &autoscale_sets {
        let (reference, fallbacks): (&SecretKeyRef, &[&str]) =
            match (&a.spec.github_app, &a.spec.personal_access_token) {
                (Some(app), _) => (&app.private_key_secret_ref, &APP_PRIVATE_KEY_KEYS),
                (_, Some(pat)) => (&pat.token_secret_ref, &TOKEN_KEYS),
                _ => unreachable!("admission requires one"),
            };
        let secret = secrets
            .get(&reference.name)
            .unwrap_or_else(|| panic!("{file}: no sample Secret {}", reference.name));
        let data = secret.string_data.clone().unwrap_or_default();
        let found = match &reference.key {
            Some(key) => data.contains_key(key),
            None => fallbacks.iter().any(|k| data.contains_key(*k)),
        };
        assert!(
            found,
            "{file}: Secret {} lacks the key rssc reads",
            reference.name
        );
    }
    // And every RunnerSet references a sample AutoscaleSet.
    for (file, rs) in &runner_sets {
        let target = &rs.spec.autoscale_set_ref.name;
        assert!(
            autoscale_sets
                .iter()
                .any(|(_, a)| a.metadata.name.as_ref() == Some(target)),
            "{file}: references unknown AutoscaleSet {target}"
        );
    }
}

fn rssc_fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rssc")
        .join(name);
    documents(&path).remove(0)
}

#[test]
fn rssc_manifests_apply_unchanged_and_mean_the_same() {
    let doc = rssc_fixture("autoscaleset.yaml");
    let a: AutoscaleSet = admit("rssc autoscaleset", &doc);
    let template = a.spec.runner_template.as_ref().unwrap();
    let spec = template.spec.as_ref().unwrap();
    // RSSC's pod-level shorthand lands where rssc applies it to the runner container.
    let resources = spec.resources.as_ref().expect("spec.resources kept");
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "4Gi");
    assert_eq!(spec.env[0].name, "RUNNER_DEBUG");
    assert_eq!(
        spec.pod.node_selector.as_ref().unwrap()["kubernetes.io/os"],
        "linux"
    );
    assert_eq!(
        spec.pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert!(
        spec.pod.containers.is_empty(),
        "no containers: rssc adds the runner container"
    );
    assert_eq!(template.metadata.as_ref().unwrap().labels["team"], "platform");
    let app = a.spec.github_app.as_ref().unwrap();
    assert_eq!(
        (app.client_id.as_str(), app.installation_id),
        ("example-client-id", 987654)
    );
    assert_eq!(
        app.private_key_secret_ref.key, None,
        "RSSC omits the key; rssc tries the known ones"
    );
    assert_eq!(app.private_key_secret_ref.namespace_or("elsewhere"), "default");
    assert_eq!(a.spec.labels.len(), 2);

    let rs: RunnerSet = admit("rssc runnerset", &rssc_fixture("runnerset.yaml"));
    assert_eq!(rs.spec.runner_group.as_deref(), Some("default"));
    assert_eq!(rs.spec.autoscale_set_ref.namespace_or("x"), "default");
    let rs_spec = rs.spec.runner_template.unwrap().spec.unwrap();
    assert_eq!(rs_spec.resources.unwrap().limits.unwrap()["cpu"].0, "4");

    let token: AutoscaleSet = admit(
        "rssc token autoscaleset",
        &rssc_fixture("autoscaleset-token.yaml"),
    );
    assert_eq!(token.spec.runner_group, "default", "defaulted like RSSC");
    assert_eq!(token.spec.max_runners, 10, "defaulted like RSSC");
}

#[test]
fn invalid_manifests_are_rejected_with_the_rules_message() {
    let base = rssc_fixture("autoscaleset-token.yaml");
    let schema = schema_of("AutoscaleSet");
    let rejected = |patch: Value, needle: &str| {
        let mut doc = base.clone();
        json_merge(&mut doc, &patch);
        let errors = validate(&doc, &schema);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "expected {needle:?} in {errors:#?}"
        );
    };
    rejected(
        json!({"spec": {"minRunners": 5, "maxRunners": 2}}),
        "minRunners must not be greater",
    );
    rejected(
        json!({"spec": {"githubApp": {"clientID": "x", "installationID": 1, "privateKeySecretRef": {"name": "s"}}}}),
        "exactly one of githubApp or personalAccessToken",
    );
    rejected(
        json!({"spec": {"githubConfigURL": "https://github.com"}}),
        "githubConfigURL must be an https URL",
    );
    rejected(
        json!({"spec": {"containerMode": {"type": "kubernetes"}}}),
        "needs kubernetesModeWorkVolumeClaim",
    );
    rejected(
        json!({"spec": {"containerMode": {"type": "podman"}}}),
        "is not one of",
    );
    rejected(json!({"spec": {"maxRunners": -1}}), "below the minimum");
    rejected(json!({"spec": {"scaleSetName": ""}}), "shorter than minLength");
    rejected(json!({"spec": {"maxRunner": 3}}), "unknown field");
    rejected(
        json!({"metadata": {"name": "a".repeat(64)}}),
        "at most 63 characters",
    );
}

fn json_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[test]
fn runner_objects_round_trip_through_their_schemas() {
    use rssc_api::v1alpha1::{EphemeralRunner, EphemeralRunnerSet};

    let template = json!({
        "metadata": {"labels": {"scaleset.actions.github.com/runnerset": "linux-x64"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "runner",
                "image": "ghcr.io/actions/actions-runner:latest",
                "command": ["/home/runner/run.sh"],
                "env": [{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG",
                         "valueFrom": {"secretKeyRef": {"name": "linux-x64-runner-abcde", "key": "jitToken"}}}],
                "resources": {"limits": {"cpu": 2, "memory": "4Gi"}}
            }]
        }
    });
    let config = json!({
        "autoscaleSetRef": {"name": "linux-x64"},
        "githubConfigURL": "https://github.com/my-org",
        "scaleSetID": 42,
        "scaleSetName": "linux-x64"
    });
    let ers = json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1",
        "kind": "EphemeralRunnerSet",
        "metadata": {"name": "linux-x64", "namespace": "ci"},
        "spec": {"replicas": 3, "patchSequence": 7, "runnerTemplate": template, "runnerConfig": config},
        "status": {
            "currentRunners": 3, "pendingRunners": 1, "idleRunners": 1, "busyRunners": 1,
            "observedPatchSequence": 7,
            "listener": {"ready": true, "lastSuccessfulPollTime": "2026-11-22T10:00:00Z",
                         "sessionRestarts": 1, "lastMessageId": 1234}
        }
    });
    let parsed: EphemeralRunnerSet = admit("ephemeral runner set", &ers);
    assert_eq!(parsed.spec.replicas, 3);
    assert_eq!(
        parsed.status.unwrap().listener.unwrap().last_message_id,
        Some(1234)
    );

    let er = json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1",
        "kind": "EphemeralRunner",
        "metadata": {"name": "linux-x64-runner-abcde", "namespace": "ci"},
        "spec": {"runnerTemplate": template, "runnerConfig": config},
        "status": {
            "phase": "Running",
            "runnerId": 99,
            "runnerName": "linux-x64-runner-abcde",
            "failures": [{"podUID": "0b0e", "time": "2026-11-22T10:00:00Z", "reason": "OOMKilled", "exitCode": 137}],
            "job": {"requestId": 5, "jobId": "j-1", "repository": "my-org/app",
                    "workflowRef": "my-org/app/.github/workflows/ci.yml@refs/heads/main",
                    "displayName": "build", "workflowRunId": 77, "startedAt": "2026-11-22T10:01:00Z"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "runner is up",
                            "lastTransitionTime": "2026-11-22T10:00:30Z", "observedGeneration": 1}]
        }
    });
    let parsed: EphemeralRunner = admit("ephemeral runner", &er);
    let status = parsed.status.unwrap();
    assert!(status.is_busy());
    assert_eq!(status.failures[0].exit_code, Some(137));

    // A resolved runner template must name its containers.
    let mut incomplete = er.clone();
    incomplete["spec"]["runnerTemplate"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("containers");
    let errors = validate(&incomplete, &schema_of("EphemeralRunner"));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("missing required field \"containers\"")),
        "{errors:#?}"
    );
}

#[test]
fn a_finished_runner_is_not_busy() {
    use rssc_api::v1alpha1::{EphemeralRunnerPhase, EphemeralRunnerStatus, RunnerJob};
    let mut status = EphemeralRunnerStatus {
        job: Some(RunnerJob::default()),
        ..Default::default()
    };
    status.phase = Some(EphemeralRunnerPhase::Running);
    assert!(status.is_busy());
    status.phase = Some(EphemeralRunnerPhase::Succeeded);
    assert!(!status.is_busy());
    assert!(!EphemeralRunnerStatus::default().is_busy(), "no job, not busy");
}
