//! Installing through the Helm charts instead of the raw manifests (`--install charts`): the
//! CRDs from the controller chart and the Secret, AutoscaleSet and RunnerSet from the scale-set
//! chart, rendered by a real `helm template` with values that say what the samples say, pointed
//! at the fake GitHub and the simulated nodes. (The controller itself runs as a process either
//! way; the test server does not run Deployments' Pods.)

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::manifests::Samples;

/// `helm`, installed into the repository's `.tools/` on first use.
pub fn helm(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let tools = root.join("scripts/tools");
    let status = Command::new("bash")
        .arg(&tools)
        .args(["ensure", "helm"])
        .status()
        .with_context(|| format!("running {}", tools.display()))?;
    if !status.success() {
        bail!("`bash scripts/tools ensure helm` failed; --install charts needs helm (it comes from npm)");
    }
    Ok(root.join(".tools/bin/helm"))
}

/// The CRDs the controller chart ships, rendered with its defaults.
pub fn controller_chart_crds(helm: &Path, root: &Path) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    crds(&render(
        helm,
        &root.join("charts/rssc-controller"),
        "rssc-system",
        &json!({}),
    )?)
}

/// The release name of both charts in the sandbox.
const RELEASE: &str = "sandbox";

/// Scale-set chart values equivalent to the pointed samples `m`, for `namespace`.
pub fn scale_set_values(m: &Samples, token: &str, namespace: &str) -> anyhow::Result<Value> {
    let spec = &m.autoscale_set["spec"];
    let text = |v: &Value, what: &str| -> anyhow::Result<String> {
        v.as_str()
            .map(str::to_owned)
            .with_context(|| format!("the pointed AutoscaleSet has no {what}"))
    };
    // The chart puts `template` on the AutoscaleSet; the RunnerSet's placement goes there too.
    let mut template = spec["runnerTemplate"].clone();
    if template.is_null() {
        template = json!({});
    }
    let runner_set_spec = &m.runner_set["spec"]["runnerTemplate"]["spec"];
    for (key, value) in runner_set_spec.as_object().into_iter().flatten() {
        match (template["spec"].get_mut(key), value) {
            (Some(Value::Object(base)), Value::Object(over)) => {
                base.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            _ => template["spec"][key] = value.clone(),
        }
    }
    let listener = &m.runner_set["spec"]["listenerTemplate"];
    let labels: Vec<Value> = spec["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(|n| json!(n)))
        .collect();
    Ok(json!({
        "githubConfigUrl": text(&spec["githubConfigURL"], "githubConfigURL")?,
        "githubConfigSecret": {"github_token": token},
        "runnerScaleSetName": text(&spec["scaleSetName"], "scaleSetName")?,
        "scaleSetLabels": labels,
        "minRunners": spec["minRunners"].as_i64().unwrap_or(0),
        "maxRunners": spec["maxRunners"].as_i64().unwrap_or(10),
        "runnerImage": spec["runnerImage"].clone(),
        "githubServerTLS": spec["githubServerTLS"].clone(),
        "template": template,
        "listenerTemplate": {"spec": {
            "nodeSelector": listener["nodeSelector"].clone(),
            "tolerations": listener["tolerations"].clone(),
        }},
        // The sandbox's controller runs as a process: name it so the chart does not look for
        // its Deployment.
        "controllerServiceAccount": {"namespace": namespace, "name": "rssc-controller"},
    }))
}

/// Renders `chart` with `values` in `namespace` through `helm template`, as JSON objects.
pub fn render(helm: &Path, chart: &Path, namespace: &str, values: &Value) -> anyhow::Result<Vec<Value>> {
    let file = tempfile_with(&serde_json::to_string(values)?)?;
    let output = Command::new(helm)
        .arg("template")
        .arg(RELEASE)
        .arg(chart)
        .args(["--namespace", namespace, "--values"])
        .arg(file.path())
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    if !output.status.success() {
        bail!(
            "helm template {} failed: {}",
            chart.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout).context("helm's output is not UTF-8")?;
    documents(&text)
}

/// The objects in a multi-document YAML stream.
pub fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).context("helm rendered something that is not YAML"))
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

/// The CRDs among rendered objects.
pub fn crds(objects: &[Value]) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let crds: Vec<CustomResourceDefinition> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| serde_json::from_value(o.clone()).context("a rendered CRD does not parse"))
        .collect::<anyhow::Result<_>>()?;
    if crds.is_empty() {
        bail!("the controller chart rendered no CRDs");
    }
    Ok(crds)
}

