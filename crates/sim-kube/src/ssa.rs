//! Server-side apply: field sets in the `FieldsV1` shape, per-manager ownership, conflicts,
//! merging an applied configuration and removing fields a manager stopped applying.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::resources::{ListKind, builtin_list_kind};

/// How lists and maps of one resource type merge.
#[derive(Debug, Clone, Copy)]
pub enum Strategy<'a> {
    /// A built-in type: merge keys from the Kubernetes types.
    Builtin,
    /// A custom resource: `x-kubernetes-list-type`/`-list-map-keys`/`-map-type` from its schema.
    Schema(&'a Value),
}

fn schema_node<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = schema;
    for step in path {
        while node["type"] == "array" {
            node = &node["items"];
        }
        node = match node["properties"].get(step) {
            Some(child) => child,
            None if node["additionalProperties"].is_object() => &node["additionalProperties"],
            None => return None,
        };
    }
    Some(node)
}

impl Strategy<'_> {
    /// How the list at `parent.field` merges.
    pub fn list_kind(&self, parent: &[String], field: &str) -> ListKind {
        match self {
            Strategy::Schema(schema) if parent.first().is_none_or(|p| p != "metadata") => {
                let mut path = parent.to_vec();
                path.push(field.to_owned());
                match schema_node(schema, &path) {
                    Some(node) if node["x-kubernetes-list-type"] == "map" => ListKind::Map(
                        node["x-kubernetes-list-map-keys"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect(),
                    ),
                    Some(node) if node["x-kubernetes-list-type"] == "set" => ListKind::Set,
                    _ => ListKind::Atomic,
                }
            }
            _ => builtin_list_kind(parent, field),
        }
    }

    /// Whether the map at `path` is replaced as a whole.
    pub fn is_atomic_map(&self, path: &[String]) -> bool {
        match self {
            Strategy::Schema(schema) if path.first().is_none_or(|p| p != "metadata") => {
                schema_node(schema, path).is_some_and(|n| n["x-kubernetes-map-type"] == "atomic")
            }
            _ => path.len() == 2 && path[0] == "spec" && path[1] == "selector",
        }
    }
}

/// One path element in `FieldsV1` notation: `f:name`, `k:{"name":"x"}` or `v:"value"`.
pub type FieldPath = Vec<String>;

/// A set of owned field paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// The leaf paths of an object (what a manager owns after setting it).
pub fn leaves(obj: &Value, strategy: &Strategy<'_>) -> FieldSet {
    leaves_under(obj, strategy, &|_| true)
}

/// The leaf paths of an object under the fields `include` takes: each top-level field but
/// `metadata`, and metadata's labels, annotations, finalizers and owner references, named by
/// their path (`["spec"]`, `["metadata", "labels"]`).
fn leaves_under(obj: &Value, strategy: &Strategy<'_>, include: &dyn Fn(&[&str]) -> bool) -> FieldSet {
    let mut set = FieldSet::new();
    if let Some(map) = obj.as_object() {
        for (key, value) in map {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(v) = value.get(mk)
                            && include(&["metadata", mk])
                        {
                            walk(
                                v,
                                strategy,
                                &mut vec!["metadata".into(), mk.into()],
                                &mut vec!["f:metadata".into(), format!("f:{mk}")],
                                &mut set,
                            );
                        }
                    }
                }
                _ if include(&[key]) => walk(
                    value,
                    strategy,
                    &mut vec![key.clone()],
                    &mut vec![format!("f:{key}")],
                    &mut set,
                ),
                _ => {}
            }
        }
    }
    set
}

fn value_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |value, key| value.get(key))
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

fn walk(
    value: &Value,
    strategy: &Strategy<'_>,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    set: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() && !strategy.is_atomic_map(names) => {
            for (k, v) in map {
                names.push(k.clone());
                path.push(format!("f:{k}"));
                walk(v, strategy, names, path, set);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) => {
            let field = names.last().cloned().unwrap_or_default();
            let parent = &names[..names.len().saturating_sub(1)];
            match strategy.list_kind(parent, &field) {
                ListKind::Atomic => {
                    set.insert(path.clone());
                }
                ListKind::Set => {
                    for item in items {
                        let mut p = path.clone();
                        p.push(format!("v:{item}"));
                        set.insert(p);
                    }
                }
                ListKind::Map(keys) => {
                    for item in items {
                        path.push(item_key(item, &keys));
                        set.insert(path.clone());
                        walk(item, strategy, names, path, set);
                        path.pop();
                    }
                }
            }
        }
        _ => {
            set.insert(path.clone());
        }
    }
}

