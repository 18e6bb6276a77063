//! The CRDs from `deploy/crds/` and the sample resources from `deploy/samples/`, pointed at the
//! fake GitHub and the simulated nodes (loading is I/O; the rewriting is pure).

use std::path::Path;

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// The samples the sandbox applies: an organization scale set and the RunnerSet that runs it.
pub const AUTOSCALE_SET_SAMPLE: &str = "samples/autoscaleset-github-app.yaml";
/// The RunnerSet sample (it runs the AutoscaleSet above).
pub const RUNNER_SET_SAMPLE: &str = "samples/runnerset.yaml";
/// The token Secret sample; the sandbox uses a token, as the fake's App keys are test-only.
pub const TOKEN_SECRET_SAMPLE: &str = "samples/github-token-secret.yaml";

/// Every CRD in `deploy/crds/`, in file name order.
pub fn load_crds(deploy: &Path) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let dir = deploy.join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "cannot read {} (set --deploy-dir to the repository's deploy/)",
                dir.display()
            )
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no CRDs in {}", dir.display());
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            serde_yaml::from_str(&text).with_context(|| format!("{} is not a CRD", f.display()))
        })
        .collect()
}

/// The sample manifests, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// The credentials Secret.
    pub token_secret: Value,
    /// The AutoscaleSet.
    pub autoscale_set: Value,
    /// The RunnerSet.
    pub runner_set: Value,
}

/// Reads the samples the sandbox applies.
pub fn load_samples(deploy: &Path) -> anyhow::Result<Samples> {
    let read = |name: &str| -> anyhow::Result<Value> {
        let path = deploy.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("{} is not a manifest", path.display()))
    };
    Ok(Samples {
        token_secret: read(TOKEN_SECRET_SAMPLE)?,
        autoscale_set: read(AUTOSCALE_SET_SAMPLE)?,
        runner_set: read(RUNNER_SET_SAMPLE)?,
    })
}

/// Where the samples must point instead of github.com.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The fake's base URL, `https://127.0.0.1:<port>`.
    pub github_base_url: String,
    /// The token the fake accepts.
    pub token: String,
    /// ConfigMap (name, key) holding the CA that signed the fake's certificate.
    pub ca: (String, String),
    /// Node label and taint key of the simulated nodes, to pin Pods to them.
    pub node_label: String,
}

/// The samples with the GitHub URL, credentials and CA pointing at the fake, and runner and
/// listener Pods pinned to the simulated nodes; everything else is as in the files.
pub fn point_at(samples: &Samples, target: &Target) -> anyhow::Result<Samples> {
    let mut secret = samples.token_secret.clone();
    let secret_name = str_at(&secret, "/metadata/name")?;
    secret["stringData"] = json!({"token": target.token});

    let mut asset = samples.autoscale_set.clone();
    let url = str_at(&asset, "/spec/githubConfigURL")?;
    let spec = asset
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .context("the AutoscaleSet sample has no spec")?;
    spec.insert(
        "githubConfigURL".into(),
        json!(format!("{}/{}", target.github_base_url, config_path(&url)?)),
    );
    for credentials in ["githubApp", "personalAccessToken"] {
        spec.remove(credentials);
    }
    spec.insert(
        "personalAccessToken".into(),
        json!({"tokenSecretRef": {"name": secret_name, "key": "token"}}),
    );
    spec.insert(
        "githubServerTLS".into(),
        json!({"certificateFrom": {"configMapKeyRef": {"name": target.ca.0, "key": target.ca.1}}}),
    );

    let mut runner_set = samples.runner_set.clone();
    let asset_name = str_at(&asset, "/metadata/name")?;
    runner_set["spec"]["autoscaleSetRef"] = json!({"name": asset_name});
    let toleration = json!({"key": target.node_label, "operator": "Exists", "effect": "NoSchedule"});
    for template in ["/spec/runnerTemplate/spec", "/spec/listenerTemplate"] {
        pin(&mut runner_set, template, &target.node_label, &toleration)?;
    }
    Ok(Samples {
        token_secret: secret,
        autoscale_set: asset,
        runner_set,
    })
}

