//! Behaviour specific to the test server: kubectl against it, fault injection, the request log,
//! compaction (410 Gone), discovery of CRDs, and the controllers' bookkeeping.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config as KubeConfig};
use rssc_sim_kube::{Config, FaultConfig, KubeServer};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn client(server: &KubeServer) -> Client {
    let kc = Kubeconfig::read_from(server.kubeconfig_path()).unwrap();
    Client::try_from(
        KubeConfig::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap()
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn kubectl(server: &KubeServer, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", server.kubeconfig_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): run the suite with `bash scripts/test`, which installs kubectl into .tools/bin, or put kubectl on PATH"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_apply_describe_patch_delete() {
    let server = Arc::new(KubeServer::start().await.unwrap());
    let s = server.clone();
    tokio::task::spawn_blocking(move || {
        let server = &*s;
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: c\n        image: registry.k8s.io/pause:3.9\n";
        let (ok, out) = kubectl(server, &["apply", "-f", "-"], Some(deployment));
        assert!(ok && out.contains("deployment.apps/web created"), "{out}");
        let (ok, out) = kubectl(server, &["apply", "-f", "-"], Some(deployment));
        assert!(ok && out.contains("unchanged"), "{out}");
        let (ok, out) = kubectl(server, &["get", "deployments"], None);
        assert!(ok && out.contains("web"), "{out}");
        let (ok, out) = kubectl(server, &["describe", "deployment", "web"], None);
        assert!(ok && out.contains("Name:") && out.contains("web"), "{out}");
        let (ok, out) = kubectl(server, &["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":1}}"#], None);
        assert!(ok && out.contains("patched"), "{out}");
        let (ok, out) = kubectl(server, &["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"], None);
        assert!(ok && out.trim() == "1", "{out}");
        let (ok, out) = kubectl(server, &["apply", "--server-side", "-f", "-"], Some(deployment));
        assert!(!ok && out.contains("conflict"), "server-side apply over kubectl patch's field conflicts: {out}");
        let (ok, out) = kubectl(server, &["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(deployment));
        assert!(ok && out.contains("serverside-applied"), "{out}");
        // CRDs and a custom resource.
        let crds = format!("{}/../../deploy/crds", env!("CARGO_MANIFEST_DIR"));
        let (ok, out) = kubectl(server, &["apply", "-f", &crds], None);
        assert!(ok && out.contains("autoscalesets.scaleset.actions.github.com created"), "{out}");
        let sample = "apiVersion: scaleset.actions.github.com/v1alpha1\nkind: AutoscaleSet\nmetadata:\n  name: s\nspec:\n  githubConfigURL: https://github.com/o/r\n  scaleSetName: s\n  maxRunners: 5\n  runnerImage: ghcr.io/actions/actions-runner:latest\n  personalAccessToken:\n    tokenSecretRef: {name: t, key: token}\n";
        let (ok, out) = kubectl(server, &["apply", "-f", "-"], Some(sample));
        assert!(ok && out.contains("autoscaleset.scaleset.actions.github.com/s created"), "{out}");
        let (ok, out) = kubectl(server, &["get", "asss"], None);
        assert!(ok && out.contains("SCALE SET"), "printer columns: {out}");
        let bad = sample.replace("maxRunners: 5", "maxRunners: 5\n  minRunners: 9");
        let (ok, out) = kubectl(server, &["apply", "-f", "-"], Some(&bad));
        assert!(!ok && out.contains("minRunners must not be greater than maxRunners"), "{out}");
        let (ok, out) = kubectl(server, &["delete", "deployment", "web"], None);
        assert!(ok && out.contains("deleted"), "{out}");
        let (ok, out) = kubectl(server, &["get", "deployment", "web"], None);
        assert!(!ok && out.contains("NotFound"), "{out}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn faults_and_request_log() {
    let server = KubeServer::start().await.unwrap();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    server.faults().set(FaultConfig {
        write_conflict_rate: 1.0,
        ..FaultConfig::default()
    });
    let e = cms.create(&PostParams::default(), &cm("b")).await.unwrap_err();
    assert!(matches!(e, kube::Error::Api(ref r) if r.code == 409), "{e}");
    cms.get("a").await.expect("reads are not affected");
    server.faults().set(FaultConfig {
        write_error_rate: 1.0,
        ..FaultConfig::default()
    });
    let e = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(ref r) if r.code == 500), "{e}");
    assert!(cms.get("b").await.is_err(), "a failed write changes nothing");

    server.faults().set(FaultConfig {
        latency: Duration::from_millis(200),
        ..FaultConfig::default()
    });
    let started = Instant::now();
    cms.get("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    server.faults().set(FaultConfig::default());

    let counts = server.faults().counts();
    assert_eq!(counts[&("create".to_owned(), "configmaps".to_owned())], 2);
    assert_eq!(counts[&("patch".to_owned(), "configmaps".to_owned())], 1);
    assert!(counts[&("get".to_owned(), "configmaps".to_owned())] >= 3);
    let codes: Vec<u16> = server
        .faults()
        .requests()
        .iter()
        .filter(|r| r.verb == "create")
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [201, 409]);

    // One particular write refused, a set number of times; others go through.
    server.faults().refuse("create", "configmaps", 409, 2);
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "z"}})),
    )
    .await
    .expect("a patch is not a create");
    for _ in 0..2 {
        let e = cms.create(&PostParams::default(), &cm("c")).await.unwrap_err();
        assert!(
            matches!(e, kube::Error::Api(ref r) if r.code == 409 && r.reason == "Conflict"),
            "{e}"
        );
    }
    assert!(
        cms.get_opt("c").await.unwrap().is_none(),
        "refused creates change nothing"
    );
    cms.create(&PostParams::default(), &cm("c"))
        .await
        .expect("the third create goes through");

    // Rejected as flow control rejects: 429 with Retry-After and a plain-text body.
    server.faults().refuse("create", "configmaps", 429, 1);
    let e = cms.create(&PostParams::default(), &cm("d")).await.unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(ref r) if r.code == 429 && r.message.contains("Too many requests")),
        "{e}"
    );
    assert!(
        cms.get_opt("d").await.unwrap().is_none(),
        "a rejected create changes nothing"
    );
    assert_eq!(server.faults().codes("create", "configmaps").last(), Some(&429));

    // A generated name that is taken, as an API server without RetryGenerateName answers.
    server.faults().refuse_generated_name("configmaps", 1);
    let mut generated = cm("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let e = cms.create(&PostParams::default(), &generated).await.unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(ref r) if r.code == 409 && r.reason == "AlreadyExists"
            && r.message.contains("\"gen-")),
        "{e}"
    );
    let made = cms.create(&PostParams::default(), &generated).await.unwrap();
    assert!(
        made.metadata.name.is_some_and(|n| n.starts_with("gen-")),
        "the next create gets a name"
    );
}

