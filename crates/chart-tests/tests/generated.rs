//! deploy/install.yaml, the kustomize base and the chart's copy of the CRDs match a fresh render
//! (scripts/check-generated runs the same check in CI), and the kustomize overlays build.

use std::process::Command;

use rssc_chart_tests::{Docs, env, parse_docs, repo_root, tool};

#[test]
fn install_yaml_and_the_chart_crds_are_current() {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/render-manifests"))
        .arg("--check")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kustomize(dir: &str) -> Docs {
    let out = Command::new(tool("kubectl"))
        .arg("kustomize")
        .arg(repo_root().join(dir))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Docs(parse_docs(&String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn install_yaml_is_plain_kubernetes_in_rssc_system() {
    let text = std::fs::read_to_string(repo_root().join("deploy/install.yaml")).unwrap();
    assert!(
        !text.contains("managed-by: Helm"),
        "no Helm labels in what kubectl applies"
    );
    let docs = Docs(parse_docs(&text));
    assert_eq!(docs.kinds()[0], "Namespace");
    assert_eq!(docs.of_kind("CustomResourceDefinition").len(), 4);
    for doc in &docs.0 {
        if let Some(ns) = doc["metadata"]["namespace"].as_str() {
            assert_eq!(ns, "rssc-system", "{}", doc["metadata"]["name"]);
        }
    }
}

#[test]
fn the_kustomize_overlays_build() {
    let base = kustomize("deploy/kustomize/base");
    assert_eq!(base.one("Deployment")["spec"]["replicas"], 1);

    let ha = kustomize("deploy/kustomize/overlays/ha");
    assert_eq!(ha.one("Deployment")["spec"]["replicas"], 2);
    let budget = ha.one("PodDisruptionBudget");
    let selector = &budget["spec"]["selector"]["matchLabels"];
    let pod_labels = &ha.one("Deployment")["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector.as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "the budget selects the controller Pods");
    }

    let debug = kustomize("deploy/kustomize/overlays/debug");
    let deployment = debug.one("Deployment");
    assert_eq!(env(deployment, "RSSC_LOG_LEVEL").unwrap()["value"], "debug");
    assert_eq!(env(deployment, "RSSC_LOG_FORMAT").unwrap()["value"], "text");
    let names: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "each variable once: {names:?}");
}
