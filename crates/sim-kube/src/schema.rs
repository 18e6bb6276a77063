//! Structural-schema handling for custom resources, as the API server does it: pruning of
//! unknown fields, defaulting, OpenAPI validation (types, required, enums, patterns, lengths,
//! bounds, item counts) and CEL `x-kubernetes-validations`, including transition rules.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Map, Value, json};

use crate::error::FieldError;

/// Removes fields the schema does not declare; returns the pruned paths (`spec.foo`).
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(obj, schema, "", true, &mut pruned);
    pruned
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_at(value: &mut Value, schema: &Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true && schema["properties"].is_null() {
        return;
    }
    let embedded = root || schema["x-kubernetes-embedded-resource"] == true;
    match value {
        Value::Object(object) => {
            let properties = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            let keys: Vec<String> = object.keys().cloned().collect();
            for key in keys {
                let child_path = join(path, &key);
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(&key)) {
                    if let Some(child) = object.get_mut(&key) {
                        prune_at(child, child_schema, &child_path, false, pruned);
                    }
                } else if additional.is_object() {
                    if let Some(child) = object.get_mut(&key) {
                        prune_at(child, additional, &format!("{path}[{key}]"), false, pruned);
                    }
                } else if additional != &Value::Bool(true) && !preserve {
                    object.remove(&key);
                    pruned.push(child_path);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_at(item, &schema["items"], &format!("{path}[{i}]"), false, pruned);
            }
        }
        _ => {}
    }
}

/// Fills in missing (or null, where not nullable) fields that have a schema default, and drops
/// nulls of non-nullable fields that have none, as the API server does before validating.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(object) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (key, prop) in properties {
                    let missing = match object.get(key) {
                        None => true,
                        Some(Value::Null) => prop["nullable"] != true,
                        Some(_) => false,
                    };
                    if missing && !prop["default"].is_null() {
                        object.insert(key.clone(), prop["default"].clone());
                    } else if object.get(key).is_some_and(Value::is_null) && prop["nullable"] != true {
                        // Nulls for non-nullable fields without a default are pruned.
                        object.remove(key);
                    }
                }
                for (key, child) in object.iter_mut() {
                    if let Some(prop) = properties.get(key) {
                        apply_defaults(child, prop);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for child in object.values_mut() {
                    apply_defaults(child, &schema["additionalProperties"]);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| apply_defaults(item, &schema["items"])),
        _ => {}
    }
}

/// Validates a (pruned, defaulted) custom object against its schema; `old` is the stored object
/// on updates, for transition rules. Returns one error per violation.
pub fn validate(obj: &Value, old: Option<&Value>, schema: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check(obj, old, schema, "", true, &mut errors);
    errors
}

/// An object as its root rules see it: metadata cut down to `name` and `generateName`.
/// Serialized from the object in place: a copy of a runner, Pod template and all, on every
/// write cost more than the rule.
struct RootView<'a>(&'a Value);

