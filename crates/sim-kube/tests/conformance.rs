//! API behaviours the project relies on, written against the public API only (kube-rs). They
//! run against the test server by default and against a real cluster when
//! `RSSC_E2E_KUBECONFIG` points at one, so a divergence between the two fails here.

mod support;

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, PropagationPolicy, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, conditions, reflector, wait::await_condition, watcher};
use serde_json::{Value, json};
use support::{Env, WAIT, eventually, raw, run};

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn api_error(e: kube::Error) -> kube::core::ErrorResponse {
    match e {
        kube::Error::Api(r) => r,
        other => panic!("expected an API error, got {other}"),
    }
}

fn autoscale_sets(env: &Env) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("scaleset.actions.github.com", "v1alpha1", "AutoscaleSet");
    Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &ApiResource::from_gvk_with_plural(&gvk, "autoscalesets"),
    )
}

fn runner_sets(env: &Env) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("scaleset.actions.github.com", "v1alpha1", "RunnerSet");
    Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &ApiResource::from_gvk_with_plural(&gvk, "runnersets"),
    )
}

fn autoscale_set(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "scaleset.actions.github.com/v1alpha1",
        "kind": "AutoscaleSet",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("an AutoscaleSet")
}

fn valid_spec() -> Value {
    json!({
        "githubConfigURL": "https://github.com/my-org/my-repo",
        "scaleSetName": "my-runners",
        "maxRunners": 5,
        "runnerImage": "ghcr.io/actions/actions-runner:latest",
        "personalAccessToken": {"tokenSecretRef": {"name": "token", "key": "token"}}
    })
}

#[tokio::test]
async fn create_get_update_with_optimistic_concurrency() {
    run("crud", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let created = cms
            .create(&PostParams::default(), &cm("a", &[("k", "1")]))
            .await
            .unwrap();
        let meta = &created.metadata;
        assert!(meta.uid.as_ref().is_some_and(|u| !u.is_empty()));
        assert!(meta.creation_timestamp.is_some());
        let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();

        let exists = api_error(
            cms.create(&PostParams::default(), &cm("a", &[]))
                .await
                .unwrap_err(),
        );
        assert_eq!((exists.code, exists.reason.as_str()), (409, "AlreadyExists"));
        assert_eq!(exists.message, "configmaps \"a\" already exists");

        let missing = api_error(cms.get("nope").await.unwrap_err());
        assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
        assert_eq!(missing.message, "configmaps \"nope\" not found");

        let mut fresh = cms.get("a").await.unwrap();
        fresh.data.as_mut().unwrap().insert("k".into(), "2".into());
        let updated = cms.replace("a", &PostParams::default(), &fresh).await.unwrap();
        let rv2: u64 = updated
            .metadata
            .resource_version
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv2 > rv1, "resourceVersion must grow: {rv1} -> {rv2}");

        // Writing the stale copy again conflicts.
        let conflict = api_error(
            cms.replace("a", &PostParams::default(), &fresh)
                .await
                .unwrap_err(),
        );
        assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
        assert!(
            conflict.message.contains("the object has been modified"),
            "{}",
            conflict.message
        );

        // generateName.
        let mut generated = cm("", &[]);
        generated.metadata.name = None;
        generated.metadata.generate_name = Some("gen-".into());
        let g = cms.create(&PostParams::default(), &generated).await.unwrap();
        let name = g.metadata.name.unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

        // A missing namespace is NotFound.
        let elsewhere: Api<ConfigMap> = Api::namespaced(env.client.clone(), "rssc-no-such-namespace");
        let e = api_error(
            elsewhere
                .create(&PostParams::default(), &cm("x", &[]))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
        assert_eq!(e.message, "namespaces \"rssc-no-such-namespace\" not found");
    })
    .await;
}

