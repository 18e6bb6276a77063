//! The generated CRDs: identity, printer columns, structural schemas, the validation rules they
//! carry and what those rules accept, and that `deploy/crds/` matches a fresh generation.

mod support;

use serde_json::{Value, json};
use support::{crds, eval_rule, is_transition_rule, node, rules, schema_of};

#[test]
fn every_crd_is_namespaced_with_status_short_names_and_categories() {
    let expected = [
        ("AutoscaleSet", "autoscalesets", "asss"),
        ("RunnerSet", "runnersets", "rns"),
        ("EphemeralRunnerSet", "ephemeralrunnersets", "ers"),
        ("EphemeralRunner", "ephemeralrunners", "er"),
    ];
    let crds = crds();
    assert_eq!(crds.len(), expected.len());
    for (crd, (kind, plural, short)) in crds.iter().zip(expected) {
        let spec = &crd["spec"];
        assert_eq!(spec["group"], "scaleset.actions.github.com");
        assert_eq!(
            crd["metadata"]["name"],
            format!("{plural}.scaleset.actions.github.com")
        );
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["kind"], kind);
        assert_eq!(spec["names"]["plural"], plural);
        assert_eq!(spec["names"]["shortNames"], json!([short]));
        assert_eq!(spec["names"]["categories"], json!(["github", "scaleset"]));
        let versions = spec["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0]["name"], "v1alpha1");
        assert_eq!(versions[0]["served"], true);
        assert_eq!(versions[0]["storage"], true);
        assert_eq!(versions[0]["subresources"]["status"], json!({}));
    }
}

#[test]
fn printer_columns_answer_is_it_working_and_how_many_runners() {
    for crd in crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let columns: Vec<String> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"].is_null())
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        let wanted: &[&str] = match kind.as_str() {
            "AutoscaleSet" => &["Ready", "Phase", "Current", "Desired", "Age"],
            "RunnerSet" => &[
                "Ready", "Listener", "Desired", "Current", "Idle", "Busy", "Pending", "Age",
            ],
            "EphemeralRunnerSet" => &["Desired", "Current", "Idle", "Busy", "Pending", "Failed", "Age"],
            "EphemeralRunner" => &["Phase", "Runner ID", "Repository", "Age"],
            other => panic!("unexpected kind {other}"),
        };
        for column in wanted {
            assert!(
                columns.iter().any(|c| c == column),
                "{kind} lacks column {column}: {columns:?}"
            );
        }
    }
}

/// Kubernetes' structural schema rules, as far as our generator could break them.
fn assert_structural(schema: &Value, path: &str) {
    let obj = schema
        .as_object()
        .unwrap_or_else(|| panic!("{path}: schema is not an object"));
    for forbidden in [
        "$ref",
        "definitions",
        "$defs",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "uniqueItems",
    ] {
        assert!(
            !obj.contains_key(forbidden),
            "{path}: {forbidden} is not allowed in a structural schema"
        );
    }
    let has_type = obj.contains_key("type")
        || schema["x-kubernetes-int-or-string"] == true
        || schema["x-kubernetes-preserve-unknown-fields"] == true;
    assert!(has_type, "{path}: every node needs a type");
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        assert!(
            obj.get("additionalProperties").is_none(),
            "{path}: properties and additionalProperties are mutually exclusive"
        );
        for (name, child) in props {
            assert_structural(child, &format!("{path}.{name}"));
        }
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        assert_structural(additional, &format!("{path}.*"));
    }
    if let Some(items) = obj.get("items") {
        assert_structural(items, &format!("{path}[]"));
    }
    if schema["x-kubernetes-list-type"] == "map" {
        let keys = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .expect("map lists name their keys");
        for key in keys {
            let key = key.as_str().unwrap();
            let required = schema["items"]["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|k| k == key));
            let defaulted = !schema["items"]["properties"][key]["default"].is_null();
            assert!(
                required || defaulted,
                "{path}: list map key {key} must be required or defaulted"
            );
        }
    }
}