impl Serialize for RootView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(object) = self.0.as_object() else {
            return self.0.serialize(serializer);
        };
        let meta = &self.0["metadata"];
        let mut shown = Map::new();
        for key in ["name", "generateName"] {
            if let Some(value) = meta.get(key) {
                shown.insert(key.to_owned(), value.clone());
            }
        }
        let with_meta = object.contains_key("metadata");
        let mut map = serializer.serialize_map(Some(object.len() + usize::from(!with_meta)))?;
        if !with_meta {
            map.serialize_entry("metadata", &shown)?;
        }
        for (key, value) in object {
            if key == "metadata" {
                map.serialize_entry(key, &shown)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(
    value: &Value,
    old: Option<&Value>,
    schema: &Value,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    let shown = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema["nullable"] != true {
            let expected = schema["type"].as_str().unwrap_or("object");
            errors.push(FieldError::invalid(
                path,
                &json!("null"),
                &format!("{shown} in body must be of type {expected}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    let declared = schema["type"].as_str();
    let type_ok = match (declared, int_or_string) {
        (_, true) => value.is_string() || value.is_i64() || value.is_u64(),
        (Some("object"), _) => value.is_object(),
        (Some("array"), _) => value.is_array(),
        (Some("string"), _) => value.is_string(),
        (Some("integer"), _) => value.is_i64() || value.is_u64(),
        (Some("number"), _) => value.is_number(),
        (Some("boolean"), _) => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        let actual = type_name(value);
        errors.push(FieldError::invalid(
            path,
            &json!(actual),
            &format!(
                "{shown} in body must be of type {}: {actual:?}",
                declared.unwrap_or("object")
            ),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(FieldError::not_supported(path, value, allowed));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64()
            && len < min
        {
            errors.push(FieldError::invalid(
                path,
                value,
                &format!("{shown} in body should be at least {min} chars long"),
            ));
        }
        if let Some(max) = schema["maxLength"].as_u64()
            && len > max
        {
            errors.push(FieldError::too_long(path, max));
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(s) => errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{shown} in body should match '{pattern}'"),
                )),
                Ok(_) => {}
                Err(e) => errors.push(FieldError::invalid(path, value, &format!("invalid pattern: {e}"))),
            }
        }
    }
    if value.is_number()
        && let Some(n) = value.as_f64()
    {
        if let Some(min) = schema["minimum"].as_f64() {
            let exclusive = schema["exclusiveMinimum"] == true;
            if n < min || (exclusive && n == min) {
                let op = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{shown} in body should be {op} {}", number(min)),
                ));
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            let exclusive = schema["exclusiveMaximum"] == true;
            if n > max || (exclusive && n == max) {
                let op = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                errors.push(FieldError::invalid(
                    path,
                    value,
                    &format!("{shown} in body should be {op} {}", number(max)),
                ));
            }
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                errors.push(FieldError::required(&join(path, key)));
            }
        }
        if let Some(max) = schema["maxProperties"].as_u64()
            && object.len() as u64 > max
        {
            errors.push(FieldError {
                reason: "FieldValueTooMany",
                field: path.to_owned(),
                message: format!("Too many: {}: must have at most {max} items", object.len()),
            });
        }
        let properties = schema["properties"].as_object();
        let additional = &schema["additionalProperties"];
        for (key, child) in object {
            if root && matches!(key.as_str(), "apiVersion" | "kind") {
                continue;
            }
            let old_child = old.and_then(|o| o.get(key));
            if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                if root && key == "metadata" {
                    continue;
                }
                check(child, old_child, child_schema, &join(path, key), false, errors);
            } else if additional.is_object() {
                check(
                    child,
                    old_child,
                    additional,
                    &format!("{path}[{key}]"),
                    false,
                    errors,
                );
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema["maxItems"].as_u64()
            && items.len() as u64 > max
        {
            errors.push(FieldError {
                reason: "FieldValueTooMany",
                field: path.to_owned(),
                message: format!("Too many: {}: must have at most {max} items", items.len()),
            });
        }
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            errors.push(FieldError::invalid(
                path,
                value,
                &format!("{shown} in body should have at least {min} items"),
            ));
        }
        let map_keys: Option<Vec<&str>> = (schema["x-kubernetes-list-type"] == "map").then(|| {
            schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect()
        });
        let mut seen: Vec<Value> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let old_item = map_keys.as_ref().and_then(|keys| {
                old.and_then(Value::as_array).and_then(|olds| {
                    olds.iter()
                        .find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
                })
            });
            if let Some(keys) = &map_keys {
                let key_value: Value = keys
                    .iter()
                    .map(|k| ((*k).to_owned(), item[*k].clone()))
                    .collect::<Map<_, _>>()
                    .into();
                if seen.contains(&key_value) {
                    errors.push(FieldError {
                        reason: "FieldValueDuplicate",
                        field: item_path.clone(),
                        message: format!("Duplicate value: {key_value}"),
                    });
                }
                seen.push(key_value);
            } else if schema["x-kubernetes-list-type"] == "set" {
                if seen.contains(item) {
                    errors.push(FieldError {
                        reason: "FieldValueDuplicate",
                        field: item_path.clone(),
                        message: format!("Duplicate value: {item}"),
                    });
                }
                seen.push(item.clone());
            }
            check(item, old_item, &schema["items"], &item_path, false, errors);
        }
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(expr) = rule["rule"].as_str() else {
            continue;
        };
        let transition = expr.contains("oldSelf");
        if transition && old.is_none() {
            continue;
        }
        let schema_type = if int_or_string {
            "int-or-string"
        } else {
            declared.unwrap_or("object")
        };
        let rule_old = old.filter(|_| transition);
        let outcome = if root {
            eval_bool(expr, &RootView(value), rule_old.map(RootView).as_ref())
        } else {
            eval_bool(expr, value, rule_old)
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                let message = rule["messageExpression"]
                    .as_str()
                    .and_then(|m| {
                        if root {
                            eval_string(m, &RootView(value), old.map(RootView).as_ref()).ok()
                        } else {
                            eval_string(m, value, old).ok()
                        }
                    })
                    .or_else(|| rule["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("failed rule: {expr}"));
                let field = match rule["fieldPath"].as_str() {
                    Some(fp) => format!("{path}{fp}"),
                    // The API server validates the root with a nil field path.
                    None if root => "<nil>".to_owned(),
                    None => path.to_owned(),
                };
                let mut error = FieldError::invalid(&field, &json!(schema_type), &message);
                if let Some(reason) = rule["reason"].as_str() {
                    error = match reason {
                        "FieldValueForbidden" => FieldError::forbidden(&field, &message),
                        "FieldValueRequired" => FieldError {
                            reason: "FieldValueRequired",
                            field: field.clone(),
                            message: format!("Required value: {message}"),
                        },
                        _ => error,
                    };
                }
                errors.push(error);
            }
            Err(e) => errors.push(FieldError::invalid(
                path,
                &json!(schema_type),
                &format!("{expr}: {e}"),
            )),
        }
    }
}

/// Formats a bound as Go does: no fraction for whole numbers.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// CEL's standard environment, built once: building it took about a fifth of every rule's
/// evaluation.
static STANDARD: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

/// Rules compiled so far, by source. The API server compiles a CRD's rules once, not on every
/// write; compiling on every write made parsing a quarter of every rule's evaluation.
static COMPILED: LazyLock<Mutex<HashMap<String, Arc<cel::Program>>>> = LazyLock::new(Default::default);

/// The most rules [`COMPILED`] keeps.
const COMPILED_LIMIT: usize = 4096;

fn compiled(expr: &str) -> Result<Arc<cel::Program>, String> {
    let mut compiled = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(program) = compiled.get(expr) {
        return Ok(Arc::clone(program));
    }
    let program = Arc::new(cel::Program::compile(expr).map_err(|e| format!("compilation failed: {e}"))?);
    if compiled.len() >= COMPILED_LIMIT {
        // Only a server given thousands of distinct rules gets here; start over rather than grow.
        compiled.clear();
    }
    compiled.insert(expr.to_owned(), Arc::clone(&program));
    Ok(program)
}

fn run<T: Serialize>(expr: &str, this: &T, old: Option<&T>) -> Result<cel::Value, String> {
    let program = compiled(expr)?;
    let mut context = cel::Context::with_env(Arc::clone(&STANDARD));
    context.add_variable("self", this).map_err(|e| e.to_string())?;
    if let Some(old) = old {
        context.add_variable("oldSelf", old).map_err(|e| e.to_string())?;
    }
    program
        .execute(&context)
        .map_err(|e| format!("evaluation error: {e}"))
}

fn eval_bool<T: Serialize>(expr: &str, this: &T, old: Option<&T>) -> Result<bool, String> {
    match run(expr, this, old)? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("rule did not evaluate to a bool: {other:?}")),
    }
}

fn eval_string<T: Serialize>(expr: &str, this: &T, old: Option<&T>) -> Result<String, String> {
    match run(expr, this, old)? {
        cel::Value::String(s) => Ok(s.to_string()),
        other => Err(format!(
            "messageExpression did not evaluate to a string: {other:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.metadata.name.size() <= 5", "message": "name too long"}],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["url"],
                    "x-kubernetes-validations": [
                        {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                        {"rule": "self.url == oldSelf.url", "message": "url is immutable"}
                    ],
                    "properties": {
                        "url": {"type": "string", "pattern": "^https://", "maxLength": 20},
                        "min": {"type": "integer", "minimum": 0, "default": 0},
                        "max": {"type": "integer", "maximum": 10, "default": 10},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "items": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
                    }
                }
            }
        })
    }

    #[test]
    fn defaults_prunes_and_validates() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "abc"},
            "spec": {"url": "https://a", "extra": 1}, "junk": true});
        let pruned = prune(&mut obj, &schema());
        assert_eq!(pruned, vec!["junk".to_owned(), "spec.extra".to_owned()]);
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["max"], 10);
        assert!(validate(&obj, None, &schema()).is_empty());
    }

    #[test]
    fn reports_errors_like_the_api_server() {
        let obj = json!({"metadata": {"name": "toolong"},
            "spec": {"url": "http://a", "min": -1, "max": 11, "mode": "c",
                "items": [{"name": "x"}, {"name": "x"}]}});
        let lines: Vec<String> = validate(&obj, None, &schema())
            .iter()
            .map(FieldError::line)
            .collect();
        assert!(
            lines.contains(
                &"spec.url: Invalid value: \"http://a\": spec.url in body should match '^https://'"
                    .to_owned()
            ),
            "{lines:?}"
        );
        assert!(lines.contains(
            &"spec.min: Invalid value: -1: spec.min in body should be greater than or equal to 0".to_owned()
        ));
        assert!(lines.contains(
            &"spec.max: Invalid value: 11: spec.max in body should be less than or equal to 10".to_owned()
        ));
        assert!(
            lines.contains(&"spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"".to_owned())
        );
        assert!(lines.contains(&"spec.items[1]: Duplicate value: {\"name\":\"x\"}".to_owned()));
        assert!(
            lines.contains(&"<nil>: Invalid value: \"object\": name too long".to_owned()),
            "{lines:?}"
        );
        let missing = validate(
            &json!({"metadata": {"name": "a"}, "spec": {"min": 1, "max": 2}}),
            None,
            &schema(),
        );
        assert_eq!(missing[0].line(), "spec.url: Required value");
        let wrong_type = validate(
            &json!({"metadata": {"name": "a"}, "spec": {"url": "https://", "min": "1", "max": 2}}),
            None,
            &schema(),
        );
        assert_eq!(
            wrong_type[0].line(),
            "spec.min: Invalid value: \"string\": spec.min in body must be of type integer: \"string\""
        );
    }

    #[test]
    fn transition_rules_see_the_old_object() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"url": "https://a", "min": 0, "max": 1}});
        let new = json!({"metadata": {"name": "a"}, "spec": {"url": "https://b", "min": 0, "max": 1}});
        assert!(validate(&new, None, &schema()).is_empty());
        let errors = validate(&new, Some(&old), &schema());
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].line(),
            "spec: Invalid value: \"object\": url is immutable"
        );
    }

    #[test]
    fn root_rules_see_only_the_name_of_the_metadata() {
        let schema = json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "!has(self.metadata.labels) && !has(self.metadata.uid)", "message": "metadata not cut"},
            {"rule": "self.metadata.name.startsWith('ok')", "messageExpression": "'bad name ' + self.metadata.name"},
            {"rule": "self.spec.n == oldSelf.spec.n && !has(oldSelf.metadata.labels)", "message": "n is immutable"}
        ]});
        let old = json!({"metadata": {"name": "ok-1", "labels": {"a": "b"}, "uid": "u"}, "spec": {"n": 1}});
        assert!(validate(&old, None, &schema).is_empty());
        let mut new = old.clone();
        new["spec"]["n"] = json!(2);
        new["metadata"]["name"] = json!("no");
        let lines: Vec<String> = validate(&new, Some(&old), &schema)
            .iter()
            .map(FieldError::line)
            .collect();
        assert_eq!(
            lines,
            [
                "<nil>: Invalid value: \"object\": bad name no",
                "<nil>: Invalid value: \"object\": n is immutable"
            ]
        );
        // Without metadata, the rules still see an empty one.
        let bare = json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "has(self.metadata) && !has(self.metadata.name)", "message": "no metadata"}]});
        assert!(validate(&json!({"spec": {}}), None, &bare).is_empty());
    }
}