#[tokio::test]
async fn list_with_selectors_and_pagination() {
    run("list", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        for (i, tier) in ["web", "web", "db", "cache", "db"].iter().enumerate() {
            let mut c = cm(&format!("c{i}"), &[]);
            c.metadata.labels = Some(BTreeMap::from([
                ("tier".to_owned(), (*tier).to_owned()),
                ("test".to_owned(), "list".to_owned()),
            ]));
            cms.create(&PostParams::default(), &c).await.unwrap();
        }
        let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
            let mut n: Vec<String> = l.items.into_iter().map(|c| c.metadata.name.unwrap()).collect();
            n.sort();
            n
        };
        assert_eq!(
            names(cms.list(&ListParams::default().labels("tier=web")).await.unwrap()),
            ["c0", "c1"]
        );
        assert_eq!(
            names(
                cms.list(&ListParams::default().labels("tier in (db,cache)"))
                    .await
                    .unwrap()
            ),
            ["c2", "c3", "c4"]
        );
        assert_eq!(
            names(
                cms.list(&ListParams::default().labels("test=list,tier notin (web,db)"))
                    .await
                    .unwrap()
            ),
            ["c3"]
        );
        assert_eq!(
            names(
                cms.list(&ListParams::default().labels("test,!missing,tier!=web"))
                    .await
                    .unwrap()
            ),
            ["c2", "c3", "c4"]
        );
        assert_eq!(
            names(
                cms.list(&ListParams::default().fields("metadata.name=c3"))
                    .await
                    .unwrap()
            ),
            ["c3"]
        );

        let mut seen = Vec::new();
        let mut params = ListParams::default().labels("test=list").limit(2);
        loop {
            let page = cms.list(&params).await.unwrap();
            assert!(page.items.len() <= 2);
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
            match next {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, ["c0", "c1", "c2", "c3", "c4"]);

        cms.delete_collection(&DeleteParams::default(), &ListParams::default().labels("tier=db"))
            .await
            .unwrap();
        assert_eq!(
            names(
                cms.list(&ListParams::default().labels("test=list"))
                    .await
                    .unwrap()
            ),
            ["c0", "c1", "c3"]
        );
    })
    .await;
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    run("patch", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        cms.create(&PostParams::default(), &cm("p", &[("a", "1"), ("b", "2")]))
            .await
            .unwrap();
        let merged = cms
            .patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
            )
            .await
            .unwrap();
        assert_eq!(
            merged.data.unwrap(),
            BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
        );

        let ops: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/data/b", "value": "2"},
            {"op": "replace", "path": "/data/b", "value": "20"}
        ]))
        .unwrap();
        let patched = cms
            .patch("p", &PatchParams::default(), &Patch::<()>::Json(ops))
            .await
            .unwrap();
        assert_eq!(patched.data.unwrap()["b"], "20");

        let failing: json_patch::Patch =
            serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "2"}])).unwrap();
        let e = api_error(
            cms.patch("p", &PatchParams::default(), &Patch::<()>::Json(failing))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 422, "{e:?}");

        // kube-runtime's finalizer helper tests a missing list against null before adding it.
        let add_finalizer: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/f"]}
        ]))
        .unwrap();
        let with_finalizer = cms
            .patch("p", &PatchParams::default(), &Patch::<()>::Json(add_finalizer))
            .await
            .unwrap();
        assert_eq!(with_finalizer.metadata.finalizers.unwrap(), ["example.com/f"]);
        cms.patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();

        // A stale resourceVersion in a merge patch is a precondition failure.
        let e = api_error(
            cms.patch(
                "p",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));

        // Strategic merge patch merges containers and env by name.
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "smp"}, "spec": {"containers": [
            {"name": "a", "image": "registry.k8s.io/pause:3.9", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "registry.k8s.io/pause:3.9"}
        ]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let patched = pods
            .patch(
                "smp",
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"labels": {"l": "v"}}})),
            )
            .await
            .unwrap();
        assert_eq!(patched.spec.unwrap().containers.len(), 2);
        assert_eq!(patched.metadata.labels.unwrap()["l"], "v");

        // Custom resources do not support strategic merge patch.
        let sets = autoscale_sets(&env);
        sets.create(&PostParams::default(), &autoscale_set("smp", valid_spec()))
            .await
            .unwrap();
        let e = api_error(
            sets.patch(
                "smp",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"maxRunners": 3}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_sets_merges_removes_and_conflicts() {
    run("apply", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let alice = PatchParams::apply("alice");
        let bob = PatchParams::apply("bob");
        let doc = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
        let created = cms.patch("ssa", &alice, &Patch::Apply(doc(json!({"a": "1", "b": "1"})))).await.unwrap();
        assert_eq!(created.data.unwrap().len(), 2);
        let managers: Vec<String> = created.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
        assert_eq!(managers, ["alice"]);

        // Bob applies another key: merged.
        let both = cms.patch("ssa", &bob, &Patch::Apply(doc(json!({"c": "1"})))).await.unwrap();
        assert_eq!(both.data.unwrap().keys().cloned().collect::<Vec<_>>(), ["a", "b", "c"]);

        // Bob changing alice's key conflicts and names her.
        let e = api_error(cms.patch("ssa", &bob, &Patch::Apply(doc(json!({"a": "2", "c": "1"})))).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        assert!(e.message.contains("conflict with \"alice\""), "{}", e.message);
        assert!(e.message.contains(".data.a"), "{}", e.message);

        // Forced, bob takes it over.
        let forced = cms.patch("ssa", &bob.clone().force(), &Patch::Apply(doc(json!({"a": "2", "c": "1"})))).await.unwrap();
        assert_eq!(forced.data.unwrap()["a"], "2");

        // Alice stops applying b: it is removed; a (now bob's) stays.
        let after = cms.patch("ssa", &alice, &Patch::Apply(doc(json!({})))).await.unwrap();
        assert_eq!(after.data.unwrap_or_default().keys().cloned().collect::<Vec<_>>(), ["a", "c"]);

        // A no-op apply does not change the resourceVersion.
        let again = cms.patch("ssa", &bob, &Patch::Apply(doc(json!({"a": "2", "c": "1"})))).await.unwrap();
        let again2 = cms.patch("ssa", &bob, &Patch::Apply(doc(json!({"a": "2", "c": "1"})))).await.unwrap();
        assert_eq!(again.metadata.resource_version, again2.metadata.resource_version);

        // Lists merge by key: two managers own different containers of one Deployment.
        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
        let dep = |containers: Value| json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": containers}}}
        });
        deployments.patch("d", &alice, &Patch::Apply(dep(json!([{"name": "a", "image": "registry.k8s.io/pause:3.9"}])))).await.unwrap();
        let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "registry.k8s.io/pause:3.9"}]}}}});
        let merged = deployments.patch("d", &bob, &Patch::Apply(sidecar)).await.unwrap();
        let mut names: Vec<String> =
            merged.spec.unwrap().template.spec.unwrap().containers.into_iter().map(|c| c.name).collect();
        names.sort();
        assert_eq!(names, ["a", "s"]);
    })
    .await;
}