#[test]
fn schemas_are_structural() {
    for kind in [
        "AutoscaleSet",
        "RunnerSet",
        "EphemeralRunnerSet",
        "EphemeralRunner",
    ] {
        assert_structural(&schema_of(kind), kind);
    }
}

#[test]
fn every_rule_compiles_and_explains_itself() {
    fn walk(schema: &Value, path: &str, count: &mut usize) {
        for (rule, message) in rules(schema) {
            cel::Program::compile(&rule).unwrap_or_else(|e| panic!("{path}: {rule:?} does not compile: {e}"));
            assert!(
                message.len() > 20,
                "{path}: rule {rule:?} needs a message a person understands"
            );
            *count += 1;
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, child) in props {
                walk(child, &format!("{path}.{name}"), count);
            }
        }
        if schema["items"].is_object() {
            walk(&schema["items"], &format!("{path}[]"), count);
        }
    }
    let mut count = 0;
    for kind in [
        "AutoscaleSet",
        "RunnerSet",
        "EphemeralRunnerSet",
        "EphemeralRunner",
    ] {
        walk(&schema_of(kind), kind, &mut count);
    }
    assert!(count >= 12, "expected every documented rule, found {count}");
}

/// Finds the rule whose message contains `needle` at a schema node.
fn rule(node: &Value, needle: &str) -> String {
    rules(node)
        .into_iter()
        .find(|(_, message)| message.contains(needle))
        .unwrap_or_else(|| panic!("no rule mentioning {needle:?} in {:?}", rules(node)))
        .0
}

#[test]
fn min_runners_must_not_exceed_max_runners() {
    let schema = schema_of("AutoscaleSet");
    let r = rule(node(&schema, "spec"), "minRunners must not be greater");
    let spec = |min: i32, max: i32| json!({"minRunners": min, "maxRunners": max, "githubApp": {}});
    assert!(eval_rule(&r, &spec(0, 0), None));
    assert!(eval_rule(&r, &spec(2, 2), None));
    assert!(eval_rule(&r, &spec(1, 10), None));
    assert!(!eval_rule(&r, &spec(11, 10), None));
}

#[test]
fn exactly_one_auth_method() {
    let schema = schema_of("AutoscaleSet");
    let r = rule(
        node(&schema, "spec"),
        "exactly one of githubApp or personalAccessToken",
    );
    assert!(eval_rule(&r, &json!({"githubApp": {}}), None));
    assert!(eval_rule(&r, &json!({"personalAccessToken": {}}), None));
    assert!(!eval_rule(&r, &json!({}), None));
    assert!(!eval_rule(
        &r,
        &json!({"githubApp": {}, "personalAccessToken": {}}),
        None
    ));
}

#[test]
fn config_url_must_name_an_enterprise_org_or_repository_over_https() {
    let schema = schema_of("AutoscaleSet");
    let r = rule(
        node(&schema, "spec.githubConfigURL"),
        "githubConfigURL must be an https URL",
    );
    for good in [
        "https://github.com/my-org",
        "https://github.com/my-org/",
        "https://github.com/my-org/my-repo",
        "https://github.com/enterprises/acme",
        "https://acme.ghe.com/my-org",
        "https://ghes.internal.example:8443/org/repo",
    ] {
        assert!(eval_rule(&r, &json!(good), None), "{good} should be accepted");
    }
    for bad in [
        "http://github.com/my-org",
        "https://github.com",
        "https://github.com/",
        "https://github.com/a/b/c",
        "https://github.com/my org",
        "https://github.com/org?x=1",
        "github.com/my-org",
    ] {
        assert!(!eval_rule(&r, &json!(bad), None), "{bad} should be rejected");
    }
}