/// The Secret, AutoscaleSet and RunnerSet the scale-set chart rendered.
pub fn scale_set_objects(objects: &[Value]) -> anyhow::Result<Samples> {
    let one = |kind: &str| -> anyhow::Result<Value> {
        let mut found = objects.iter().filter(|o| o["kind"] == kind);
        match (found.next(), found.next()) {
            (Some(o), None) => Ok(o.clone()),
            _ => bail!("the scale-set chart should render exactly one {kind}"),
        }
    };
    Ok(Samples {
        token_secret: one("Secret")?,
        autoscale_set: one("AutoscaleSet")?,
        runner_set: one("RunnerSet")?,
    })
}

/// A temporary file holding `text`, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tempfile_with(text: &str) -> anyhow::Result<TempFile> {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "rssc-sandbox-values-{}-{}.json",
        std::process::id(),
        COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(TempFile(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointed() -> Samples {
        Samples {
            token_secret: json!({"kind": "Secret", "metadata": {"name": "github-token"}}),
            autoscale_set: json!({"kind": "AutoscaleSet", "metadata": {"name": "linux-x64"}, "spec": {
                "githubConfigURL": "https://127.0.0.1:4433/my-org", "scaleSetName": "linux-x64",
                "minRunners": 1, "maxRunners": 20, "runnerImage": "runner:1",
                "labels": [{"name": "linux"}, {"type": "User", "name": "x64"}],
                "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "github-ca", "key": "ca.pem"}}},
                "runnerTemplate": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}
            }}),
            runner_set: json!({"kind": "RunnerSet", "spec": {
                "runnerTemplate": {"spec": {"nodeSelector": {"sim": "true"}, "tolerations": [{"key": "sim"}]}},
                "listenerTemplate": {"nodeSelector": {"sim": "true"}, "tolerations": [{"key": "sim"}]}
            }}),
        }
    }

    #[test]
    fn chart_values_say_what_the_pointed_samples_say() {
        let v = scale_set_values(&pointed(), "ghp_x", "ns").unwrap();
        assert_eq!(v["githubConfigUrl"], "https://127.0.0.1:4433/my-org");
        assert_eq!(v["githubConfigSecret"]["github_token"], "ghp_x");
        assert_eq!(v["scaleSetLabels"], json!(["linux", "x64"]));
        assert_eq!(
            (v["minRunners"].as_i64(), v["maxRunners"].as_i64()),
            (Some(1), Some(20))
        );
        let spec = &v["template"]["spec"];
        assert_eq!(
            spec["nodeSelector"],
            json!({"kubernetes.io/os": "linux", "sim": "true"}),
            "the runners' placement merges over the AutoscaleSet's"
        );
        assert_eq!(spec["tolerations"], json!([{"key": "sim"}]));
        assert_eq!(
            v["listenerTemplate"]["spec"]["nodeSelector"],
            json!({"sim": "true"})
        );
        assert_eq!(v["controllerServiceAccount"]["namespace"], "ns");
    }

    #[test]
    fn rendered_objects_are_picked_by_kind() {
        let docs = documents(
            "---\n# Source: x\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\nkind: AutoscaleSet\n---\nkind: RunnerSet\n---\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 3);
        let samples = scale_set_objects(&docs).unwrap();
        assert_eq!(samples.token_secret["metadata"]["name"], "s");
        assert!(crds(&docs).is_err(), "no CRD there");
        assert!(scale_set_objects(&docs[..2]).is_err());
    }
}