#[tokio::test]
async fn status_subresource_and_generation() {
    run("status", |env| async move {
        let sets = autoscale_sets(&env);
        let mut obj = autoscale_set("st", valid_spec());
        obj.data["status"] = json!({"phase": "Error"});
        let created = sets.create(&PostParams::default(), &obj).await.unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert!(
            created
                .data
                .get("status")
                .is_none_or(|s| s.get("phase").is_none()),
            "status is not set on create: {:?}",
            created.data
        );
        // Defaults from the schema are applied.
        assert_eq!(created.data["spec"]["minRunners"], 0);

        let with_status = sets
            .patch_status(
                "st",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Active"}, "spec": {"maxRunners": 9}})),
            )
            .await
            .unwrap();
        assert_eq!(with_status.data["status"]["phase"], "Active");
        assert_eq!(
            with_status.data["spec"]["maxRunners"], 5,
            "a status write ignores spec"
        );
        assert_eq!(
            with_status.metadata.generation,
            Some(1),
            "a status write does not bump generation"
        );

        let spec_write = sets
            .patch(
                "st",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"maxRunners": 7}, "status": {"phase": "Error"}})),
            )
            .await
            .unwrap();
        assert_eq!(spec_write.data["spec"]["maxRunners"], 7);
        assert_eq!(
            spec_write.data["status"]["phase"], "Active",
            "a main-resource write ignores status"
        );
        assert_eq!(spec_write.metadata.generation, Some(2));

        let labels_only = sets
            .patch(
                "st",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await
            .unwrap();
        assert_eq!(
            labels_only.metadata.generation,
            Some(2),
            "metadata changes do not bump generation"
        );

        // Built-in status too: a Deployment's spec through /status is ignored.
        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "g"}, "spec": {"replicas": 0,
            "selector": {"matchLabels": {"app": "g"}}, "template": {"metadata": {"labels": {"app": "g"}},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}}}))
        .unwrap();
        let d = deployments.create(&PostParams::default(), &d).await.unwrap();
        assert_eq!(d.metadata.generation, Some(1));
        let scaled = deployments
            .patch(
                "g",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 0, "paused": true}})),
            )
            .await
            .unwrap();
        assert_eq!(scaled.metadata.generation, Some(2));
    })
    .await;
}

