//! Server-side apply: field sets in the `FieldsV1` shape, per-manager ownership, conflicts,
//! merging an applied configuration and removing fields a manager stopped applying.

use std::collections::{BTreeMap, BTreeSet};

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
    for_each_leaf(obj, strategy, include, &mut |path, _| {
        set.insert(path.clone());
    });
    set
}

/// Each leaf path under the fields `include` takes (as `leaves_under`), with the value there;
/// where two list items share a key, the first one's.
fn leaf_values_under<'a>(
    obj: &'a Value,
    strategy: &Strategy<'_>,
    include: &dyn Fn(&[&str]) -> bool,
) -> BTreeMap<FieldPath, &'a Value> {
    let mut leaves = BTreeMap::new();
    for_each_leaf(obj, strategy, include, &mut |path, value| {
        leaves.entry(path.clone()).or_insert(value);
    });
    leaves
}

fn for_each_leaf<'a>(
    obj: &'a Value,
    strategy: &Strategy<'_>,
    include: &dyn Fn(&[&str]) -> bool,
    visit: &mut dyn FnMut(&FieldPath, &'a Value),
) {
    let Some(map) = obj.as_object() else {
        return;
    };
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
                            visit,
                        );
                    }
                }
            }
            _ if include(&[key]) => walk(
                value,
                strategy,
                &mut vec![key.clone()],
                &mut vec![format!("f:{key}")],
                visit,
            ),
            _ => {}
        }
    }
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