#[test]
fn config_url_is_immutable_once_registered() {
    let schema = schema_of("AutoscaleSet");
    let r = rule(&schema, "githubConfigURL cannot change");
    assert!(is_transition_rule(&r));
    let obj = |url: &str, id: Option<i64>| {
        let mut v = json!({"metadata": {"name": "a"}, "spec": {"githubConfigURL": url}});
        if let Some(id) = id {
            v["status"] = json!({"scaleSetID": id});
        }
        v
    };
    let (a, b) = ("https://github.com/a", "https://github.com/b");
    assert!(
        eval_rule(&r, &obj(b, None), Some(&obj(a, None))),
        "unregistered: fix a typo freely"
    );
    assert!(
        eval_rule(&r, &obj(a, Some(1)), Some(&obj(a, Some(1)))),
        "unchanged is fine"
    );
    assert!(
        !eval_rule(&r, &obj(b, Some(1)), Some(&obj(a, Some(1)))),
        "registered: URL is fixed"
    );
}

#[test]
fn container_mode_kubernetes_needs_its_work_volume_claim() {
    let schema = schema_of("AutoscaleSet");
    let mode = node(&schema, "spec.containerMode");
    let needs = rule(mode, "needs kubernetesModeWorkVolumeClaim");
    let only = rule(mode, "only used with containerMode 'kubernetes'");
    let claim = json!({"accessModes": ["ReadWriteOnce"]});
    let both = |v: &Value| eval_rule(&needs, v, None) && eval_rule(&only, v, None);
    assert!(both(
        &json!({"type": "kubernetes", "kubernetesModeWorkVolumeClaim": claim})
    ));
    assert!(!both(&json!({"type": "kubernetes"})));
    assert!(both(&json!({"type": "dind"})));
    assert!(!both(
        &json!({"type": "dind", "kubernetesModeWorkVolumeClaim": claim})
    ));
    assert!(both(&json!({"type": "kubernetes-novolume"})));
}

#[test]
fn autoscale_set_ref_is_immutable() {
    let schema = schema_of("RunnerSet");
    let r = rule(
        node(&schema, "spec.autoscaleSetRef"),
        "autoscaleSetRef is immutable",
    );
    let a = json!({"name": "a"});
    assert!(eval_rule(&r, &a, Some(&a)));
    assert!(!eval_rule(&r, &json!({"name": "b"}), Some(&a)));
    assert!(!eval_rule(
        &r,
        &json!({"name": "a", "namespace": "other"}),
        Some(&a)
    ));
}

#[test]
fn name_length_rules_match_the_derived_name_limits() {
    use rssc_api::names::{MAX_AUTOSCALE_SET_NAME_LEN, MAX_DNS_LABEL_LEN, MAX_RUNNER_SET_NAME_LEN};
    let cases = [
        ("AutoscaleSet", MAX_AUTOSCALE_SET_NAME_LEN),
        ("RunnerSet", MAX_RUNNER_SET_NAME_LEN),
        ("EphemeralRunnerSet", MAX_RUNNER_SET_NAME_LEN),
        ("EphemeralRunner", MAX_DNS_LABEL_LEN),
    ];
    for (kind, max) in cases {
        let schema = schema_of(kind);
        let r = rule(&schema, "characters");
        let named = |len: usize| json!({"metadata": {"name": "a".repeat(len)}});
        assert!(
            eval_rule(&r, &named(max), None),
            "{kind}: {max} characters must be allowed"
        );
        assert!(
            !eval_rule(&r, &named(max + 1), None),
            "{kind}: {} characters must be rejected",
            max + 1
        );
    }
    let schema = schema_of("RunnerSet");
    let r = rule(&schema, "DNS labels");
    assert!(eval_rule(&r, &json!({"metadata": {"name": "linux-x64"}}), None));
    assert!(!eval_rule(&r, &json!({"metadata": {"name": "Linux.x64"}}), None));
}