#[tokio::test]
async fn dropped_watch_streams_are_resumed_by_the_watcher() {
    let server = KubeServer::start().await.unwrap();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while stream.try_next().await.transpose().is_some() {}
    });
    tokio::time::timeout(WAIT, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    let watches_before = server
        .faults()
        .counts()
        .get(&("watch".to_owned(), "configmaps".to_owned()))
        .copied()
        .unwrap_or(0);
    server.faults().drop_watches();
    cms.create(&PostParams::default(), &cm("after-drop"))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if reader
                .state()
                .iter()
                .any(|c| c.metadata.name.as_deref() == Some("after-drop"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the reflector catches up after the dropped watch");
    let watches_after = server.faults().counts()[&("watch".to_owned(), "configmaps".to_owned())];
    assert!(watches_after > watches_before, "the watcher re-watched");
    task.abort();
}

#[tokio::test]
async fn compacted_resource_versions_are_gone() {
    let server = KubeServer::start_with(Config {
        history_limit: 5,
        ..Config::default()
    })
    .await
    .unwrap();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &cm("c0"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 1..10 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await
            .unwrap();
    }
    let mut stream = Box::pin(cms.watch(&WatchParams::default(), &first).await.unwrap());
    match tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(e.message.starts_with("too old resource version"), "{}", e.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // kube-runtime's watcher recovers by listing again.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let task = tokio::spawn(async move {
        let mut s = Box::pin(reflector(writer, watcher(cms, watcher::Config::default())).applied_objects());
        while s.try_next().await.transpose().is_some() {}
    });
    tokio::time::timeout(WAIT, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert!(reader.state().len() >= 10);
    task.abort();
}

#[tokio::test]
async fn discovery_serves_builtins_and_crds_until_deleted() {
    let server = KubeServer::start().await.unwrap();
    let client = client(&server).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    for (group, kind) in [
        ("", "Pod"),
        ("apps", "Deployment"),
        ("events.k8s.io", "Event"),
        ("coordination.k8s.io", "Lease"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
    ] {
        let g = discovery
            .get(group)
            .unwrap_or_else(|| panic!("group {group:?} missing"));
        assert!(
            g.recommended_resources().iter().any(|(r, _)| r.kind == kind),
            "{kind} missing"
        );
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in rssc_api::crd::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let group = discovery
        .get("scaleset.actions.github.com")
        .expect("our group is served");
    let (ar, caps) = group
        .recommended_kind("AutoscaleSet")
        .expect("AutoscaleSet is served");
    assert_eq!(ar.plural, "autoscalesets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    crds.delete(
        "autoscalesets.scaleset.actions.github.com",
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(
        discovery
            .get("scaleset.actions.github.com")
            .unwrap()
            .recommended_kind("AutoscaleSet")
            .is_none()
    );
    let lists = ListParams::default();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client);
    assert!(pods.list(&lists).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn scheduled_pods_wait_for_the_kubelet_to_finish_deletion() {
    let server = KubeServer::start().await.unwrap();
    let client = client(&server).await;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "default");
    tokio::time::timeout(WAIT, async {
        while accounts.get_opt("default").await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "default");
    let pod = |name: &str, node: Option<&str>| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"nodeName": node,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}))
        .unwrap()
    };
    // Unscheduled pods go at once.
    pods.create(&PostParams::default(), &pod("unscheduled", None))
        .await
        .unwrap();
    assert!(
        pods.delete("unscheduled", &DeleteParams::default())
            .await
            .unwrap()
            .is_left()
    );
    assert!(pods.get_opt("unscheduled").await.unwrap().is_none());
    // Pods on a node are marked with their grace period; the kubelet deletes them with 0.
    pods.create(&PostParams::default(), &pod("scheduled", Some("node-1")))
        .await
        .unwrap();
    pods.delete("scheduled", &DeleteParams::default()).await.unwrap();
    let marked = pods.get("scheduled").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "scheduled",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("scheduled").await.unwrap().is_none());
}

#[tokio::test]
async fn crd_selectable_fields_work_as_field_selectors() {
    let server = KubeServer::start().await.unwrap();
    let client = client(&server).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in rssc_api::crd::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let gvk = kube::api::GroupVersionKind::gvk("scaleset.actions.github.com", "v1alpha1", "AutoscaleSet");
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "autoscalesets");
    let sets: Api<kube::api::DynamicObject> = Api::namespaced_with(client, "default", &ar);
    for name in ["one", "two"] {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet", "metadata": {"name": name},
            "spec": {"githubConfigURL": "https://github.com/o/r", "scaleSetName": format!("set-{name}"), "maxRunners": 2,
                "runnerImage": "ghcr.io/actions/actions-runner:latest",
                "personalAccessToken": {"tokenSecretRef": {"name": "t", "key": "token"}}}
        }))
        .unwrap();
        sets.create(&PostParams::default(), &obj).await.unwrap();
    }
    let found = sets
        .list(&ListParams::default().fields("spec.scaleSetName=set-two"))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].metadata.name.as_deref(), Some("two"));
    let e = sets
        .list(&ListParams::default().fields("spec.maxRunners=2"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(ref r) if r.code == 400 && r.message.contains("field label not supported")),
        "{e}"
    );
}