#[tokio::test]
async fn crd_schema_and_cel_rejections_carry_the_api_server_message() {
    run("cel", |env| async move {
        let sets = autoscale_sets(&env);
        let path = format!("/apis/scaleset.actions.github.com/v1alpha1/namespaces/{}/autoscalesets", env.ns);
        let post = |body: Value| {
            let client = env.client.clone();
            let path = path.clone();
            async move { raw(&client, "POST", &path, "application/json", &body).await }
        };
        let mut spec = valid_spec();
        spec["minRunners"] = json!(6);
        let (code, status) = post(serde_json::to_value(autoscale_set("minmax", spec)).unwrap()).await;
        assert_eq!(code, 422, "{status}");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["kind"], "AutoscaleSet");
        assert_eq!(status["details"]["name"], "minmax");
        let message = status["message"].as_str().unwrap();
        assert!(message.starts_with("AutoscaleSet.scaleset.actions.github.com \"minmax\" is invalid: "), "{message}");
        assert!(message.contains("spec: Invalid value: \"object\": minRunners must not be greater than maxRunners"), "{message}");
        let causes = status["details"]["causes"].as_array().unwrap();
        assert!(causes.iter().any(|c| c["field"] == "spec" && c["reason"] == "FieldValueInvalid"), "{causes:?}");

        let mut spec = valid_spec();
        spec["minRunners"] = json!(-1);
        let (code, status) = post(serde_json::to_value(autoscale_set("negative", spec)).unwrap()).await;
        assert_eq!(code, 422);
        assert!(status["message"].as_str().unwrap().contains("spec.minRunners: Invalid value: -1: spec.minRunners in body should be greater than or equal to 0"), "{status}");
        assert!(status["details"]["causes"].as_array().unwrap().iter().any(|c| c["field"] == "spec.minRunners"));

        let mut spec = valid_spec();
        spec["githubConfigURL"] = json!("http://github.com/org");
        let (code, status) = post(serde_json::to_value(autoscale_set("url", spec)).unwrap()).await;
        assert_eq!(code, 422);
        assert!(status["message"].as_str().unwrap().contains("githubConfigURL must be an https URL"), "{status}");

        let mut spec = valid_spec();
        spec.as_object_mut().unwrap().remove("runnerImage");
        let (code, status) = post(serde_json::to_value(autoscale_set("required", spec)).unwrap()).await;
        assert_eq!(code, 422);
        assert!(status["message"].as_str().unwrap().contains("spec.runnerImage: Required value"), "{status}");

        let long = "a".repeat(64);
        let (code, status) = post(serde_json::to_value(autoscale_set(&long, valid_spec())).unwrap()).await;
        assert_eq!(code, 422);
        assert!(status["message"].as_str().unwrap().contains("AutoscaleSet names are at most 63 characters"), "{status}");

        // Unknown fields are pruned (fieldValidation unset: warn, not reject).
        let mut spec = valid_spec();
        spec["noSuchField"] = json!(1);
        let created = sets.create(&PostParams::default(), &autoscale_set("pruned", spec)).await.unwrap();
        assert!(created.data["spec"].get("noSuchField").is_none());

        // Transition rule: githubConfigURL is immutable once status.scaleSetID is set.
        sets.patch_status("pruned", &PatchParams::default(), &Patch::Merge(json!({"status": {"scaleSetID": 7}}))).await.unwrap();
        let e = api_error(
            sets.patch("pruned", &PatchParams::default(), &Patch::Merge(json!({"spec": {"githubConfigURL": "https://github.com/other"}})))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(e.message.contains("githubConfigURL cannot change once the scale set is registered"), "{}", e.message);

        // Transition rule on a nested field: RunnerSet.spec.autoscaleSetRef is immutable.
        let runner_sets = runner_sets(&env);
        let rs: DynamicObject = serde_json::from_value(json!({"apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "RunnerSet",
            "metadata": {"name": "rs"}, "spec": {"autoscaleSetRef": {"name": "a"}}})).unwrap();
        runner_sets.create(&PostParams::default(), &rs).await.unwrap();
        let e = api_error(runner_sets.patch("rs", &PatchParams::default(), &Patch::Merge(json!({"spec": {"autoscaleSetRef": {"name": "b"}}}))).await.unwrap_err());
        assert_eq!(e.code, 422);
        assert!(e.message.contains("autoscaleSetRef is immutable"), "{}", e.message);
    })
    .await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    run("finalizers", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let mut c = cm("f", &[]);
        c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        cms.create(&PostParams::default(), &c).await.unwrap();
        cms.delete("f", &DeleteParams::default()).await.unwrap();
        let held = cms.get("f").await.unwrap();
        assert!(held.metadata.deletion_timestamp.is_some());
        // No new finalizers while deleting.
        let e = api_error(
            cms.patch(
                "f",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(e.code, 422);
        let uid = held.metadata.uid.clone().unwrap();
        cms.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        tokio::time::timeout(
            WAIT,
            await_condition(cms.clone(), "f", conditions::is_deleted(&uid)),
        )
        .await
        .expect("deleted in time")
        .unwrap();
    })
    .await;
}

#[tokio::test]
async fn garbage_collection_background_foreground_orphan() {
    run("gc", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let owned_by = |name: &str, owner: &ConfigMap| {
            let mut c = cm(name, &[]);
            c.metadata.owner_references = Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: owner.metadata.name.clone().unwrap(),
                    uid: owner.metadata.uid.clone().unwrap(),
                    block_owner_deletion: Some(true),
                    controller: Some(true),
                },
            ]);
            c
        };
        // Background: the dependent goes after the owner.
        let owner = cms
            .create(&PostParams::default(), &cm("owner-bg", &[]))
            .await
            .unwrap();
        let dep = cms
            .create(&PostParams::default(), &owned_by("dep-bg", &owner))
            .await
            .unwrap();
        cms.delete("owner-bg", &DeleteParams::background()).await.unwrap();
        tokio::time::timeout(
            WAIT,
            await_condition(
                cms.clone(),
                "dep-bg",
                conditions::is_deleted(&dep.metadata.uid.unwrap()),
            ),
        )
        .await
        .expect("dependent collected in time")
        .unwrap();

        // Foreground: the owner waits for its dependents.
        let owner = cms
            .create(&PostParams::default(), &cm("owner-fg", &[]))
            .await
            .unwrap();
        let mut held_dep = owned_by("dep-fg", &owner);
        held_dep.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        cms.create(&PostParams::default(), &held_dep).await.unwrap();
        cms.delete("owner-fg", &DeleteParams::foreground()).await.unwrap();
        let waiting = cms.get("owner-fg").await.unwrap();
        assert!(
            waiting
                .metadata
                .finalizers
                .unwrap_or_default()
                .contains(&"foregroundDeletion".to_owned())
        );
        eventually("the dependent to be marked for deletion", || async {
            cms.get("dep-fg")
                .await
                .is_ok_and(|d| d.metadata.deletion_timestamp.is_some())
        })
        .await;
        assert!(
            cms.get("owner-fg").await.is_ok(),
            "the owner stays while a dependent remains"
        );
        cms.patch(
            "dep-fg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        tokio::time::timeout(
            WAIT,
            await_condition(
                cms.clone(),
                "owner-fg",
                conditions::is_deleted(&owner.metadata.uid.unwrap()),
            ),
        )
        .await
        .expect("owner deleted in time")
        .unwrap();

        // Orphan: the dependent stays, without the owner reference.
        let owner = cms
            .create(&PostParams::default(), &cm("owner-or", &[]))
            .await
            .unwrap();
        cms.create(&PostParams::default(), &owned_by("dep-or", &owner))
            .await
            .unwrap();
        let orphan = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..DeleteParams::default()
        };
        cms.delete("owner-or", &orphan).await.unwrap();
        tokio::time::timeout(
            WAIT,
            await_condition(
                cms.clone(),
                "owner-or",
                conditions::is_deleted(&owner.metadata.uid.unwrap()),
            ),
        )
        .await
        .expect("owner deleted in time")
        .unwrap();
        let kept = cms.get("dep-or").await.unwrap();
        assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());
    })
    .await;
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_and_sends_bookmarks() {
    run("watch", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let list = cms.list(&ListParams::default()).await.unwrap();
        let start = list.metadata.resource_version.unwrap();
        cms.create(&PostParams::default(), &cm("w", &[("v", "1")]))
            .await
            .unwrap();
        let modified = cms
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "2"}})),
            )
            .await
            .unwrap();
        let mid = modified.metadata.resource_version.clone().unwrap();
        cms.delete("w", &DeleteParams::default()).await.unwrap();

        let events = |from: String| {
            let cms = cms.clone();
            async move {
                let stream = cms
                    .watch(
                        &WatchParams::default().fields("metadata.name=w").timeout(30),
                        &from,
                    )
                    .await
                    .unwrap();
                let mut stream = Box::pin(stream);
                let mut seen = Vec::new();
                while seen.len() < 3 {
                    match tokio::time::timeout(WAIT, stream.next())
                        .await
                        .expect("watch event in time")
                    {
                        Some(Ok(WatchEvent::Added(c))) => {
                            seen.push(format!("ADDED {}", c.metadata.name.unwrap()))
                        }
                        Some(Ok(WatchEvent::Modified(c))) => {
                            seen.push(format!("MODIFIED {}", c.data.unwrap()["v"]))
                        }
                        Some(Ok(WatchEvent::Deleted(c))) => {
                            seen.push(format!("DELETED {}", c.metadata.name.unwrap()));
                            break;
                        }
                        Some(Ok(WatchEvent::Bookmark(_))) => {}
                        other => panic!("unexpected watch item {other:?}"),
                    }
                }
                seen
            }
        };
        assert_eq!(
            events(start.clone()).await,
            ["ADDED w", "MODIFIED 2", "DELETED w"]
        );
        assert_eq!(events(mid).await, ["DELETED w"]);

        // Bookmarks carry a resource version to resume from.
        let stream = cms
            .watch(&WatchParams::default().timeout(120), &start)
            .await
            .unwrap();
        let mut stream = Box::pin(stream);
        let bookmark = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            loop {
                match stream.next().await {
                    Some(Ok(WatchEvent::Bookmark(b))) => return b,
                    Some(Ok(_)) => {}
                    other => panic!("watch ended without a bookmark: {other:?}"),
                }
            }
        })
        .await
        .expect("a bookmark within 120s");
        assert!(bookmark.metadata.resource_version.parse::<u64>().is_ok());
    })
    .await;
}

