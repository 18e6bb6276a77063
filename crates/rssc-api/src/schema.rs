//! Schema helpers for Kubernetes types embedded in our CRDs.
//!
//! A pod template appears in all four CRDs. Kubernetes' own field descriptions for it are
//! roughly two thirds of its schema; with them the CRDs grow past what client-side
//! `kubectl apply` can store in its last-applied annotation (256 KiB). So embedded Kubernetes
//! types keep their structure and validation but drop their prose (`kubectl explain` still
//! explains our own fields, and Kubernetes' are documented upstream).

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

/// Schema of an embedded Kubernetes type, without its descriptions.
pub fn embedded<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    without_descriptions(generator.subschema_for::<T>())
}

/// Schema of an optional list of an embedded Kubernetes type, without its descriptions.
pub fn embedded_list<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    without_descriptions(generator.subschema_for::<Vec<T>>())
}

fn without_descriptions(schema: Schema) -> Schema {
    let mut value = schema.to_value();
    strip_descriptions(&mut value);
    // Stripping keys from an object schema leaves an object schema.
    Schema::try_from(value).unwrap_or_default()
}

/// Removes every `description` below `value` (but not properties that happen to be named so).
pub fn strip_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("description");
            for (key, child) in map.iter_mut() {
                if key == "properties" {
                    // Keys here are field names; a field called `description` must survive.
                    if let Value::Object(props) = child {
                        props.values_mut().for_each(strip_descriptions);
                    }
                } else {
                    strip_descriptions(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

/// Replaces every `anyOf: [X, {enum: [null], nullable: true}]` below `value` by `X` with
/// `nullable: true`, keeping the outer description.
pub fn collapse_nullable_any_of(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let collapsible = map.get("anyOf").and_then(Value::as_array).and_then(|variants| {
                let is_null = |v: &Value| v.get("enum") == Some(&serde_json::json!([null]));
                match variants.as_slice() {
                    [one, null] | [null, one] if is_null(null) && !is_null(one) => Some(one.clone()),
                    _ => None,
                }
            });
            if let Some(Value::Object(inner)) = collapsible {
                map.remove("anyOf");
                for (key, v) in inner {
                    // The field's own description is more specific than the enum type's.
                    map.entry(key).or_insert(v);
                }
                map.insert("nullable".into(), Value::Bool(true));
            }
            map.values_mut().for_each(collapse_nullable_any_of);
        }
        Value::Array(items) => items.iter_mut().for_each(collapse_nullable_any_of),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn optional_enums_become_nullable_enums() {
        let mut v = json!({"properties": {"phase": {
            "description": "field",
            "anyOf": [{"description": "type", "enum": ["A", "B"], "type": "string"}, {"enum": [null], "nullable": true}]
        }}});
        collapse_nullable_any_of(&mut v);
        assert_eq!(
            v,
            json!({"properties": {"phase": {"description": "field", "enum": ["A", "B"], "type": "string", "nullable": true}}})
        );
    }

    #[test]
    fn keeps_fields_named_description() {
        let mut v = json!({
            "description": "drop me",
            "type": "object",
            "properties": {
                "description": {"type": "string", "description": "drop me too"},
                "items": {"type": "array", "items": {"description": "and me", "type": "string"}}
            }
        });
        strip_descriptions(&mut v);
        assert_eq!(
            v,
            json!({
                "type": "object",
                "properties": {
                    "description": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "string"}}
                }
            })
        );
    }
}
