//! Patch application: JSON merge patch (RFC 7386), JSON patch (RFC 6902, including `test`) and
//! strategic merge patch for built-in types.

use serde_json::{Map, Value};

use crate::resources::ListKind;
use crate::ssa::Strategy;

/// A patch that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not valid for its type.
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch operation failed (including a failed `test`).
    #[error("{0}")]
    Failed(String),
}

/// Applies a JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "a merge patch must be a JSON object".to_owned(),
        ));
    }
    json_patch::merge(target, patch);
    Ok(())
}

/// Applies a JSON patch (a list of operations), all or nothing. As in the API server's JSON
/// patch library, `test` of a missing path against `null` succeeds (kube-runtime's finalizer
/// helper relies on it).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Malformed(e.to_string()))?;
    let mut doc = target.clone();
    for op in ops.iter() {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && doc.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op))
            .map_err(|e| PatchError::Failed(e.to_string()))?;
    }
    *target = doc;
    Ok(())
}

/// Applies a strategic merge patch to a built-in object, following its merge keys.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    strategy: &Strategy<'_>,
) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".to_owned(),
        ));
    }
    smp_object(target, patch, strategy, &mut Vec::new());
    Ok(())
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| {
                    !(i.is_object()
                        && i.get("$patch").is_some()
                        && i.as_object().is_some_and(|o| o.len() == 1))
                })
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn smp_object(target: &mut Value, patch: &Value, strategy: &Strategy<'_>, path: &mut Vec<String>) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                target.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let Some(object) = target.as_object_mut() else {
            return;
        };
        if value.is_null() {
            object.remove(key);
            continue;
        }
        match value {
            Value::Object(_) => {
                let child = object.entry(key.clone()).or_insert(Value::Object(Map::new()));
                path.push(key.clone());
                if strategy.is_atomic_map(path) {
                    *child = strip_directives(value);
                } else {
                    smp_object(child, value, strategy, path);
                }
                path.pop();
            }
            Value::Array(items) => {
                let kind = strategy.list_kind(path, key);
                let replace = items
                    .iter()
                    .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
                let current = object.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                if !current.is_array() || replace {
                    *current = strip_directives(value);
                    continue;
                }
                path.push(key.clone());
                smp_list(current, items, &kind, strategy, path);
                path.pop();
            }
            scalar => {
                object.insert(key.clone(), scalar.clone());
            }
        }
    }
}

fn smp_list(
    current: &mut Value,
    items: &[Value],
    kind: &ListKind,
    strategy: &Strategy<'_>,
    path: &mut Vec<String>,
) {
    let Some(list) = current.as_array_mut() else {
        return;
    };
    match kind {
        ListKind::Atomic => *list = items.iter().map(strip_directives).collect(),
        ListKind::Set => {
            for item in items {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        ListKind::Map(keys) => {
            for item in items {
                let same = |candidate: &Value| {
                    keys.iter().all(|k| {
                        candidate.get(k) == item.get(k) || (item.get(k).is_none() && k == "protocol")
                    })
                };
                let position = list.iter().position(same);
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = position {
                        list.remove(i);
                    }
                    continue;
                }
                match position {
                    Some(i) => smp_object(&mut list[i], item, strategy, path),
                    None => list.push(strip_directives(item)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_and_json_patch() {
        let mut obj = json!({"a": 1, "b": {"c": 2}});
        merge_patch(&mut obj, &json!({"a": null, "b": {"d": 3}})).unwrap();
        assert_eq!(obj, json!({"b": {"c": 2, "d": 3}}));
        json_patch(&mut obj, &json!([{"op": "test", "path": "/b/c", "value": 2}, {"op": "replace", "path": "/b/c", "value": 5}])).unwrap();
        assert_eq!(obj["b"]["c"], 5);
        let err = json_patch(&mut obj, &json!([{"op": "test", "path": "/b/c", "value": 9}])).unwrap_err();
        assert!(matches!(err, PatchError::Failed(_)));
        assert!(json_patch(&mut obj, &json!({"op": "x"})).is_err());
        // kube-runtime's finalizer helper: test a missing list against null, then add it.
        json_patch(
            &mut obj,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata", "value": {}},
                {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]),
        )
        .unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["f"]));
        let before = obj.clone();
        assert!(
            json_patch(
                &mut obj,
                &json!([{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/x", "value": 2}])
            )
            .is_err()
        );
        assert_eq!(obj, before, "a failed patch changes nothing");
    }

    #[test]
    fn strategic_merge_by_key() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}, "metadata": {"finalizers": ["f1"]}});
        let patch = json!({
            "metadata": {"finalizers": ["f2"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "2"}]},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "c:1"}
                ]
            }
        });
        strategic_merge_patch(&mut pod, &patch, &Strategy::Builtin).unwrap();
        assert_eq!(pod["spec"]["containers"][0]["image"], "a:1");
        assert_eq!(pod["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(pod["spec"]["containers"][1]["name"], "c");
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 2);
        assert_eq!(pod["metadata"]["finalizers"], json!(["f1", "f2"]));
        strategic_merge_patch(
            &mut pod,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}}),
            &Strategy::Builtin,
        )
        .unwrap();
        assert_eq!(pod["metadata"]["finalizers"], json!(["f2"]));
    }
}