#[tokio::test]
async fn kube_runtime_watcher_and_reflector_follow_changes() {
    run("watcher", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let labelled = |name: &str| {
            let mut c = cm(name, &[]);
            c.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "watched".to_owned())]));
            c
        };
        cms.create(&PostParams::default(), &labelled("before"))
            .await
            .unwrap();
        for streaming in [false, true] {
            let (reader, writer) = reflector::store::<ConfigMap>();
            let mut config = watcher::Config::default().labels("app=watched");
            if streaming {
                config = config.streaming_lists();
            }
            let stream = reflector(writer, watcher(cms.clone(), config)).applied_objects();
            let task = tokio::spawn(async move {
                let mut stream = Box::pin(stream);
                while let Some(item) = stream.try_next().await.transpose() {
                    item.expect("watcher stream item");
                }
            });
            tokio::time::timeout(WAIT, reader.wait_until_ready())
                .await
                .expect("reflector ready in time")
                .unwrap();
            let name = format!("during-{streaming}");
            cms.create(&PostParams::default(), &labelled(&name))
                .await
                .unwrap();
            cms.create(
                &PostParams::default(),
                &cm(&format!("unlabelled-{streaming}"), &[]),
            )
            .await
            .unwrap();
            let has = |n: &str| {
                reader
                    .state()
                    .iter()
                    .any(|c| c.metadata.name.as_deref() == Some(n))
            };
            eventually("the reflector to see the new object", || async {
                has(&name) && has("before")
            })
            .await;
            assert!(!reader.state().iter().any(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("unlabelled"))
            }));
            cms.delete(&name, &DeleteParams::default()).await.unwrap();
            eventually("the reflector to drop the deleted object", || async {
                !has(&name)
            })
            .await;
            task.abort();
        }
    })
    .await;
}

#[tokio::test]
async fn deployments_roll_out_replica_sets_and_pods() {
    run("deploy", |env| async move {
        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
        let replica_sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), &env.ns);
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}}}))
        .unwrap();
        deployments.create(&PostParams::default(), &d).await.unwrap();
        let owned_pods = |hash: String| {
            let pods = pods.clone();
            async move {
                pods.list(&ListParams::default().labels(&format!("app=web,pod-template-hash={hash}")))
                    .await
                    .unwrap()
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count()
            }
        };
        let current_hash = || async {
            replica_sets
                .list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
                .filter_map(|r| r.metadata.labels.and_then(|l| l.get("pod-template-hash").cloned()))
                .next()
        };
        eventually("two pods of the first ReplicaSet", || async {
            match current_hash().await {
                Some(h) => owned_pods(h).await == 2,
                None => false,
            }
        })
        .await;
        let first = current_hash().await.unwrap();
        deployments
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}})))
            .await
            .unwrap();
        eventually("a new ReplicaSet with two pods", || async {
            match current_hash().await {
                Some(h) if h != first => owned_pods(h).await == 2,
                _ => false,
            }
        })
        .await;
        let rs_list = replica_sets.list(&ListParams::default().labels("app=web")).await.unwrap();
        assert_eq!(rs_list.items.len(), 2);
        eventually("the Deployment status to observe the new generation", || async {
            let dep = deployments.get("web").await.unwrap();
            dep.status.and_then(|s| s.observed_generation) == dep.metadata.generation
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn namespace_deletion_removes_its_contents() {
    run("nsdel", |env| async move {
        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        let inner = support::unique("rssc-conf-inner");
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": inner}})).unwrap(),
            )
            .await
            .unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &inner);
        cms.create(&PostParams::default(), &cm("content", &[]))
            .await
            .unwrap();
        // A finalizer on its content keeps the namespace Terminating until we remove it.
        let mut held = cm("held", &[]);
        held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        cms.create(&PostParams::default(), &held).await.unwrap();
        let ns = namespaces.delete(&inner, &DeleteParams::default()).await.unwrap();
        let ns = ns
            .left()
            .expect("a namespace is marked for deletion, not deleted at once");
        assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
        let e = api_error(
            cms.create(&PostParams::default(), &cm("late", &[]))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        eventually("the namespace's content to be deleted", || async {
            cms.get("content").await.is_err()
                && cms
                    .get("held")
                    .await
                    .is_ok_and(|h| h.metadata.deletion_timestamp.is_some())
        })
        .await;
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
        let uid = ns.metadata.uid.unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(180),
            await_condition(namespaces.clone(), &inner, conditions::is_deleted(&uid)),
        )
        .await
        .expect("namespace gone in time")
        .unwrap();
        assert_eq!(api_error(cms.get("content").await.unwrap_err()).code, 404);
    })
    .await;
}

