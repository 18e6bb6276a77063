//! Merging a RunnerSet's template over an AutoscaleSet's: maps merge by key, lists of named
//! objects merge by name, other lists of objects are unioned, an empty list changes nothing, and
//! everything else (scalars, lists of scalars such as `command`) is replaced by the override.

use serde_json::Value;

/// Merges `overlay` into `base`; the overlay wins where both set a value.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        // Serialized templates always carry `containers`, often empty: no opinion, keep the base.
        (Value::Array(_), Value::Array(overlay)) if overlay.is_empty() => {}
        (Value::Array(base), Value::Array(overlay)) if is_named_list(base) && is_named_list(overlay) => {
            for item in overlay {
                match base.iter_mut().find(|b| b["name"] == item["name"]) {
                    Some(existing) => merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (Value::Array(base), Value::Array(overlay)) if is_object_list(base) && is_object_list(overlay) => {
            // Tolerations, topology spread constraints and the like have no name; keeping
            // both sides is what RSSC did and what a RunnerSet adding a toleration expects.
            for item in overlay {
                if !base.contains(item) {
                    base.push(item.clone());
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

fn is_object_list(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

fn is_named_list(items: &[Value]) -> bool {
    is_object_list(items) && items.iter().all(|i| i["name"].is_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn merged(base: Value, overlay: Value) -> Value {
        let mut base = base;
        merge(&mut base, &overlay);
        base
    }

    #[test]
    fn maps_merge_by_key_and_the_overlay_wins() {
        assert_eq!(
            merged(
                json!({"nodeSelector": {"os": "linux", "pool": "a"}, "priorityClassName": "low"}),
                json!({"nodeSelector": {"pool": "b"}, "priorityClassName": "high"})
            ),
            json!({"nodeSelector": {"os": "linux", "pool": "b"}, "priorityClassName": "high"})
        );
    }

    #[test]
    fn named_lists_merge_by_name() {
        assert_eq!(
            merged(
                json!({"containers": [{"name": "runner", "image": "a", "env": [{"name": "X", "value": "1"}]}]}),
                json!({"containers": [
                    {"name": "runner", "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]},
                    {"name": "sidecar", "image": "s"}
                ]})
            ),
            json!({"containers": [
                {"name": "runner", "image": "a", "env": [{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}]},
                {"name": "sidecar", "image": "s"}
            ]})
        );
    }

    #[test]
    fn unnamed_object_lists_are_unioned_without_duplicates() {
        let t = json!({"key": "ci", "operator": "Exists"});
        let u = json!({"key": "gpu", "operator": "Exists"});
        assert_eq!(
            merged(
                json!({"tolerations": [t.clone()]}),
                json!({"tolerations": [t.clone(), u.clone()]})
            ),
            json!({"tolerations": [t, u]})
        );
    }

    #[test]
    fn an_empty_list_keeps_the_base() {
        assert_eq!(
            merged(
                json!({"containers": [{"name": "runner"}]}),
                json!({"containers": []})
            ),
            json!({"containers": [{"name": "runner"}]})
        );
    }

    #[test]
    fn scalar_lists_and_scalars_are_replaced() {
        assert_eq!(
            merged(
                json!({"command": ["a", "b"], "x": 1}),
                json!({"command": ["c"], "x": 2})
            ),
            json!({"command": ["c"], "x": 2})
        );
    }
}