/// The value at a field path, if present.
pub fn get_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |node, step| step_into(node, step))
}

fn step_into<'a>(node: &'a Value, step: &str) -> Option<&'a Value> {
    if let Some(field) = step.strip_prefix("f:") {
        node.get(field)
    } else if let Some(key) = step.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        node.as_array()?
            .iter()
            .find(|i| key.iter().all(|(k, v)| i.get(k) == Some(v)))
    } else if let Some(v) = step.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        node.as_array()?.iter().find(|i| **i == v)
    } else {
        None
    }
}

/// Removes the value at a field path (a field, a keyed item or a set member).
pub fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for step in parents {
        let next = if let Some(field) = step.strip_prefix("f:") {
            node.get_mut(field)
        } else if let Some(key) = step.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(key) else {
                return;
            };
            node.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|i| key.iter().all(|(k, v)| i.get(k) == Some(v)))
            })
        } else {
            None
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(m) = node.as_object_mut() {
            m.remove(field);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        if let (Ok(key), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(key),
            node.as_array_mut(),
        ) {
            a.retain(|i| !key.iter().all(|(k, v)| i.get(k) == Some(v)));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(v), Some(a)) = (serde_json::from_str::<Value>(v), node.as_array_mut())
    {
        a.retain(|i| *i != v);
    }
}

/// Renders a field path the way conflict messages do: `.spec.containers[name="a"].image`.
pub fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = step.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// Merges an applied configuration into the live object (apply's "set and merge" half).
pub fn merge_applied(live: &mut Value, applied: &Value, strategy: &Strategy<'_>) {
    merge_at(live, applied, strategy, &mut Vec::new());
}

fn merge_at(live: &mut Value, applied: &Value, strategy: &Strategy<'_>, names: &mut Vec<String>) {
    match (live.as_object_mut(), applied.as_object()) {
        (Some(_), Some(_)) if strategy.is_atomic_map(names) => *live = applied.clone(),
        (Some(live_map), Some(applied_map)) => {
            for (key, value) in applied_map {
                names.push(key.clone());
                match (live_map.get_mut(key), value) {
                    (Some(current), Value::Object(_)) if current.is_object() => {
                        merge_at(current, value, strategy, names)
                    }
                    (Some(current), Value::Array(items)) if current.is_array() => {
                        let parent = &names[..names.len() - 1];
                        let kind = strategy.list_kind(parent, key);
                        merge_list(current, items, &kind, strategy, names);
                    }
                    _ => {
                        live_map.insert(key.clone(), value.clone());
                    }
                }
                names.pop();
            }
        }
        _ => *live = applied.clone(),
    }
}

fn merge_list(
    current: &mut Value,
    items: &[Value],
    kind: &ListKind,
    strategy: &Strategy<'_>,
    names: &mut Vec<String>,
) {
    let Some(list) = current.as_array_mut() else {
        return;
    };
    match kind {
        ListKind::Atomic => *list = items.to_vec(),
        ListKind::Set => {
            for item in items {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        ListKind::Map(keys) => {
            for item in items {
                match list
                    .iter_mut()
                    .find(|c| keys.iter().all(|k| c.get(k) == item.get(k)))
                {
                    Some(existing) => merge_at(existing, item, strategy, names),
                    None => list.push(item.clone()),
                }
            }
        }
    }
}

/// One manager's ownership entry, as in `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `apiVersion` the manager used.
    pub api_version: String,
    /// When it last changed.
    pub time: String,
    /// Subresource (`status`) or empty.
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields`.
pub fn read_managed(obj: &Value) -> Vec<ManagerEntry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ManagerEntry {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or_default().to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().unwrap_or_default().to_owned(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn write_managed(obj: &mut Value, entries: &[ManagerEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = crate::util::meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".to_owned(), Value::Array(list));
    }
}

/// Renders a field set as a `FieldsV1` tree.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for step in path {
            node = node
                .entry(step.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("tree nodes are objects");
        }
    }
    // Paths that have children and are owned themselves get a "." marker.
    fn mark(node: &mut Map<String, Value>, prefix: &mut Vec<String>, set: &FieldSet) {
        for (key, child) in node.iter_mut() {
            prefix.push(key.clone());
            if let Some(child_map) = child.as_object_mut() {
                if !child_map.is_empty() && set.contains(prefix) {
                    child_map.insert(".".to_owned(), json!({}));
                }
                mark(child_map, prefix, set);
            }
            prefix.pop();
        }
    }
    mark(&mut root, &mut Vec::new(), set);
    Value::Object(root)
}

/// Reads a `FieldsV1` tree into a field set.
pub fn from_fields_v1(tree: &Value) -> FieldSet {
    fn collect(node: &Map<String, Value>, prefix: &mut Vec<String>, set: &mut FieldSet) {
        for (key, child) in node {
            if key == "." {
                continue;
            }
            prefix.push(key.clone());
            match child.as_object() {
                Some(m) if !m.is_empty() => {
                    if m.contains_key(".") {
                        set.insert(prefix.clone());
                    }
                    collect(m, prefix, set);
                }
                _ => {
                    set.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut set = FieldSet::new();
    if let Some(m) = tree.as_object() {
        collect(m, &mut Vec::new(), &mut set);
    }
    set
}

/// A field owned by another manager whose value the applied configuration would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The `apiVersion` it used.
    pub api_version: String,
    /// The contested field, rendered (`.spec.replicas`).
    pub field: String,
}

/// Everything an apply needs: the live object (or an empty one), the applied configuration, the
/// manager, whether to force, and the subresource ("" or "status").
pub struct ApplyRequest<'a> {
    /// The stored object (`{}` when creating).
    pub live: &'a Value,
    /// The applied configuration (already restricted to what this endpoint may change).
    pub applied: &'a Value,
    /// Field manager.
    pub manager: &'a str,
    /// `force=true`.
    pub force: bool,
    /// `apiVersion` of the request.
    pub api_version: &'a str,
    /// Subresource, "" or "status".
    pub subresource: &'a str,
    /// Merge strategy of the type.
    pub strategy: Strategy<'a>,
    /// Timestamp for the manager entry.
    pub now: &'a str,
}

/// Applies a configuration: returns the new object with updated `managedFields`, or the
/// conflicts when another manager owns a field with a different value and `force` is false.
pub fn apply(req: &ApplyRequest<'_>) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_managed(req.live);
    let new_set = leaves(req.applied, &req.strategy);
    let mine = |e: &ManagerEntry| {
        e.manager == req.manager && e.operation == "Apply" && e.subresource == req.subresource
    };
    let mut conflicts = Vec::new();
    for entry in entries.iter_mut().filter(|e| !mine(e)) {
        let contested: Vec<FieldPath> = entry
            .fields
            .iter()
            .filter(|p| {
                new_set.contains(*p)
                    && !p.last().is_some_and(|s| s.starts_with("k:"))
                    && get_path(req.live, p) != get_path(req.applied, p)
            })
            .cloned()
            .collect();
        if contested.is_empty() {
            continue;
        }
        if req.force {
            for p in &contested {
                entry.fields.remove(p);
            }
        } else {
            conflicts.extend(contested.iter().map(|p| Conflict {
                manager: entry.manager.clone(),
                api_version: entry.api_version.clone(),
                field: render_path(p),
            }));
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let old_set = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut result = req.live.clone();
    // Remove what this manager applied before, no longer applies, and nobody else owns.
    let others: Vec<&FieldSet> = entries.iter().filter(|e| !mine(e)).map(|e| &e.fields).collect();
    let owned_elsewhere = |p: &FieldPath| others.iter().any(|s| s.iter().any(|q| q.starts_with(p)));
    // Keep a parent item if the manager still applies something inside it.
    let dropped: Vec<&FieldPath> = old_set
        .iter()
        .filter(|p| !new_set.contains(*p) && !owned_elsewhere(p))
        .filter(|p| !new_set.iter().any(|q| q.starts_with(p)))
        .collect();
    // Removing an item removes its fields; removing the fields first would change the item's
    // key and lose it.
    for p in &dropped {
        if !dropped.iter().any(|q| q.len() < p.len() && p.starts_with(q)) {
            remove_path(&mut result, p);
        }
    }
    merge_applied(&mut result, req.applied, &req.strategy);
    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.fields = new_set;
            e.time = req.now.to_owned();
            e.api_version = req.api_version.to_owned();
        }
        None => entries.push(ManagerEntry {
            manager: req.manager.to_owned(),
            operation: "Apply".to_owned(),
            api_version: req.api_version.to_owned(),
            time: req.now.to_owned(),
            subresource: req.subresource.to_owned(),
            fields: new_set,
        }),
    }
    write_managed(&mut result, &entries);
    Ok(result)
}

/// Records a non-apply write: `manager` takes the fields it changed; removed fields are
/// dropped from every manager.
pub fn record_update(
    old: &Value,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    strategy: &Strategy<'_>,
    now: &str,
) {
    let mut entries = read_managed(old);
    // A field equal in both holds no changed or removed leaf; walking only the others gives
    // the same sets without walking, say, a whole Pod template on every status write.
    let differs = |path: &[&str]| value_at(old, path) != value_at(new, path);
    let old_leaves = leaves_under(old, strategy, &differs);
    let new_leaves = leaves_under(new, strategy, &differs);
    let changed: FieldSet = new_leaves
        .iter()
        .filter(|p| get_path(old, p) != get_path(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_leaves.difference(&new_leaves).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        write_managed(new, &entries);
        return;
    }
    for entry in &mut entries {
        entry
            .fields
            .retain(|p| !changed.contains(p) && !removed.iter().any(|r| p.starts_with(r)));
    }
    let is_mine =
        |e: &ManagerEntry| e.manager == manager && e.operation == "Update" && e.subresource == subresource;
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) => {
            e.fields.extend(changed);
            e.time = now.to_owned();
        }
        None => entries.push(ManagerEntry {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            subresource: subresource.to_owned(),
            fields: changed,
        }),
    }
    write_managed(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(live: &'a Value, applied: &'a Value, manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            live,
            applied,
            manager,
            force,
            api_version: "v1",
            subresource: "",
            strategy: Strategy::Builtin,
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let set = leaves(&obj, &Strategy::Builtin);
        let tree = to_fields_v1(&set);
        assert_eq!(
            tree["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&tree), set);
    }

    #[test]
    fn apply_sets_merges_removes_and_conflicts() {
        let a1 = json!({"metadata": {"labels": {"a": "1", "b": "1"}}, "data": {"x": "1"}});
        let live = apply(&req(&json!({}), &a1, "alice", false)).unwrap();
        assert_eq!(live["data"]["x"], "1");
        // Bob applies a different label and the same data value: shared ownership, no conflict.
        let b1 = json!({"metadata": {"labels": {"c": "1"}}, "data": {"x": "1"}});
        let live = apply(&req(&live, &b1, "bob", false)).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"a": "1", "b": "1", "c": "1"}));
        // Alice stops applying label b and data.x: b is removed, x stays (bob owns it).
        let a2 = json!({"metadata": {"labels": {"a": "1"}}});
        let live = apply(&req(&live, &a2, "alice", false)).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"a": "1", "c": "1"}));
        assert_eq!(live["data"]["x"], "1");
        // Alice changing x conflicts with bob unless forced.
        let a3 = json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "2"}});
        let conflicts = apply(&req(&live, &a3, "alice", false)).unwrap_err();
        assert_eq!(conflicts[0].manager, "bob");
        assert_eq!(conflicts[0].field, ".data.x");
        let live = apply(&req(&live, &a3, "alice", true)).unwrap();
        assert_eq!(live["data"]["x"], "2");
        let managers = read_managed(&live);
        let bob = managers.iter().find(|m| m.manager == "bob").unwrap();
        assert!(!bob.fields.contains(&vec!["f:data".to_owned(), "f:x".to_owned()]));
    }

    #[test]
    fn apply_merges_lists_by_key() {
        let live =
            json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        let mut live = live.clone();
        record_update(
            &json!({}),
            &mut live,
            "creator",
            "v1",
            "",
            &Strategy::Builtin,
            "t",
        );
        let applied = json!({"spec": {"containers": [{"name": "a", "image": "a:1", "args": ["x"]}]}});
        let out = apply(&req(&live, &applied, "alice", false)).unwrap();
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["x"]));
        // Applying without a container alice never applied keeps it; removing hers drops only hers.
        let applied2 = json!({"spec": {"containers": [{"name": "c", "image": "c:1"}]}});
        let out2 = apply(&req(&out, &applied2, "alice", false)).unwrap();
        let names: Vec<&str> = out2["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert!(out2["spec"]["containers"][0].get("args").is_none());
    }

    #[test]
    fn crd_schemas_decide_list_merging() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "labels": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}},
            "args": {"type": "array", "items": {"type": "string"}}
        }}}});
        let strategy = Strategy::Schema(&schema);
        let empty = json!({});
        let a = json!({"spec": {"labels": [{"name": "x", "value": "1"}], "args": ["1"]}});
        let mut r = req(&empty, &a, "a", false);
        r.strategy = strategy;
        let live = apply(&r).unwrap();
        let b = json!({"spec": {"labels": [{"name": "y", "value": "2"}], "args": ["2"]}});
        let mut r2 = req(&live, &b, "b", false);
        r2.strategy = strategy;
        let conflicts = apply(&r2).unwrap_err();
        assert_eq!(
            conflicts.len(),
            1,
            "only the atomic list conflicts: {conflicts:?}"
        );
        assert_eq!(conflicts[0].field, ".spec.args");
        r2.force = true;
        let merged = apply(&r2).unwrap();
        assert_eq!(merged["spec"]["labels"].as_array().unwrap().len(), 2);
        assert_eq!(merged["spec"]["args"], json!(["2"]));
    }

    #[test]
    fn dropping_a_keyed_item_removes_it_whole() {
        let empty = json!({});
        let a1 = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "x"}});
        let live = apply(&req(&empty, &a1, "ctl", false)).unwrap();
        let a2 = json!({"status": {"phase": "x"}});
        let out = apply(&req(&live, &a2, "ctl", false)).unwrap();
        assert_eq!(out["status"]["conditions"], json!([]));
        assert_eq!(out["status"]["phase"], "x");
    }

    #[test]
    fn updates_take_ownership() {
        let old = json!({"data": {"x": "1"}});
        let mut mid = old.clone();
        record_update(&json!({}), &mut mid, "a", "v1", "", &Strategy::Builtin, "t");
        let mut new = mid.clone();
        new["data"]["x"] = json!("2");
        record_update(&mid, &mut new, "b", "v1", "", &Strategy::Builtin, "t");
        let m = read_managed(&new);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].manager, "b");
    }

    #[test]
    fn an_update_takes_only_what_it_changed_and_drops_what_it_removed() {
        let mut created = json!({
            "metadata": {"labels": {"keep": "1", "drop": "1"}},
            "spec": {"template": {"image": "x", "args": ["a"]}},
            "status": {"phase": "Pending"},
        });
        record_update(
            &json!({}),
            &mut created,
            "creator",
            "v1",
            "",
            &Strategy::Builtin,
            "t",
        );
        let mut updated = created.clone();
        updated["status"]["phase"] = json!("Running");
        updated["status"]["runnerId"] = json!(7);
        updated["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("drop");
        record_update(
            &created,
            &mut updated,
            "writer",
            "v1",
            "",
            &Strategy::Builtin,
            "t",
        );
        let owned = |manager: &str| -> BTreeSet<String> {
            read_managed(&updated)
                .into_iter()
                .find(|e| e.manager == manager)
                .map(|e| e.fields.iter().map(|p| p.join(".")).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            owned("writer"),
            BTreeSet::from(["f:status.f:phase".to_owned(), "f:status.f:runnerId".to_owned()])
        );
        let creator = owned("creator");
        assert!(creator.contains("f:spec.f:template.f:image"), "{creator:?}");
        assert!(creator.contains("f:metadata.f:labels.f:keep"), "{creator:?}");
        assert!(!creator.contains("f:metadata.f:labels.f:drop"), "{creator:?}");
        assert!(!creator.contains("f:status.f:phase"), "{creator:?}");
    }
}