fn walk<'a>(
    value: &'a Value,
    strategy: &Strategy<'_>,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    visit: &mut dyn FnMut(&FieldPath, &'a Value),
) {
    match value {
        Value::Object(map) if !map.is_empty() && !strategy.is_atomic_map(names) => {
            for (k, v) in map {
                names.push(k.clone());
                path.push(format!("f:{k}"));
                walk(v, strategy, names, path, visit);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) => {
            let field = names.last().cloned().unwrap_or_default();
            let parent = &names[..names.len().saturating_sub(1)];
            match strategy.list_kind(parent, &field) {
                ListKind::Atomic => visit(path, value),
                ListKind::Set => {
                    for item in items {
                        path.push(format!("v:{item}"));
                        visit(path, item);
                        path.pop();
                    }
                }
                ListKind::Map(keys) => {
                    for item in items {
                        path.push(item_key(item, &keys));
                        visit(path, item);
                        walk(item, strategy, names, path, visit);
                        path.pop();
                    }
                }
            }
        }
        _ => visit(path, value),
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
    managed_list(obj).iter().map(read_entry).collect()
}

/// The raw entries of `metadata.managedFields` (none when absent).
fn managed_list(obj: &Value) -> &[Value] {
    obj["metadata"]["managedFields"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn read_entry(e: &Value) -> ManagerEntry {
    ManagerEntry {
        manager: e["manager"].as_str().unwrap_or_default().to_owned(),
        operation: e["operation"].as_str().unwrap_or_default().to_owned(),
        api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
        time: e["time"].as_str().unwrap_or_default().to_owned(),
        subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
        fields: from_fields_v1(&e["fieldsV1"]),
    }
}

fn render_entry(e: &ManagerEntry) -> Value {
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
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn write_managed(obj: &mut Value, entries: &[ManagerEntry]) {
    let list = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(render_entry)
        .collect();
    set_managed(obj, list);
}

fn set_managed(obj: &mut Value, list: Vec<Value>) {
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
    // The set is sorted, so an owned path comes before the paths under it: a node that is
    // already there and still empty when a longer path passes through was owned itself, and
    // gets the "." marker.
    for path in set {
        let mut node = &mut root;
        for (i, step) in path.iter().enumerate() {
            let child = match node.entry(step.as_str()) {
                serde_json::map::Entry::Occupied(o) => {
                    let child = o.into_mut();
                    if i + 1 < path.len() && child.as_object().is_some_and(Map::is_empty) {
                        child["."] = json!({});
                    }
                    child
                }
                serde_json::map::Entry::Vacant(v) => v.insert(Value::Object(Map::new())),
            };
            node = child.as_object_mut().expect("tree nodes are objects");
        }
    }
    Value::Object(root)
}

/// The node of a `FieldsV1` tree at a field path, if the tree has one.
fn fields_v1_node<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |node, step| node.get(step))
}

/// Whether the field set a `FieldsV1` tree holds contains `path`.
fn fields_v1_contains(tree: &Value, path: &[String]) -> bool {
    fields_v1_node(tree, path)
        .is_some_and(|n| n.as_object().is_none_or(|m| m.is_empty() || m.contains_key(".")))
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
    // A field equal in both holds no changed or removed leaf; walking only the others gives
    // the same sets without walking, say, a whole Pod template on every status write.
    let differs = |path: &[&str]| value_at(old, path) != value_at(new, path);
    let old_leaves = leaf_values_under(old, strategy, &differs);
    let new_leaves = leaf_values_under(new, strategy, &differs);
    let changed: FieldSet = new_leaves
        .iter()
        .filter(|(path, value)| old_leaves.get(*path) != Some(*value))
        .map(|(path, _)| path.clone())
        .collect();
    let removed: Vec<&FieldPath> = old_leaves
        .keys()
        .filter(|path| !new_leaves.contains_key(*path))
        .collect();
    let is_mine = |e: &Value| {
        e["manager"].as_str().unwrap_or_default() == manager
            && e["operation"].as_str().unwrap_or_default() == "Update"
            && e["subresource"].as_str().unwrap_or_default() == subresource
    };
    let mut list = Vec::new();
    let mut mine_seen = false;
    for raw in managed_list(old) {
        let mine = !mine_seen && is_mine(raw);
        // Only entries that own a changed or removed field, and the writer's own, change;
        // the others (a creator's whole Pod spec, say) are kept as they are.
        let tree = &raw["fieldsV1"];
        let touched = tree.as_object().is_none_or(Map::is_empty)
            || changed.iter().any(|p| fields_v1_contains(tree, p))
            || removed.iter().any(|r| fields_v1_node(tree, r).is_some());
        if !mine && !touched {
            list.push(raw.clone());
            continue;
        }
        let mut entry = read_entry(raw);
        if touched {
            entry
                .fields
                .retain(|p| !changed.contains(p) && !removed.iter().any(|r| p.starts_with(r)));
        }
        if mine {
            mine_seen = true;
            if !changed.is_empty() || !removed.is_empty() {
                entry.fields.extend(changed.iter().cloned());
                entry.time = now.to_owned();
            }
        }
        if !entry.fields.is_empty() {
            list.push(render_entry(&entry));
        }
    }
    if !mine_seen && !changed.is_empty() {
        list.push(render_entry(&ManagerEntry {
            manager: manager.to_owned(),
            operation: "Update".to_owned(),
            api_version: api_version.to_owned(),
            time: now.to_owned(),
            subresource: subresource.to_owned(),
            fields: changed,
        }));
    }
    set_managed(new, list);
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

    /// The record of an update as first written: every entry read, changed and rendered
    /// again, the changed fields found by looking each leaf up from the root. The reference
    /// for `record_update`, which leaves entries it does not touch as they are.
    fn record_update_plainly(
        old: &Value,
        new: &mut Value,
        manager: &str,
        subresource: &str,
        strategy: &Strategy<'_>,
    ) {
        let mut entries = read_managed(old);
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
        let is_mine = |e: &ManagerEntry| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        };
        match entries.iter_mut().find(|e| is_mine(e)) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = "t2".to_owned();
            }
            None => entries.push(ManagerEntry {
                manager: manager.to_owned(),
                operation: "Update".to_owned(),
                api_version: "v1".to_owned(),
                time: "t2".to_owned(),
                subresource: subresource.to_owned(),
                fields: changed,
            }),
        }
        write_managed(new, &entries);
    }

    /// `to_fields_v1` as first written: the tree first, then a lookup per node for the "."
    /// markers.
    fn to_fields_v1_plainly(set: &FieldSet) -> Value {
        let mut root = Map::new();
        for path in set {
            let mut node = &mut root;
            for step in path {
                node = node
                    .entry(step.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .unwrap();
            }
        }
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

    type Change = fn(&mut Value);

    /// Writes in turn by different managers, on the main resource and on `status`, that
    /// change, add and remove fields, keyed items, set members and whole subtrees.
    fn pod_writes() -> Vec<(&'static str, &'static str, Change)> {
        vec![
            ("kubelet", "status", |o| {
                o["status"] = json!({"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}]});
            }),
            ("ctl", "", |o| {
                o["metadata"]["labels"]["added"] = json!("1");
                o["metadata"]["labels"].as_object_mut().unwrap().remove("drop");
                o["spec"]["containers"][0]["image"] = json!("runner:2");
                o["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "B", "value": "2"}));
            }),
            ("kubelet", "status", |o| {
                o["status"]["conditions"][0]["status"] = json!("True")
            }),
            ("creator", "", |o| {
                o["spec"]["containers"].as_array_mut().unwrap().remove(1);
                o["metadata"]["finalizers"] = json!(["a"]);
            }),
            ("ctl", "", |o| {
                o["spec"]["nodeSelector"] = json!("not an object any more")
            }),
            ("ctl", "", |_| {}),
            ("other", "", |o| o["metadata"]["labels"] = json!({})),
            ("kubelet", "status", |o| {
                o["status"].as_object_mut().unwrap().remove("conditions");
            }),
            ("ctl", "", |o| {
                o["metadata"]["annotations"] = json!({"a": "1"});
                o["spec"]["containers"][0]["env"] = json!([
                    {"name": "A", "value": "1"}, {"name": "A", "value": "dup"}]);
            }),
            ("creator", "", |o| {
                o["spec"]
                    .as_object_mut()
                    .unwrap()
                    .retain(|k, _| k == "containers");
            }),
        ]
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"keep": "1", "drop": "1"}, "finalizers": ["a", "b"],
                "ownerReferences": [{"uid": "u1", "kind": "EphemeralRunner", "name": "r"}]},
            "spec": {
                "containers": [
                    {"name": "runner", "image": "runner:1", "args": ["run"],
                     "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "s:1"},
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "nodeSelector": {"zone": "a"},
                "volumes": [],
                "securityContext": {},
            },
            "status": {"phase": "Pending"},
        })
    }

    #[test]
    fn an_update_records_what_the_plain_form_records() {
        let check = |start: Value, writes: Vec<(&str, &str, Change)>, strategy: &Strategy<'_>| {
            let mut live = start;
            record_update(&json!({}), &mut live, "creator", "v1", "", strategy, "t1");
            let mut plain = live.clone();
            record_update_plainly(&json!({}), &mut plain, "creator", "", strategy);
            plain["metadata"]["managedFields"][0]["time"] = json!("t1");
            assert_eq!(live, plain, "create");
            for (i, (manager, sub, change)) in writes.into_iter().enumerate() {
                let mut fast = live.clone();
                change(&mut fast);
                let mut plain = fast.clone();
                record_update(&live, &mut fast, manager, "v1", sub, strategy, "t2");
                record_update_plainly(&live, &mut plain, manager, sub, strategy);
                assert_eq!(fast, plain, "write {i} by {manager}");
                live = fast;
            }
            assert!(!read_managed(&live).is_empty());
        };
        check(pod(), pod_writes(), &Strategy::Builtin);
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "labels": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object"}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic"}}}}});
        let runner = json!({"metadata": {"name": "r"}, "spec": {
            "labels": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}],
            "tags": ["x", "y"], "selector": {"k": "v"}}});
        let runner_writes: Vec<(&str, &str, Change)> = vec![
            ("ctl", "status", |o| {
                o["status"] = json!({"phase": "Running", "runnerId": 7})
            }),
            ("ctl", "", |o| {
                o["spec"]["labels"][1]["value"] = json!("3");
                o["spec"]["tags"] = json!(["y", "z"]);
                o["spec"]["selector"]["k"] = json!("w");
            }),
            ("listener", "status", |o| o["status"]["jobId"] = json!("j")),
            ("ctl", "", |o| {
                o["spec"]["labels"].as_array_mut().unwrap().remove(0);
            }),
        ];
        check(runner, runner_writes, &Strategy::Schema(&schema));
    }

    #[test]
    fn entries_that_own_nothing_are_dropped() {
        let mut old = json!({"data": {"x": "1"}});
        record_update(&json!({}), &mut old, "a", "v1", "", &Strategy::Builtin, "t");
        old["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"manager": "empty", "operation": "Update", "fieldsType": "FieldsV1"}));
        let mut new = old.clone();
        new["data"]["y"] = json!("2");
        record_update(&old, &mut new, "b", "v1", "", &Strategy::Builtin, "t");
        let managers: Vec<String> = read_managed(&new).into_iter().map(|e| e.manager).collect();
        assert_eq!(managers, ["a", "b"]);
    }

    #[test]
    fn fields_v1_trees_match_the_plain_rendering() {
        let mut sets = vec![leaves(&pod(), &Strategy::Builtin)];
        let mut nested = FieldSet::new();
        for path in [
            &["f:a"][..],
            &["f:a", "f:b"],
            &["f:a", "f:b", "f:c"],
            &["f:a", "f:d"],
            &["f:e"],
        ] {
            nested.insert(path.iter().map(|s| s.to_string()).collect());
        }
        sets.push(nested);
        for set in sets {
            let tree = to_fields_v1(&set);
            assert_eq!(tree, to_fields_v1_plainly(&set));
            assert_eq!(from_fields_v1(&tree), set);
            for path in &set {
                assert!(fields_v1_contains(&tree, path), "{path:?}");
            }
        }
    }
}