#[tokio::test]
async fn events_written_in_one_group_are_read_in_both() {
    run("events", |env| async move {
        let new_events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(env.client.clone(), &env.ns);
        let core_events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(env.client.clone(), &env.ns);
        let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
            "metadata": {"name": "ev1"},
            "eventTime": rssc_sim_kube::util::now_rfc3339_micros(),
            "reportingController": "rssc.dev/conformance",
            "reportingInstance": "conformance-1",
            "action": "Testing",
            "reason": "Tested",
            "type": "Normal",
            "note": "hello from events.k8s.io",
            "regarding": {"apiVersion": "v1", "kind": "ConfigMap", "name": "subject", "namespace": env.ns},
        }))
        .unwrap();
        new_events.create(&PostParams::default(), &event).await.unwrap();
        let core = core_events
            .list(&ListParams::default().fields("involvedObject.name=subject,involvedObject.kind=ConfigMap"))
            .await
            .unwrap();
        assert_eq!(core.items.len(), 1);
        assert_eq!(core.items[0].message.as_deref(), Some("hello from events.k8s.io"));
        assert_eq!(
            core.items[0].reporting_component.as_deref(),
            Some("rssc.dev/conformance")
        );
        let back = new_events
            .list(&ListParams::default().fields("regarding.name=subject"))
            .await
            .unwrap();
        assert_eq!(back.items.len(), 1);
        assert_eq!(back.items[0].note.as_deref(), Some("hello from events.k8s.io"));
        assert!(
            new_events
                .list(&ListParams::default().fields("regarding.name=other"))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        // kube-runtime's Recorder creates, then merge-patches a series onto, events.k8s.io Events.
        let recorder = kube::runtime::events::Recorder::new(
            env.client.clone(),
            kube::runtime::events::Reporter {
                controller: "rssc-conformance".into(),
                instance: Some("test".into()),
            },
        );
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some("recorded".into()),
            namespace: Some(env.ns.clone()),
            ..Default::default()
        };
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: "Repeated".into(),
            note: Some("it happened".into()),
            action: "Testing".into(),
            secondary: None,
        };
        recorder.publish(&event, &reference).await.unwrap();
        recorder.publish(&event, &reference).await.unwrap();
        let recorded = core_events
            .list(&ListParams::default().fields("involvedObject.name=recorded"))
            .await
            .unwrap();
        assert_eq!(recorded.items.len(), 1);
        let recorded = &recorded.items[0];
        assert_eq!(recorded.message.as_deref(), Some("it happened"));
        assert_eq!(recorded.type_.as_deref(), Some("Warning"));
        assert_eq!(recorded.series.as_ref().and_then(|s| s.count), Some(2));
    })
    .await;
}

#[tokio::test]
async fn delete_returns_status_or_the_object_like_the_api_server() {
    run("delresp", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        cms.create(&PostParams::default(), &cm("plain", &[]))
            .await
            .unwrap();
        let gone = cms.delete("plain", &DeleteParams::default()).await.unwrap();
        assert!(gone.is_right(), "a deleted ConfigMap is answered with a Status");
        let mut held = cm("held", &[]);
        held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        cms.create(&PostParams::default(), &held).await.unwrap();
        let pending = cms.delete("held", &DeleteParams::default()).await.unwrap();
        let obj = pending.left().expect("an object held by a finalizer is returned");
        assert!(obj.metadata.deletion_timestamp.is_some());
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();

        let sets = autoscale_sets(&env);
        sets.create(&PostParams::default(), &autoscale_set("gone", valid_spec()))
            .await
            .unwrap();
        let deleted = sets.delete("gone", &DeleteParams::default()).await.unwrap();
        assert!(deleted.is_left(), "a deleted custom resource is returned");
    })
    .await;
}

