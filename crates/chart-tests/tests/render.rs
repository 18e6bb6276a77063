//! `helm lint` and `helm template` of both charts across their values matrix (`charts/*/ci/`),
//! and what the rendered objects must say.

use std::collections::BTreeSet;

use clap::CommandFactory;
use rssc_api::v1alpha1::{AutoscaleSet, RunnerSet};
use rssc_chart_tests::{Docs, Render, ci_values, env, parse_docs, repo_root, stem};
use serde_json::{Value, json};

const CONTROLLER: &str = "rssc-controller";
const SCALE_SET: &str = "rssc-scale-set";

fn controller(values: &str) -> Docs {
    Render::new(CONTROLLER, "rssc", "rssc-system")
        .values(repo_root().join(format!("charts/{CONTROLLER}/ci/{values}.yaml")))
        .docs()
}

fn scale_set(values: &str) -> Docs {
    Render::new(SCALE_SET, "arc-runner-set", "arc-runners")
        .values(repo_root().join(format!("charts/{SCALE_SET}/ci/{values}.yaml")))
        .docs()
}

#[test]
fn every_values_file_of_both_charts_lints_and_renders() {
    for chart in [CONTROLLER, SCALE_SET] {
        let files = ci_values(chart);
        assert!(files.len() >= 4, "{chart} has a values matrix under ci/");
        for file in files {
            let render = Render::new(chart, "release", "ns").values(&file);
            let lint = render.lint();
            assert!(
                lint.success,
                "helm lint {chart} with {}: {}{}",
                stem(&file),
                lint.stdout,
                lint.stderr
            );
            assert!(!render.docs().0.is_empty());
        }
    }
}

#[test]
fn the_controller_runs_non_root_with_probes_and_every_flag_set() {
    let docs = controller("default-values");
    let deployment = docs.one("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["image"], "ghcr.io/rssc-dev/rssc-controller:0.1.0");
    for (name, value) in [
        ("RSSC_LISTENER_IMAGE", "ghcr.io/rssc-dev/rssc-listener:0.1.0"),
        ("RSSC_CONCURRENCY", "4"),
        ("RSSC_RUNNER_CONCURRENCY", "32"),
        ("RSSC_KUBE_QPS", "0"),
        ("RSSC_KUBE_BURST", "1000"),
        ("RSSC_LEADER_ELECTION", "true"),
        ("RSSC_LOG_FORMAT", "json"),
        ("RSSC_ADMIN_ADDR", "0.0.0.0:8080"),
    ] {
        assert_eq!(env(deployment, name).unwrap()["value"], value, "{name}");
    }
    for name in ["POD_NAME", "POD_NAMESPACE"] {
        assert!(env(deployment, name).unwrap()["valueFrom"]["fieldRef"].is_object());
    }
    assert!(env(deployment, "RSSC_WATCH_NAMESPACE").is_none());
    // The labels the scale-set chart finds the controller by.
    let labels = &deployment["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/part-of"], "rssc");
    assert_eq!(labels["app.kubernetes.io/component"], "controller");
    assert_eq!(
        labels["scaleset.actions.github.com/controller-service-account-name"],
        docs.one("ServiceAccount")["metadata"]["name"]
    );
    let service = docs.one("Service");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "admin");
    assert_eq!(docs.of_kind("ClusterRole").len(), 1);
    assert!(docs.of_kind("PodDisruptionBudget").is_empty());
    assert!(docs.of_kind("ServiceMonitor").is_empty());
}

/// Every variable the chart sets is one the controller binary reads (a renamed flag fails here).
#[test]
fn every_variable_the_chart_sets_is_a_flag_of_the_controller() {
    let command = rssc_controller::app::Args::command();
    let known: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let docs = controller("single-namespace-values");
    let deployment = docs.one("Deployment");
    let set: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    let unknown: Vec<&&str> = set.iter().filter(|n| !known.contains(**n)).collect();
    assert!(
        unknown.is_empty(),
        "the chart sets {unknown:?}, which rssc-controller does not read (it reads {known:?})"
    );
}

