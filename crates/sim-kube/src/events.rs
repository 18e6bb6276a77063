//! Conversion between `events.k8s.io/v1` Events and core `v1` Events, which a real API server
//! stores once and serves in both groups.

use serde_json::{Map, Value, json};

/// Field renames: (events.k8s.io/v1 name, core/v1 name).
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, to_core: bool) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let renamed = RENAMES
            .iter()
            .find(|(new, core)| if to_core { k == new } else { k == core })
            .map(|(new, core)| if to_core { *core } else { *new })
            .unwrap_or(k.as_str());
        out.insert(renamed.to_owned(), v.clone());
    }
    Value::Object(out)
}

/// A core/v1 Event as events.k8s.io/v1 serves it.
pub fn to_events_v1(core: &Value) -> Value {
    let mut v = rename(core, false);
    v["apiVersion"] = json!("events.k8s.io/v1");
    v["kind"] = json!("Event");
    v
}

/// An events.k8s.io/v1 Event as core/v1 stores it.
pub fn to_core(event: &Value) -> Value {
    let mut v = rename(event, true);
    if v.get("apiVersion").is_some() {
        v["apiVersion"] = json!("v1");
    }
    v
}

/// Translates an events.k8s.io/v1 field selector path to the core/v1 one.
pub fn core_field_path(path: &str) -> String {
    for (new, core) in RENAMES {
        if path == *new {
            return (*core).to_owned();
        }
        if let Some(rest) = path.strip_prefix(&format!("{new}.")) {
            return format!("{core}.{rest}");
        }
    }
    path.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reportingController": "rssc", "reason": "Started"});
        let core = to_core(&e);
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "rssc");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(to_events_v1(&core), e);
        assert_eq!(core_field_path("regarding.name"), "involvedObject.name");
        assert_eq!(core_field_path("reason"), "reason");
    }
}