#[tokio::test]
async fn pods_are_admitted_and_mostly_immutable() {
    run("pods", |env| async move {
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
        let pod = |name: &str, extra: Value| -> Pod {
            let mut spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]});
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
        };
        let e = api_error(
            pods.create(
                &PostParams::default(),
                &pod("nosa", json!({"serviceAccountName": "missing"})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert!(
            e.message.contains("serviceaccount \"missing\" not found"),
            "{}",
            e.message
        );

        let default = pods
            .create(&PostParams::default(), &pod("token", json!({})))
            .await
            .unwrap();
        let spec = default.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        let token_volume = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name.starts_with("kube-api-access-"));
        let token_volume = token_volume
            .expect("the ServiceAccount token is mounted by default")
            .name;
        let mounts = spec.containers[0].volume_mounts.clone().unwrap_or_default();
        assert!(mounts.iter().any(
            |m| m.name == token_volume && m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"
        ));

        let no_token = pods
            .create(
                &PostParams::default(),
                &pod("notoken", json!({"automountServiceAccountToken": false})),
            )
            .await
            .unwrap();
        assert!(
            no_token
                .spec
                .unwrap()
                .volumes
                .unwrap_or_default()
                .iter()
                .all(|v| !v.name.starts_with("kube-api-access-"))
        );

        let e = api_error(
            pods.patch(
                "notoken",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"containers": [{"name": "c", "args": ["x"]}]}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(
            e.message.contains("pod updates may not change fields other than"),
            "{}",
            e.message
        );
        let image = pods
            .patch(
                "notoken",
                &PatchParams::default(),
                &Patch::Strategic(
                    json!({"spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            image.spec.unwrap().containers[0].image.as_deref(),
            Some("registry.k8s.io/pause:3.10")
        );

        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        let ns = namespaces.get(&env.ns).await.unwrap();
        assert_eq!(ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"], env.ns);
    })
    .await;
}

#[tokio::test]
async fn secrets_fold_string_data_and_immutable_fields_stay() {
    run("immutable", |env| async move {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), &env.ns);
        let s: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"token": "hunter2"}})).unwrap();
        let created = secrets.create(&PostParams::default(), &s).await.unwrap();
        assert!(created.string_data.is_none());
        assert_eq!(created.data.unwrap()["token"].0, b"hunter2");
        assert_eq!(created.type_.as_deref(), Some("Opaque"));

        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "sel"}, "spec": {"replicas": 0,
            "selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "a", "b": "c"}},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}}}))
        .unwrap();
        deployments.create(&PostParams::default(), &d).await.unwrap();
        let e = api_error(
            deployments
                .patch("sel", &PatchParams::default(), &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"b": "c"}}}})))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(e.message.contains("spec.selector") && e.message.contains("field is immutable"), "{}", e.message);

        let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(env.client.clone(), &env.ns);
        let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({"metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": env.ns}]}))
        .unwrap();
        bindings.create(&PostParams::default(), &rb).await.unwrap();
        let e = api_error(
            bindings.patch("rb", &PatchParams::default(), &Patch::Merge(json!({"roleRef": {"name": "r2"}}))).await.unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(e.message.contains("cannot change roleRef"), "{}", e.message);
    })
    .await;
}

#[tokio::test]
async fn token_binding_and_eviction_subresources() {
    run("subres", |env| async move {
        let ns = env.ns.clone();
        let (code, token) = raw(
            &env.client,
            "POST",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/default/token"),
            "application/json",
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}),
        )
        .await;
        assert_eq!(code, 201, "{token}");
        assert_eq!(token["kind"], "TokenRequest");
        assert!(token["status"]["token"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(token["status"]["expirationTimestamp"].is_string());

        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(env.client.clone(), &ns);
        let request: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 600}})).unwrap();
        let typed = accounts.create_token_request("default", &PostParams::default(), &request).await.unwrap();
        assert!(typed.status.is_some_and(|s| !s.token.is_empty()));

        // A pod no scheduler picks up, bound by hand as a scheduler would.
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
        pods.create(&PostParams::default(), &unscheduled_pod("bound")).await.unwrap();
        let (code, status) = bind(&env.client, &ns, "bound").await;
        assert_eq!(code, 201, "{status}");
        let bound = pods.get("bound").await.unwrap();
        assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("rssc-conformance-node"));
        let conditions = bound.status.unwrap().conditions.unwrap_or_default();
        assert!(conditions.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
        let (code, _) = bind(&env.client, &ns, "bound").await;
        assert_eq!(code, 409, "a bound pod cannot be bound again");

        // Evicting a pod on a node deletes it gracefully; the kubelet (here: us) finishes it.
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "bound", "namespace": ns}});
        let (code, status) =
            raw(&env.client, "POST", &format!("/api/v1/namespaces/{ns}/pods/bound/eviction"), "application/json", &eviction).await;
        assert_eq!(code, 201, "{status}");
        let evicted = pods.get("bound").await.unwrap();
        assert!(evicted.metadata.deletion_timestamp.is_some());
        let uid = evicted.metadata.uid.unwrap();
        pods.delete("bound", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await.unwrap();
        tokio::time::timeout(WAIT, await_condition(pods.clone(), "bound", conditions::is_deleted(&uid)))
            .await
            .expect("pod deleted in time")
            .unwrap();

        // A pod on a node that already ended has nothing left to stop: it goes at once.
        pods.create(&PostParams::default(), &unscheduled_pod("done")).await.unwrap();
        let (code, status) = bind(&env.client, &ns, "done").await;
        assert_eq!(code, 201, "{status}");
        pods.patch_status("done", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Succeeded"}})))
            .await
            .unwrap();
        pods.delete("done", &DeleteParams::default()).await.unwrap();
        assert!(
            pods.get_opt("done").await.unwrap().is_none(),
            "deleted without a grace period"
        );
    })
    .await;
}