#[test]
fn the_crds_are_templates_kept_on_uninstall_and_equal_to_deploy_crds() {
    let docs = controller("default-values");
    let crds = docs.of_kind("CustomResourceDefinition");
    assert_eq!(crds.len(), 4);
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}"
        );
        let source = std::fs::read_to_string(repo_root().join(format!("deploy/crds/{name}.yaml"))).unwrap();
        let source = &parse_docs(&source)[0];
        assert_eq!(crd["spec"], source["spec"], "{name} is deploy/crds/{name}.yaml");
    }
    let without = Render::new(CONTROLLER, "rssc", "rssc-system")
        .set("crds.install=false")
        .docs();
    assert!(without.of_kind("CustomResourceDefinition").is_empty());
    let removable = Render::new(CONTROLLER, "rssc", "rssc-system")
        .set("crds.keep=false")
        .docs();
    assert!(
        removable.of_kind("CustomResourceDefinition")[0]["metadata"]
            .get("annotations")
            .is_none()
    );
}

#[test]
fn ha_runs_two_leader_elected_replicas_with_a_budget() {
    let docs = controller("ha-values");
    let deployment = docs.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(env(deployment, "RSSC_LEADER_ELECTION").unwrap()["value"], "true");
    assert_eq!(docs.one("PodDisruptionBudget")["spec"]["minAvailable"], 1);
    let leases = docs
        .of_kind("Role")
        .into_iter()
        .find(|r| r["rules"][0]["resources"] == json!(["leases"]))
        .expect("a leader-election Role");
    assert_eq!(leases["metadata"]["namespace"], "rssc-system");
}

#[test]
fn single_namespace_swaps_the_cluster_role_for_a_role_in_that_namespace() {
    let cluster_wide = controller("default-values");
    let docs = controller("single-namespace-values");
    assert!(docs.of_kind("ClusterRole").is_empty() && docs.of_kind("ClusterRoleBinding").is_empty());
    let role = docs
        .of_kind("Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "arc-runners")
        .expect("a Role in the watched namespace");
    let binding = docs
        .of_kind("RoleBinding")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "arc-runners")
        .expect("a RoleBinding in the watched namespace");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], "rssc-system");
    let deployment = docs.one("Deployment");
    assert_eq!(
        env(deployment, "RSSC_WATCH_NAMESPACE").unwrap()["value"],
        "arc-runners"
    );
    assert_eq!(
        deployment["metadata"]["labels"]["scaleset.actions.github.com/controller-watch-single-namespace"],
        "arc-runners"
    );
    // rbac.kubernetesMode=false leaves out what only kubernetes-mode runners need.
    let resources = |rules: &Value| -> Vec<String> {
        rules
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    let all = resources(&cluster_wide.one("ClusterRole")["rules"]);
    let narrow = resources(&role["rules"]);
    assert!(all.contains(&"pods/exec".to_owned()) && all.contains(&"jobs".to_owned()));
    assert!(!narrow.contains(&"pods/exec".to_owned()) && !narrow.contains(&"jobs".to_owned()));
}

#[test]
fn the_cluster_role_holds_what_the_controller_grants_and_no_wildcards() {
    let docs = controller("default-values");
    let rules = docs.one("ClusterRole")["rules"].as_array().unwrap().clone();
    let allows = |group: &str, resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r["apiGroups"].as_array().unwrap().iter().any(|g| g == group)
                && r["resources"].as_array().unwrap().iter().any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
        })
    };
    for rule in &rules {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                "no wildcards: {rule}"
            );
        }
    }
    assert!(!allows("rbac.authorization.k8s.io", "roles", "escalate"));
    assert!(!allows("rbac.authorization.k8s.io", "roles", "bind"));
    // What listener Roles grant (crates/rssc-controller/src/listener.rs): the controller must
    // hold it to create them.
    let group = "scaleset.actions.github.com";
    for verb in ["get", "patch"] {
        assert!(allows(group, "ephemeralrunnersets", verb), "{verb}");
    }
    assert!(allows(group, "ephemeralrunnersets/status", "patch"));
    assert!(allows(group, "ephemeralrunners/status", "patch"));
    for verb in ["list", "watch"] {
        assert!(allows("", "secrets", verb));
    }
    // What kubernetes-mode runner Roles grant (runner_support.rs).
    for (g, resource, verbs) in [
        ("", "pods", &["get", "list", "create", "delete"][..]),
        ("", "pods/exec", &["get", "create"]),
        ("", "pods/log", &["get", "list", "watch"]),
        ("", "secrets", &["get", "list", "create", "delete"]),
        ("batch", "jobs", &["get", "list", "create", "delete"]),
    ] {
        for verb in verbs {
            assert!(allows(g, resource, verb), "{resource} {verb}");
        }
    }
}

