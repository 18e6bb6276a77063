//! Checks a manifest against a generated CRD the way an API server would: structural schema
//! types, required fields, enums, patterns, lengths, bounds, fields that would be pruned, and
//! the CEL `x-kubernetes-validations` rules (creation-time rules; transition rules need an old
//! object and are evaluated by [`eval_rule`] directly).

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// Every generated CRD as JSON (generated once per test binary: it is slow in debug builds).
pub fn crds() -> Vec<Value> {
    static CRDS: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    CRDS.get_or_init(|| {
        rssc_api::crd::all()
            .iter()
            .map(|crd| serde_json::to_value(crd).unwrap())
            .collect()
    })
    .clone()
}

/// The `openAPIV3Schema` of the CRD for `kind`.
pub fn schema_of(kind: &str) -> Value {
    crds()
        .into_iter()
        .find(|crd| crd["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        .clone()
}

/// The schema node at a dotted path of property names (`[]` steps into list items).
pub fn node<'a>(schema: &'a Value, path: &str) -> &'a Value {
    let mut node = schema;
    for step in path.split('.').filter(|s| !s.is_empty()) {
        node = if step == "[]" {
            &node["items"]
        } else {
            &node["properties"][step]
        };
        assert!(!node.is_null(), "no schema at {path} (failed at {step})");
    }
    node
}

/// `(rule, message)` pairs declared at a schema node.
pub fn rules(node: &Value) -> Vec<(String, String)> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap().to_owned(),
                        r["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Evaluates one CEL rule with `self` (and `oldSelf` for transition rules) bound.
pub fn eval_rule(rule: &str, this: &Value, old: Option<&Value>) -> bool {
    let program =
        cel::Program::compile(rule).unwrap_or_else(|e| panic!("rule {rule:?} does not compile: {e}"));
    let mut context = cel::Context::default();
    context.add_variable("self", this.clone()).unwrap();
    if let Some(old) = old {
        context.add_variable("oldSelf", old.clone()).unwrap();
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => b,
        other => panic!("rule {rule:?} did not evaluate to a bool: {other:?}"),
    }
}

/// Whether a rule compares against the old object (evaluated on updates only).
pub fn is_transition_rule(rule: &str) -> bool {
    rule.contains("oldSelf")
}

/// Validates `value` against `schema` after applying the schema's defaults, as an API server
/// does; returns a message per violation, empty if valid.
pub fn validate(value: &Value, schema: &Value) -> Vec<String> {
    let mut defaulted = value.clone();
    apply_defaults(&mut defaulted, schema);
    let mut errors = Vec::new();
    check(&defaulted, schema, "", &mut errors);
    errors
}

/// Fills in missing fields that have a schema default, recursively.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(object) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (key, prop) in properties {
                    if !object.contains_key(key) && !prop["default"].is_null() {
                        object.insert(key.clone(), prop["default"].clone());
                    }
                }
                for (key, child) in object.iter_mut() {
                    if let Some(prop) = properties.get(key) {
                        apply_defaults(child, prop);
                    }
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| apply_defaults(item, &schema["items"])),
        _ => {}
    }
}

fn check(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    let type_ok = match (schema["type"].as_str(), int_or_string) {
        (_, true) => value.is_string() || value.is_i64() || value.is_u64(),
        (Some("object"), _) => value.is_object(),
        (Some("array"), _) => value.is_array(),
        (Some("string"), _) => value.is_string(),
        (Some("integer"), _) => value.is_i64() || value.is_u64(),
        (Some("number"), _) => value.is_number(),
        (Some("boolean"), _) => value.is_boolean(),
        (None, false) => schema["x-kubernetes-preserve-unknown-fields"] == true,
        (Some(other), _) => panic!("{path}: unexpected schema type {other}"),
    };
    if !type_ok {
        errors.push(format!("{path}: expected {}, got {value}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| len < min) {
            errors.push(format!("{path}: shorter than minLength"));
        }
        if schema["maxLength"].as_u64().is_some_and(|max| len > max) {
            errors.push(format!("{path}: longer than maxLength"));
        }
        if let Some(pattern) = schema["pattern"].as_str()
            && !regex::Regex::new(pattern).unwrap().is_match(s)
        {
            errors.push(format!("{path}: {s:?} does not match {pattern}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            errors.push(format!("{path}: {n} is below the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            errors.push(format!("{path}: {n} is above the maximum"));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(required.as_str().unwrap()) {
                errors.push(format!("{path}: missing required field {required}"));
            }
        }
        let properties = schema["properties"].as_object();
        let additional = &schema["additionalProperties"];
        for (key, child) in object {
            let child_path = format!("{path}.{key}");
            if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                check(child, child_schema, &child_path, errors);
            } else if additional.is_object() {
                check(child, additional, &child_path, errors);
            } else if schema["x-kubernetes-preserve-unknown-fields"] != true
                && !(path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"))
            {
                errors.push(format!(
                    "{child_path}: unknown field (the API server would prune it)"
                ));
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(item, &schema["items"], &format!("{path}[{i}]"), errors);
        }
    }
    for (rule, message) in rules(schema) {
        if !is_transition_rule(&rule) && !eval_rule(&rule, value, None) {
            errors.push(format!("{path}: {message}"));
        }
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every YAML document in a file, as JSON values.
pub fn documents(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}