#[test]
fn schema_defaults_match_serde_defaults() {
    let schema = schema_of("AutoscaleSet");
    assert_eq!(node(&schema, "spec.runnerGroup")["default"], "default");
    assert_eq!(node(&schema, "spec.minRunners")["default"], 0);
    assert_eq!(node(&schema, "spec.maxRunners")["default"], 10);
    assert_eq!(node(&schema, "spec.labels.[].type")["default"], "System");
    assert_eq!(node(&schema, "spec.containerMode.type")["default"], "default");
    assert_eq!(
        node(&schema, "spec.persistentVolumes.[].accessModes")["default"],
        json!(["ReadWriteMany"])
    );

    let minimal: rssc_api::v1alpha1::AutoscaleSetSpec = serde_json::from_value(json!({
        "githubConfigURL": "https://github.com/o",
        "scaleSetName": "s",
        "runnerImage": "img",
        "labels": [{"name": "x"}],
        "containerMode": {},
        "persistentVolumes": [{"name": "c", "size": "1Gi", "mountPath": "/c"}],
    }))
    .unwrap();
    assert_eq!(minimal.runner_group, "default");
    assert_eq!((minimal.min_runners, minimal.max_runners), (0, 10));
    assert_eq!(minimal.labels[0].type_, rssc_api::v1alpha1::LabelType::System);
    assert_eq!(
        minimal.container_mode.unwrap().type_,
        rssc_api::v1alpha1::ContainerModeType::Default
    );
    assert_eq!(
        minimal.persistent_volumes[0].access_modes,
        vec![rssc_api::v1alpha1::AccessMode::ReadWriteMany]
    );
}

#[test]
fn runner_template_accepts_rssc_shorthand_and_omits_containers() {
    for kind in ["AutoscaleSet", "RunnerSet"] {
        let schema = schema_of(kind);
        let spec = node(&schema, "spec.runnerTemplate.spec");
        assert!(
            spec["required"].is_null(),
            "{kind}: containers must be optional in a runner template"
        );
        for field in [
            "env",
            "resources",
            "containers",
            "volumes",
            "initContainers",
            "tolerations",
        ] {
            assert!(
                !spec["properties"][field].is_null(),
                "{kind}: runnerTemplate.spec.{field} missing"
            );
        }
    }
    // The resolved templates on runners are complete pod specs.
    for kind in ["EphemeralRunnerSet", "EphemeralRunner"] {
        let schema = schema_of(kind);
        assert_eq!(
            node(&schema, "spec.runnerTemplate.spec")["required"],
            json!(["containers"])
        );
    }
}

#[test]
fn conditions_merge_by_type() {
    for (kind, path) in [
        ("AutoscaleSet", "status.conditions"),
        ("RunnerSet", "status.conditions"),
        ("EphemeralRunner", "status.conditions"),
    ] {
        let schema = schema_of(kind);
        let conditions = node(&schema, path);
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            json!(["type"]),
            "{kind}"
        );
    }
}

#[test]
fn crds_fit_client_side_apply() {
    // `kubectl apply` without --server-side stores the whole object in an annotation limited
    // to 256 KiB; ARC's CRDs exceed it, ours must not.
    for crd in crds() {
        let size = serde_json::to_vec(&crd).unwrap().len();
        assert!(size < 200 * 1024, "{} is {size} bytes", crd["metadata"]["name"]);
    }
}

#[test]
fn committed_crds_match_a_fresh_generation() {
    let dir = support::repo_root().join("deploy/crds");
    let files = rssc_api::crd::render_all().unwrap();
    for file in &files {
        let path = dir.join(&file.file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == file.content,
            "{} is out of date; run `just generate` (or `cargo run -p rssc-api --bin crdgen`)",
            path.display()
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut generated: Vec<String> = files.iter().map(|f| f.file_name.clone()).collect();
    generated.sort();
    assert_eq!(
        on_disk, generated,
        "deploy/crds holds files crdgen does not write"
    );
}