/// Adds the node selector and toleration of the simulated nodes to the Pod spec at `pointer`,
/// keeping what the sample has there.
fn pin(manifest: &mut Value, pointer: &str, node_label: &str, toleration: &Value) -> anyhow::Result<()> {
    let mut at = &mut *manifest;
    for key in pointer.trim_start_matches('/').split('/') {
        let object = at
            .as_object_mut()
            .with_context(|| format!("{pointer} in the RunnerSet sample is not an object"))?;
        at = object.entry(key).or_insert_with(|| json!({}));
    }
    at["nodeSelector"][node_label] = json!("true");
    match at.get_mut("tolerations").and_then(Value::as_array_mut) {
        Some(list) => list.push(toleration.clone()),
        None => at["tolerations"] = json!([toleration]),
    }
    Ok(())
}

fn str_at(manifest: &Value, pointer: &str) -> anyhow::Result<String> {
    manifest
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("the sample has no {pointer}"))
}

/// The path of a config URL (`https://github.com/my-org/my-repo` → `my-org/my-repo`).
fn config_path(url: &str) -> anyhow::Result<String> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .with_context(|| format!("githubConfigURL {url:?} has no scheme"))?;
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or_default();
    if path.trim_matches('/').is_empty() {
        bail!("githubConfigURL {url:?} names no organization, repository or enterprise");
    }
    Ok(path.trim_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
    }

    fn target() -> Target {
        Target {
            github_base_url: "https://127.0.0.1:4443".into(),
            token: "ghp_fake".into(),
            ca: ("github-ca".into(), "ca.pem".into()),
            node_label: "sim.rssc.dev/node".into(),
        }
    }

    #[test]
    fn every_crd_file_loads() {
        let crds = load_crds(&deploy()).unwrap();
        assert_eq!(crds.len(), 4);
        assert!(crds.iter().all(|c| c.spec.group == "scaleset.actions.github.com"));
    }

    #[test]
    fn the_samples_point_at_the_fake_and_keep_the_rest() {
        let samples = load_samples(&deploy()).unwrap();
        let out = point_at(&samples, &target()).unwrap();
        let spec = &out.autoscale_set["spec"];
        assert_eq!(spec["githubConfigURL"], "https://127.0.0.1:4443/my-org");
        assert!(spec.get("githubApp").is_none());
        assert_eq!(
            spec["personalAccessToken"]["tokenSecretRef"]["name"],
            out.token_secret["metadata"]["name"]
        );
        assert_eq!(
            spec["githubServerTLS"]["certificateFrom"]["configMapKeyRef"]["name"],
            "github-ca"
        );
        assert_eq!(out.token_secret["stringData"]["token"], "ghp_fake");
        // Untouched: limits, labels, template.
        for key in [
            "scaleSetName",
            "minRunners",
            "maxRunners",
            "labels",
            "runnerTemplate",
        ] {
            assert_eq!(spec[key], samples.autoscale_set["spec"][key], "{key}");
        }
        let rs = &out.runner_set["spec"];
        assert_eq!(
            rs["autoscaleSetRef"]["name"],
            out.autoscale_set["metadata"]["name"]
        );
        let runner = &rs["runnerTemplate"]["spec"];
        assert_eq!(runner["nodeSelector"]["sim.rssc.dev/node"], "true");
        let tolerations = runner["tolerations"].as_array().unwrap();
        assert_eq!(
            tolerations.len(),
            2,
            "the sample's toleration stays: {tolerations:?}"
        );
        assert_eq!(
            rs["listenerTemplate"]["tolerations"][0]["key"],
            "sim.rssc.dev/node"
        );
        assert_eq!(
            rs["listenerTemplate"]["resources"],
            samples.runner_set["spec"]["listenerTemplate"]["resources"]
        );
    }

    #[test]
    fn config_paths() {
        assert_eq!(config_path("https://github.com/my-org").unwrap(), "my-org");
        assert_eq!(
            config_path("https://ghe.example.com/enterprises/e/").unwrap(),
            "enterprises/e"
        );
        assert!(config_path("https://github.com").is_err());
        assert!(config_path("github.com/x").is_err());
    }
}
