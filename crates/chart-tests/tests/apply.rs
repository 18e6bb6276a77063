//! What the charts render and deploy/install.yaml apply to a Kubernetes API: the test server, or
//! the cluster `RSSC_E2E_KUBECONFIG` names. Applying sends every custom object through the CRD
//! schemas (types, CEL rules, strict field validation), so a field name the CRDs do not know
//! fails here.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    rbac::v1::{ClusterRole, Role},
};
use kube::Api;
use rssc_api::v1alpha1::{AutoscaleSet, RunnerSet};
use rssc_chart_tests::{Render, ci_values, repo_root, stem, tool};
use rssc_test_support::Cluster;

/// `kubectl apply -f -` of `manifests`; the output, or kubectl's error.
fn apply(cluster: &Cluster, manifests: &str, extra: &[&str]) -> Result<String, String> {
    let mut child = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["apply", "-f", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn rendered(render: &Render) -> String {
    let run = render.template();
    assert!(run.success, "helm template: {}", run.stderr);
    run.stdout
}

/// Deletes cluster-scoped RBAC objects a test made on a real cluster (the test server goes
/// with the test; the CRDs stay, as the other cluster tests expect).
fn remove_cluster_rbac(cluster: &Cluster, names: &[String]) {
    if !cluster.is_real() {
        return;
    }
    for name in names {
        let _ = Command::new(tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["delete", "--ignore-not-found"])
            .arg(format!("clusterrole/{name}"))
            .arg(format!("clusterrolebinding/{name}"))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rendered_values_file_applies() {
    let cluster = Cluster::connect("charts").await;
    let ns = cluster.namespace.clone();
    let mut cluster_roles = Vec::new();

    for (i, file) in ci_values("rssc-controller").iter().enumerate() {
        let release = format!("{ns}-{i}");
        let render = Render::new("rssc-controller", &release, &ns)
            .values(file)
            // The Prometheus Operator's CRDs are not installed.
            .set("metrics.serviceMonitor.enabled=false")
            .set("prometheusRule.enabled=false")
            // ConfigMaps in a namespace that exists.
            .set(&format!("grafanaDashboards.namespace={ns}"))
            // A Role in a namespace that exists.
            .set(&format!("flags.watchSingleNamespace={}", watched(file, &ns)));
        let out = apply(&cluster, &rendered(&render), &[])
            .unwrap_or_else(|e| panic!("controller chart with {}: {e}", stem(file)));
        assert!(out.contains("deployment.apps/"), "{out}");
        cluster_roles.push(format!("{release}-rssc-controller"));
    }
    let deployments: Api<Deployment> = cluster.api();
    for name in &cluster_roles {
        deployments
            .get(name)
            .await
            .expect("the controller Deployment exists");
    }
    let cluster_role: Api<ClusterRole> = Api::all(cluster.client.clone());
    let default_rules = cluster_role
        .get(&cluster_roles[0])
        .await
        .expect("the ClusterRole exists")
        .rules
        .unwrap();
    assert!(default_rules.len() >= 10);
    let roles: Api<Role> = cluster.api();
    let single = ci_values("rssc-controller")
        .iter()
        .position(|f| stem(f) == "single-namespace-values")
        .unwrap();
    roles
        .get(&cluster_roles[single])
        .await
        .expect("the single-namespace Role exists");

    let files = ci_values("rssc-scale-set");
    for file in &files {
        let release = stem(file).trim_end_matches("-values").to_owned();
        let render = Render::new("rssc-scale-set", &release, &ns).values(file);
        apply(&cluster, &rendered(&render), &[])
            .unwrap_or_else(|e| panic!("scale-set chart with {}: {e}", stem(file)));
    }
    let sets: Vec<AutoscaleSet> = cluster
        .api::<AutoscaleSet>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let runner_sets: Vec<RunnerSet> = cluster
        .api::<RunnerSet>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(sets.len(), files.len());
    assert_eq!(runner_sets.len(), files.len());
    let kubernetes = sets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("kubernetes"))
        .expect("the kubernetes-mode AutoscaleSet");
    assert_eq!(
        kubernetes.spec.max_runners, 10,
        "the API server defaults maxRunners when the chart leaves it out"
    );
    remove_cluster_rbac(&cluster, &cluster_roles);
}

/// The namespace a values file's controller manages, moved to the test's own namespace.
fn watched(file: &std::path::Path, namespace: &str) -> String {
    if stem(file) == "single-namespace-values" {
        namespace.to_owned()
    } else {
        String::new()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn install_yaml_applies() {
    let cluster = Cluster::connect("install").await;
    let text = std::fs::read_to_string(repo_root().join("deploy/install.yaml")).unwrap();
    // Into the test's namespace, without creating rssc-system.
    let body = text
        .split("\n---\n")
        .filter(|doc| !doc.contains("\nkind: Namespace\n"))
        .collect::<Vec<_>>()
        .join("\n---\n")
        .replace(
            "namespace: rssc-system",
            &format!("namespace: {}", cluster.namespace),
        );
    // A real cluster may run rssc already: its cluster-wide objects are only checked there.
    let extra: &[&str] = if cluster.is_real() {
        &["--dry-run=server"]
    } else {
        &[]
    };
    let out = apply(&cluster, &body, extra).unwrap_or_else(|e| panic!("deploy/install.yaml: {e}"));
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/autoscalesets.scaleset.actions.github.com",
        "clusterrole.rbac.authorization.k8s.io/rssc-controller",
        "deployment.apps/rssc-controller",
    ] {
        assert!(out.contains(object), "{object} in {out}");
    }
    if !cluster.is_real() {
        let deployment = cluster.api::<Deployment>().get("rssc-controller").await.unwrap();
        assert_eq!(
            deployment
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
                .service_account_name
                .as_deref(),
            Some("rssc-controller")
        );
    }
}

/// `helm install --dry-run=server`: helm looks the controllers up in the cluster.
fn dry_run_install(cluster: &Cluster, namespace: &str, set: &[String]) -> Result<String, String> {
    let mut command = Command::new(tool("helm"));
    command
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["install", "linux", "--dry-run=server", "--namespace", namespace])
        .arg(repo_root().join("charts/rssc-scale-set"))
        .arg("--values")
        .arg(repo_root().join("charts/rssc-scale-set/ci/token-values.yaml"));
    for s in set {
        command.args(["--set", s]);
    }
    let out = command.output().expect("helm runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scale_set_chart_refuses_a_namespace_no_controller_manages() {
    let cluster = Cluster::connect("discovery").await;
    let ns = cluster.namespace.clone();
    let release = format!("{ns}-ctl");
    // A controller in the test's namespace that manages only kube-public.
    let elsewhere = Render::new("rssc-controller", &release, &ns)
        .set("crds.install=false")
        .set("flags.watchSingleNamespace=kube-public");
    apply(&cluster, &rendered(&elsewhere), &[]).unwrap();
    // Only the controllers in the test's namespace count (a real cluster may have others).
    let only_ours = vec![format!("controllerServiceAccount.namespace={ns}")];
    let err = dry_run_install(&cluster, &ns, &only_ours).expect_err("no controller manages the namespace");
    assert!(
        err.contains(&format!("no rssc controller manages namespace {ns}"))
            && err.contains("manages kube-public"),
        "{err}"
    );
    // The same controller, now managing every namespace.
    let everywhere = Render::new("rssc-controller", &release, &ns).set("crds.install=false");
    apply(&cluster, &rendered(&everywhere), &[]).unwrap();
    let notes = dry_run_install(&cluster, &ns, &only_ours).unwrap_or_else(|e| panic!("{e}"));
    assert!(notes.contains("runs-on: linux-x64"), "{notes}");
    // Naming the controller fully skips the look-up (for users who may not list Deployments).
    apply(&cluster, &rendered(&elsewhere), &[]).unwrap();
    let named = vec![
        format!("controllerServiceAccount.namespace={ns}"),
        format!("controllerServiceAccount.name={release}-rssc-controller"),
    ];
    dry_run_install(&cluster, &ns, &named).unwrap_or_else(|e| panic!("{e}"));
    remove_cluster_rbac(&cluster, &[format!("{release}-rssc-controller")]);
}