/// A pod that no scheduler picks up.
fn unscheduled_pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
        "schedulerName": "rssc-no-such-scheduler", "automountServiceAccountToken": false,
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}))
    .unwrap()
}

/// Binds the pod `name` to the conformance node by hand, as a scheduler would: the answer's
/// status code and body.
async fn bind(client: &kube::Client, ns: &str, name: &str) -> (u16, Value) {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "rssc-conformance-node"}});
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}/binding");
    raw(client, "POST", &path, "application/json", &binding).await
}

#[tokio::test]
async fn watch_timeout_ends_the_stream_and_unknown_field_selectors_are_rejected() {
    run("timeout", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let rv = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let stream = cms.watch(&WatchParams::default().timeout(1), &rv).await.unwrap();
        let mut stream = Box::pin(stream);
        tokio::time::timeout(WAIT, async {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(WatchEvent::Bookmark(_)) => {}
                    other => panic!("nothing happens in this namespace, got {other:?}"),
                }
            }
        })
        .await
        .expect("the watch ends after timeoutSeconds");

        let e = api_error(
            cms.list(&ListParams::default().fields("spec.nope=1"))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    })
    .await;
}

#[tokio::test]
async fn server_side_apply_on_the_status_subresource() {
    run("ssastatus", |env| async move {
        let sets = autoscale_sets(&env);
        sets.create(&PostParams::default(), &autoscale_set("s", valid_spec())).await.unwrap();
        let status = |status: Value| {
            json!({"apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet", "metadata": {"name": "s"}, "status": status})
        };
        let condition = json!({"type": "Ready", "status": "True", "reason": "Registered", "message": "ok",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1});
        let ctl = PatchParams::apply("rssc-controller").force();
        let applied = sets
            .patch_status("s", &ctl, &Patch::Apply(status(json!({"phase": "Active", "scaleSetID": 3, "conditions": [condition]}))))
            .await
            .unwrap();
        assert_eq!(applied.data["status"]["phase"], "Active");
        assert_eq!(applied.data["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(applied.metadata.generation, Some(1));
        let managed = applied.metadata.managed_fields.unwrap_or_default();
        assert!(managed.iter().any(|m| m.manager.as_deref() == Some("rssc-controller")
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref() == Some("status")));

        // Applying the spec does not touch the status, and the other way round.
        let spec_apply = json!({"apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "AutoscaleSet",
            "metadata": {"name": "s"}, "spec": {"githubConfigURL": "https://github.com/my-org/my-repo", "scaleSetName": "my-runners",
            "maxRunners": 7, "runnerImage": "ghcr.io/actions/actions-runner:latest",
            "personalAccessToken": {"tokenSecretRef": {"name": "token", "key": "token"}}}});
        let after_spec = sets.patch("s", &PatchParams::apply("user").force(), &Patch::Apply(spec_apply)).await.unwrap();
        assert_eq!(after_spec.data["status"]["phase"], "Active");
        assert_eq!(after_spec.data["spec"]["maxRunners"], 7);

        // The controller stops applying the condition: it goes away.
        let dropped = sets.patch_status("s", &ctl, &Patch::Apply(status(json!({"phase": "Active", "scaleSetID": 3})))).await.unwrap();
        assert!(dropped.data["status"].get("conditions").is_none_or(|c| c.as_array().is_some_and(Vec::is_empty)), "{:?}", dropped.data["status"]);
        assert_eq!(dropped.data["status"]["scaleSetID"], 3);
    })
    .await;
}

#[tokio::test]
async fn metadata_only_reads_carry_no_spec_or_data() {
    run("metadata", |env| async move {
        let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
        let mut labelled = cm("meta", &[("secret-ish", "payload")]);
        labelled.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "meta".to_owned())]));
        cms.create(&PostParams::default(), &labelled).await.unwrap();

        // What kube-runtime's metadata watcher and `get_metadata`/`list_metadata` ask for.
        let accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        let path = format!("/api/v1/namespaces/{}/configmaps/meta", env.ns);
        let request = http::Request::builder()
            .uri(&path)
            .header("accept", accept)
            .body(Vec::new())
            .unwrap();
        let got: Value = env.client.request(request).await.unwrap();
        assert_eq!(got["kind"], "PartialObjectMetadata");
        assert_eq!(got["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(got["metadata"]["labels"]["app"], "meta");
        assert!(got.get("data").is_none(), "metadata only: {got}");

        let one = cms.get_metadata("meta").await.unwrap();
        assert_eq!(one.metadata.name.as_deref(), Some("meta"));
        let list = cms
            .list_metadata(&ListParams::default().labels("app=meta"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["app"], "meta");

        // A metadata watch sees every change of the object, metadata only.
        let mut events = Box::pin(
            kube::runtime::metadata_watcher(cms.clone(), watcher::Config::default().labels("app=meta"))
                .applied_objects(),
        );
        let first = tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("the existing object in time")
            .unwrap()
            .unwrap();
        assert_eq!(first.metadata.name.as_deref(), Some("meta"));
        cms.patch(
            "meta",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"secret-ish": "changed"}})),
        )
        .await
        .unwrap();
        let changed = tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("the change in time")
            .unwrap()
            .unwrap();
        assert_ne!(
            changed.metadata.resource_version, first.metadata.resource_version,
            "a data change reaches a metadata watcher"
        );
    })
    .await;
}