#[test]
fn monitoring_values_add_monitoring_dashboards_alerts_and_a_network_policy() {
    let docs = controller("monitoring-values");
    let monitor = docs.one("ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let policy = docs.one("NetworkPolicy");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], "admin");
    assert!(policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"].is_object());
    let rule = docs.one("PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    assert!(!rule["spec"]["groups"].as_array().unwrap().is_empty());
    let dashboards = docs.of_kind("ConfigMap");
    assert_eq!(dashboards.len(), 3, "three dashboards");
    for dashboard in dashboards {
        assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
        assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    }
    let deployment = docs.one("Deployment");
    assert_eq!(env(deployment, "RSSC_KUBE_QPS").unwrap()["value"], "100");
    assert_eq!(env(deployment, "RUST_BACKTRACE").unwrap()["value"], "1");
}

/// The AutoscaleSet and RunnerSet of a scale-set render, as the controller reads them.
fn typed(docs: &Docs) -> (AutoscaleSet, RunnerSet) {
    let asss = serde_json::from_value(docs.one("AutoscaleSet").clone()).expect("a valid AutoscaleSet");
    let rs = serde_json::from_value(docs.one("RunnerSet").clone()).expect("a valid RunnerSet");
    (asss, rs)
}

#[test]
fn a_token_map_creates_the_secret_and_references_it() {
    let docs = scale_set("token-values");
    let (asss, rs) = typed(&docs);
    assert_eq!(
        asss.spec.github_config_url, "https://github.com/my-org",
        "trailing / trimmed"
    );
    assert_eq!(asss.spec.scale_set_name, "linux-x64");
    assert_eq!((asss.spec.min_runners, asss.spec.max_runners), (1, 20));
    let labels: Vec<&str> = asss.spec.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(labels, ["linux", "x64"]);
    let token = &asss.spec.personal_access_token.as_ref().unwrap().token_secret_ref;
    let secret = docs.one("Secret");
    assert_eq!(secret["metadata"]["name"], token.name.as_str());
    assert_eq!(token.key.as_deref(), Some("github_token"));
    assert_eq!(secret["stringData"]["github_token"], "ghp_placeholder");
    assert!(asss.spec.github_app.is_none());
    assert_eq!(rs.spec.autoscale_set_ref.name, "linux-x64");
    assert_eq!(rs.metadata.name.as_deref(), Some("linux-x64"));
}

#[test]
fn a_github_app_map_keeps_the_ids_in_the_spec_and_the_key_in_the_secret() {
    let docs = scale_set("app-values");
    let (asss, _) = typed(&docs);
    let app = asss.spec.github_app.as_ref().unwrap();
    assert_eq!(app.client_id, "123456");
    assert_eq!(app.installation_id, 987_654_321);
    assert_eq!(
        app.private_key_secret_ref.key.as_deref(),
        Some("github_app_private_key")
    );
    let secret = docs.one("Secret");
    assert!(
        secret["stringData"]["github_app_private_key"]
            .as_str()
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    assert!(secret["stringData"].get("github_token").is_none());
    assert_eq!(asss.spec.runner_group, "ci-runners");
    assert_eq!(asss.spec.scale_set_name, "arc-runner-set", "the release name");
}

#[test]
fn an_existing_secret_is_referenced_not_created() {
    let docs = scale_set("existing-secret-values");
    assert!(docs.of_kind("Secret").is_empty());
    let (asss, rs) = typed(&docs);
    let token = &asss.spec.personal_access_token.as_ref().unwrap().token_secret_ref;
    assert_eq!(token.name, "pre-created-token");
    assert_eq!(
        token.key, None,
        "rssc tries github_token, token, pat, accessToken"
    );
    assert_eq!(
        asss.spec.scale_set_name, "My_Repo_Runners",
        "GitHub keeps the name as given"
    );
    assert_eq!(asss.metadata.name.as_deref(), Some("my-repo-runners"));
    assert_eq!(rs.metadata.name.as_deref(), Some("my-repo-runners"));

    let docs = scale_set("existing-app-secret-values");
    assert!(docs.of_kind("Secret").is_empty());
    let (asss, _) = typed(&docs);
    let app = asss.spec.github_app.as_ref().unwrap();
    assert_eq!(
        (app.client_id.as_str(), app.installation_id),
        ("Iv23liEXAMPLE", 42)
    );
    assert_eq!(app.private_key_secret_ref.name, "pre-created-app");
}

#[test]
fn each_container_mode_reaches_the_autoscale_set() {
    let mode = |values: &str| {
        let docs = scale_set(values);
        docs.one("AutoscaleSet")["spec"]["containerMode"].clone()
    };
    assert_eq!(mode("token-values"), Value::Null, "no mode: the runner only");
    assert_eq!(mode("dind-values"), json!({"type": "dind"}));
    assert_eq!(
        mode("kubernetes-novolume-values"),
        json!({"type": "kubernetes-novolume"})
    );
    let kubernetes = mode("kubernetes-values");
    assert_eq!(kubernetes["type"], "kubernetes");
    assert_eq!(
        kubernetes["kubernetesModeWorkVolumeClaim"]["resources"]["requests"]["storage"],
        "1Gi"
    );
    let (asss, _) = typed(&scale_set("dind-values"));
    assert_eq!(
        asss.spec.runner_image, "ghcr.io/actions/actions-runner:2.330.0",
        "the template's runner image"
    );
    let (asss, _) = typed(&scale_set("kubernetes-values"));
    assert_eq!(asss.spec.runner_image, "ghcr.io/actions/actions-runner:latest");
}

#[test]
fn proxy_tls_cache_volumes_and_listener_overrides_are_passed_on() {
    let docs = scale_set("proxy-tls-values");
    let (asss, rs) = typed(&docs);
    let proxy = asss.spec.proxy.as_ref().unwrap();
    assert_eq!(
        proxy.https.as_ref().unwrap().credential_secret_ref.as_deref(),
        Some("proxy-auth")
    );
    assert_eq!(proxy.no_proxy.len(), 3);
    let tls = asss.spec.github_server_tls.as_ref().unwrap();
    assert_eq!(tls.certificate_from.config_map_key_ref.name, "ghes-ca");
    assert_eq!(asss.spec.persistent_volumes[0].name, "tool-cache");
    let listener = rs.spec.listener_template.as_ref().unwrap();
    assert_eq!(listener.node_selector["pool"], "system");
    assert_eq!(
        listener.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(listener.env[0].name, "RSSC_LOG_LEVEL");
    assert!(listener.resources.is_some() && listener.tolerations.len() == 1);
    assert!(
        listener
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .contains_key("prometheus.io/scrape")
    );
    let template = &docs.one("AutoscaleSet")["spec"]["runnerTemplate"];
    assert_eq!(template["metadata"]["labels"]["team"], "platform");
    for kind in ["AutoscaleSet", "RunnerSet"] {
        let meta = &docs.one(kind)["metadata"];
        assert_eq!(meta["labels"]["cost-center"], "ci");
        assert_eq!(meta["annotations"]["owner"], "platform-team");
    }
}

#[test]
fn notes_tell_the_runs_on_value_and_how_to_read_the_listener_log() {
    let run = std::process::Command::new(rssc_chart_tests::tool("helm"))
        .args(["install", "linux", "--dry-run=client", "--namespace", "ci"])
        .arg(repo_root().join("charts/rssc-scale-set"))
        .args(["--values"])
        .arg(repo_root().join("charts/rssc-scale-set/ci/token-values.yaml"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(out.contains("runs-on: linux-x64"), "{out}");
    assert!(
        out.contains("kubectl -n ci logs deployment/linux-x64-listener"),
        "{out}"
    );
}

#[test]
fn an_arc_values_file_works_unchanged() {
    let (asss, _) = typed(&scale_set("arc-values"));
    let app = asss.spec.github_app.as_ref().unwrap();
    assert_eq!((app.client_id.as_str(), app.installation_id), ("123456", 654_321));
    assert_eq!((asss.spec.min_runners, asss.spec.max_runners), (1, 20));
    assert_eq!(
        asss.spec.container_mode.as_ref().map(|m| m.type_),
        Some(rssc_api::v1alpha1::ContainerModeType::Dind)
    );
}

/// Every flag of the controller binary can be set through the chart (a new flag fails here
/// until the chart has a value for it).
#[test]
fn every_flag_of_the_controller_has_a_chart_value() {
    let command = rssc_controller::app::Args::command();
    let flags: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let mut set = BTreeSet::new();
    for values in ["default-values", "single-namespace-values"] {
        let docs = controller(values);
        let deployment = docs.one("Deployment");
        for var in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
        {
            set.insert(var["name"].as_str().unwrap().to_owned());
        }
    }
    let missing: Vec<&String> = flags.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "rssc-controller reads {missing:?}, which the chart never sets: add a value to \
         charts/rssc-controller (values.yaml, values.schema.json, templates/deployment.yaml) \
         and docs/configuration.md"
    );
}
