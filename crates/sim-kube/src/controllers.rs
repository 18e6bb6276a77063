//! What a real cluster's controller manager does that the project relies on: garbage
//! collection through owner references (background, foreground, orphan), namespace deletion,
//! the default ServiceAccount and root CA ConfigMap of each namespace, and a minimal
//! Deployment → ReplicaSet → Pod controller.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::store::{DeleteOptions, Store, WriteOptions, finalizers};
use crate::util::{fnv32a, now_rfc3339, safe_encode, str_at};

const MANAGER: &str = "kube-controller-manager";

/// An object with its type, as the store lists it (shared with the store, not copied).
type Entry = (Arc<ResourceType>, Arc<Value>);

fn opts() -> WriteOptions {
    WriteOptions {
        manager: MANAGER.to_owned(),
        dry_run: false,
        field_validation: "Ignore".to_owned(),
    }
}

/// The shortest time between two rounds of passes.
const PASS_SPACING: Duration = Duration::from_millis(100);

/// Runs the controllers until the store is dropped by everyone else.
pub async fn run(store: Arc<Store>) {
    let mut memo = FactsMemo::default();
    loop {
        let notified = store.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Several passes per wake-up, since each pass may enable the next step.
        for _ in 0..4 {
            if !reconcile_with_memo(&store, &mut memo) {
                break;
            }
        }
        if Arc::strong_count(&store) <= 1 {
            return;
        }
        // A pass looks at every object; under a burst of writes, passing after each one would
        // take the CPU from the clients under test. Changes meanwhile still wake the next pass
        // (`notified` is enabled), as a controller manager's informers batch events.
        tokio::time::sleep(PASS_SPACING).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        if Arc::strong_count(&store) <= 1 {
            return;
        }
    }
}

/// What a pass needs to know about one object, read from its JSON once per stored version.
/// Missing strings read as the old per-call helpers read them (`""`, or `None` where an
/// absent value must not match an empty one).
#[derive(Debug)]
struct ObjectFacts {
    /// `metadata.uid`, or `""`.
    uid: String,
    /// `metadata.namespace`; `None` never equals a dependent's namespace, even `""`.
    namespace: Option<String>,
    /// `metadata.name`; `None` is written as `null` in an owner reference.
    name: Option<String>,
    /// Whether `metadata.deletionTimestamp` is set.
    deleting: bool,
    /// `metadata.finalizers`.
    finalizers: Vec<String>,
    /// The uid of each owner reference, in order (`""` for one without a uid).
    owner_uids: Vec<String>,
    /// The uid of the first owner reference with `controller: true` (`None` if it has none).
    controller_uid: Option<String>,
}

impl ObjectFacts {
    fn read(o: &Value) -> Self {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let refs = owner_refs(o);
        Self {
            uid: str_at(o, "metadata.uid").unwrap_or_default().to_owned(),
            namespace: owned(str_at(o, "metadata.namespace")),
            name: owned(str_at(o, "metadata.name")),
            deleting: !o["metadata"]["deletionTimestamp"].is_null(),
            finalizers: finalizers(o),
            owner_uids: refs
                .iter()
                .map(|r| r["uid"].as_str().unwrap_or_default().to_owned())
                .collect(),
            controller_uid: owned(
                refs.iter()
                    .find(|r| r["controller"] == true)
                    .and_then(|r| r["uid"].as_str()),
            ),
        }
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// The facts of stored objects, kept between passes so that an object that did not change is
/// not read again (most objects, most passes).
///
/// The store never changes a stored object in place: every write stores a new `Arc`, so an
/// `Arc`'s address identifies one version of one object. Each entry holds a clone of the `Arc`
/// it describes: while the entry exists the allocation cannot be freed, so its address cannot
/// be reused by another object and mistaken for this one (and nobody can get `&mut` to it).
#[derive(Debug, Default)]
pub struct FactsMemo {
    /// By the address of the stored object; only the objects of the latest pass.
    entries: HashMap<usize, MemoEntry>,
}

#[derive(Debug)]
struct MemoEntry {
    /// Keeps the address of `object` from being reused while this entry exists.
    object: Arc<Value>,
    facts: Arc<ObjectFacts>,
}

impl FactsMemo {
    /// The facts of each of `all`, in order, read only for objects not in the previous call;
    /// forgets the objects that are not in `all` any more.
    fn refresh(&mut self, all: &[Entry]) -> Vec<Arc<ObjectFacts>> {
        let mut previous = std::mem::take(&mut self.entries);
        self.entries.reserve(all.len());
        all.iter()
            .map(|(_, object)| {
                let address = Arc::as_ptr(object) as usize;
                let entry = previous.remove(&address).unwrap_or_else(|| MemoEntry {
                    object: object.clone(),
                    facts: Arc::new(ObjectFacts::read(object)),
                });
                debug_assert!(Arc::ptr_eq(&entry.object, object));
                let facts = entry.facts.clone();
                self.entries.insert(address, entry);
                facts
            })
            .collect()
    }
}

/// An object as a pass sees it: its type, its stored JSON and its facts.
struct Object<'a> {
    rt: &'a Arc<ResourceType>,
    value: &'a Value,
    facts: &'a ObjectFacts,
}

impl Object<'_> {
    fn is(&self, group: &str, plural: &str) -> bool {
        self.rt.group == group && self.rt.plural == plural
    }

    /// The namespace to address the object with (`""` when it has none).
    fn namespace(&self) -> &str {
        self.facts.namespace.as_deref().unwrap_or_default()
    }

    /// The name to address the object with (`""` when it has none).
    fn name(&self) -> &str {
        self.facts.name.as_deref().unwrap_or_default()
    }
}

/// The lookups a pass makes, built once per pass rather than by scanning every object for
/// every owner.
struct Index<'a> {
    /// Objects by uid (the last one listed wins, should two share a uid).
    by_uid: HashMap<&'a str, &'a Object<'a>>,
    /// Objects by the uid of each of their owner references, in listing order (an object
    /// referring to an owner twice is listed twice).
    dependents: HashMap<&'a str, Vec<&'a Object<'a>>>,
    /// Objects by the uid of their controller reference, in listing order.
    controlled: HashMap<&'a str, Vec<&'a Object<'a>>>,
}

impl<'a> Index<'a> {
    fn build(objects: &'a [Object<'a>]) -> Self {
        let mut index = Self {
            by_uid: HashMap::with_capacity(objects.len()),
            dependents: HashMap::new(),
            controlled: HashMap::new(),
        };
        for o in objects {
            index.by_uid.insert(&o.facts.uid, o);
            for owner in &o.facts.owner_uids {
                index.dependents.entry(owner).or_default().push(o);
            }
            if let Some(controller) = &o.facts.controller_uid {
                index.controlled.entry(controller).or_default().push(o);
            }
        }
        index
    }

    fn dependents_of(&self, uid: &str) -> &[&'a Object<'a>] {
        self.dependents.get(uid).map_or(&[], Vec::as_slice)
    }

    fn controlled_by(&self, uid: &str) -> &[&'a Object<'a>] {
        self.controlled.get(uid).map_or(&[], Vec::as_slice)
    }
}

fn owner_refs(o: &Value) -> &[Value] {
    o["metadata"]["ownerReferences"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn remove_finalizer(store: &Store, o: &Object<'_>, finalizer: &str) -> bool {
    store
        .write(o.rt, o.namespace(), o.name(), "", &opts(), |cur| {
            let mut new = cur.clone();
            let f: Vec<String> = finalizers(cur).into_iter().filter(|x| x != finalizer).collect();
            new["metadata"]["finalizers"] = json!(f);
            Ok((new, None))
        })
        .is_ok()
}

fn delete(store: &Store, rt: &ResourceType, o: &Object<'_>, propagation: &str) -> bool {
    store
        .delete(
            rt,
            o.namespace(),
            o.name(),
            &DeleteOptions {
                propagation: Some(propagation.to_owned()),
                ..DeleteOptions::default()
            },
        )
        .is_ok()
}

/// One pass over everything; returns whether anything changed.
pub fn reconcile_once(store: &Store) -> bool {
    reconcile_with_memo(store, &mut FactsMemo::default())
}

/// One pass over everything, reading only the objects that changed since the last pass with
/// `memo`; returns whether anything changed.
pub fn reconcile_with_memo(store: &Store, memo: &mut FactsMemo) -> bool {
    let all = store.all_objects();
    let facts = memo.refresh(&all);
    let objects: Vec<Object<'_>> = all
        .iter()
        .zip(&facts)
        .map(|((rt, value), facts)| Object { rt, value, facts })
        .collect();
    let index = Index::build(&objects);
    let mut changed = collect_garbage(store, &objects, &index);
    changed |= finish_deletions(store, &objects, &index);
    changed |= namespace_defaults(store, &objects);
    changed |= replica_sets(store, &index, &objects);
    changed |= deployments(store, &index, &objects);
    changed
}

/// How a dependent's owner references resolve.
#[derive(Default)]
struct Owners {
    /// Some owner exists (in the dependent's namespace, if the owner is namespaced).
    any_live: bool,
    /// Some owner does not.
    any_gone: bool,
    /// Some live owner is being deleted in the foreground.
    any_in_foreground_deletion: bool,
}

fn resolve_owners(index: &Index<'_>, dependent: &Object<'_>) -> Owners {
    // A namespaced owner must be in the dependent's namespace to count.
    let dependent_ns = dependent.namespace();
    let mut owners = Owners::default();
    for uid in &dependent.facts.owner_uids {
        let owner = index
            .by_uid
            .get(uid.as_str())
            .filter(|owner| !owner.rt.namespaced || owner.facts.namespace.as_deref() == Some(dependent_ns));
        match owner {
            Some(owner) => {
                owners.any_live = true;
                owners.any_in_foreground_deletion |=
                    owner.facts.deleting && owner.facts.has_finalizer("foregroundDeletion");
            }
            None => owners.any_gone = true,
        }
    }
    owners
}

/// Garbage collection of dependents whose owners are gone or being deleted in the foreground.
fn collect_garbage(store: &Store, objects: &[Object<'_>], index: &Index<'_>) -> bool {
    let mut changed = false;
    for o in objects {
        if o.facts.owner_uids.is_empty() || o.facts.deleting {
            continue;
        }
        let owners = resolve_owners(index, o);
        if !owners.any_live {
            changed |= delete(store, o.rt, o, "Background");
        } else if owners.any_in_foreground_deletion {
            changed |= delete(store, o.rt, o, "Foreground");
        } else if owners.any_gone {
            changed |= store
                .write(o.rt, o.namespace(), o.name(), "", &opts(), |cur| {
                    let mut new = cur.clone();
                    let kept: Vec<Value> = owner_refs(cur)
                        .iter()
                        .filter(|r| index.by_uid.contains_key(r["uid"].as_str().unwrap_or_default()))
                        .cloned()
                        .collect();
                    new["metadata"]["ownerReferences"] = json!(kept);
                    Ok((new, None))
                })
                .is_ok();
        }
    }
    changed
}

/// Owners being deleted in the foreground or orphaning, and namespaces being deleted.
fn finish_deletions(store: &Store, objects: &[Object<'_>], index: &Index<'_>) -> bool {
    let mut changed = false;
    for o in objects.iter().filter(|o| o.facts.deleting) {
        let deps = index.dependents_of(&o.facts.uid);
        if o.facts.has_finalizer("orphan") {
            let owner = o.facts.uid.as_str();
            for d in deps {
                let _ = store.write(d.rt, d.namespace(), d.name(), "", &opts(), |cur| {
                    let mut new = cur.clone();
                    let kept: Vec<Value> = owner_refs(cur)
                        .iter()
                        .filter(|r| r["uid"] != owner)
                        .cloned()
                        .collect();
                    new["metadata"]["ownerReferences"] = json!(kept);
                    if kept.is_empty()
                        && let Some(m) = new["metadata"].as_object_mut()
                    {
                        m.remove("ownerReferences");
                    }
                    Ok((new, None))
                });
            }
            changed |= remove_finalizer(store, o, "orphan");
        } else if o.facts.has_finalizer("foregroundDeletion") && deps.is_empty() {
            changed |= remove_finalizer(store, o, "foregroundDeletion");
        }
        if o.is("", "namespaces") {
            let ns = o.name();
            let mut empty = true;
            for x in objects
                .iter()
                .filter(|x| x.rt.namespaced && x.facts.namespace.as_deref() == Some(ns))
            {
                empty = false;
                if !x.facts.deleting {
                    changed |= delete(store, x.rt, x, "Background");
                }
            }
            if empty && o.facts.finalizers.is_empty() {
                store.force_remove(o.rt, "", ns);
                changed = true;
            }
        }
    }
    changed
}

fn namespace_defaults(store: &Store, objects: &[Object<'_>]) -> bool {
    let mut changed = false;
    let (Some(sa), Some(cm)) = (
        store.resource("", "serviceaccounts"),
        store.resource("", "configmaps"),
    ) else {
        return false;
    };
    // (plural, namespace, name) of the core ServiceAccounts and ConfigMaps.
    let existing: HashSet<(&str, &str, &str)> = objects
        .iter()
        .filter(|o| o.is("", "serviceaccounts") || o.is("", "configmaps"))
        .map(|o| (o.rt.plural.as_str(), o.namespace(), o.name()))
        .collect();
    let exists = |plural: &str, ns: &str, name: &str| existing.contains(&(plural, ns, name));
    for o in objects.iter().filter(|o| o.is("", "namespaces")) {
        if o.facts.deleting {
            continue;
        }
        let ns = o.name();
        if !exists("serviceaccounts", ns, "default") {
            changed |= store
                .create(&sa, ns, json!({"metadata": {"name": "default"}}), &opts())
                .is_ok();
        }
        if !exists("configmaps", ns, "kube-root-ca.crt") {
            let data = json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nrssc-kube-sim has no TLS\n-----END CERTIFICATE-----\n"}});
            changed |= store.create(&cm, ns, data, &opts()).is_ok();
        }
    }
    changed
}

fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn owner_ref(o: &Object<'_>) -> Value {
    json!({"apiVersion": o.rt.preferred_api_version(), "kind": o.rt.kind, "name": o.facts.name, "uid": o.facts.uid, "controller": true, "blockOwnerDeletion": true})
}

fn write_status(store: &Store, o: &Object<'_>, status: Value) -> bool {
    if o.value["status"] == status {
        return false;
    }
    store
        .write(o.rt, o.namespace(), o.name(), "status", &opts(), |cur| {
            let mut new = cur.clone();
            new["status"] = status.clone();
            Ok((new, None))
        })
        .map(|r| r.object != *o.value)
        .unwrap_or(false)
}

fn replica_sets(store: &Store, index: &Index<'_>, objects: &[Object<'_>]) -> bool {
    let Some(pods_rt) = store.resource("", "pods") else {
        return false;
    };
    let mut changed = false;
    for o in objects.iter().filter(|o| o.is("apps", "replicasets")) {
        if o.facts.deleting {
            continue;
        }
        let (rs, ns, name) = (o.value, o.namespace(), o.name());
        let mut pods: Vec<&Object<'_>> = index
            .controlled_by(&o.facts.uid)
            .iter()
            .filter(|p| p.is("", "pods") && !p.facts.deleting)
            .filter(|p| !matches!(p.value["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .copied()
            .collect();
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        if pods.len() < want {
            let template = &rs["spec"]["template"];
            for _ in pods.len()..want {
                let mut pod =
                    json!({"metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
                if !pod["metadata"].is_object() {
                    pod["metadata"] = json!({});
                }
                pod["metadata"]["generateName"] = json!(format!("{name}-"));
                pod["metadata"]["ownerReferences"] = json!([owner_ref(o)]);
                changed |= store.create(&pods_rt, ns, pod, &opts()).is_ok();
            }
        } else if pods.len() > want {
            pods.sort_by_key(|p| {
                (
                    pod_ready(p.value),
                    std::cmp::Reverse(str_at(p.value, "metadata.creationTimestamp").unwrap_or_default()),
                )
            });
            for p in pods.iter().take(pods.len() - want) {
                changed |= delete(store, &pods_rt, p, "Background");
            }
        }
        let ready = pods.iter().filter(|p| pod_ready(p.value)).count();
        let count = pods.len().min(want.max(pods.len()));
        let status = json!({
            "replicas": count,
            "fullyLabeledReplicas": count,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        let status = strip_zero(status);
        changed |= write_status(store, o, status);
    }
    changed
}

/// Drops zero counts, as the API server omits them (`omitempty`).
fn strip_zero(mut status: Value) -> Value {
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| k == "replicas" || v.as_i64() != Some(0));
    }
    status
}

fn template_hash(template: &Value) -> String {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    safe_encode(fnv32a(t.to_string().as_bytes()))
}

fn deployments(store: &Store, index: &Index<'_>, objects: &[Object<'_>]) -> bool {
    let Some(rs_rt) = store.resource("apps", "replicasets") else {
        return false;
    };
    let mut changed = false;
    for o in objects.iter().filter(|o| o.is("apps", "deployments")) {
        if o.facts.deleting {
            continue;
        }
        let (d, ns, name) = (o.value, o.namespace(), o.name());
        let template = &d["spec"]["template"];
        let hash = template_hash(template);
        let want = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let owned: Vec<&Object<'_>> = index
            .controlled_by(&o.facts.uid)
            .iter()
            .filter(|r| r.is("apps", "replicasets"))
            .copied()
            .collect();
        let is_current = |r: &Object<'_>| r.value["metadata"]["labels"]["pod-template-hash"] == hash.as_str();
        let current = owned.iter().find(|r| is_current(r));
        let old: Vec<&&Object<'_>> = owned.iter().filter(|r| !is_current(r)).collect();
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let old_pods_left = old
            .iter()
            .any(|r| index.controlled_by(&r.facts.uid).iter().any(|p| p.is("", "pods")));
        for r in &old {
            if r.value["spec"]["replicas"].as_i64() != Some(0) {
                changed |= scale(store, &rs_rt, r, 0);
            }
        }
        let new_want = if recreate && old_pods_left { 0 } else { want };
        let revision = owned
            .iter()
            .filter_map(|r| {
                r.value["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()?
                    .parse::<i64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        match current {
            None => {
                let mut tmpl = template.clone();
                if !tmpl["metadata"].is_object() {
                    tmpl["metadata"] = json!({});
                }
                tmpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut labels = template["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                labels["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "metadata": {
                        "name": format!("{name}-{hash}"),
                        "labels": labels,
                        "annotations": {"deployment.kubernetes.io/revision": (revision + 1).to_string(),
                            "deployment.kubernetes.io/desired-replicas": want.to_string()},
                        "ownerReferences": [owner_ref(o)],
                    },
                    "spec": {"replicas": new_want, "selector": selector, "template": tmpl},
                });
                changed |= store.create(&rs_rt, ns, rs, &opts()).is_ok();
            }
            Some(r) => {
                if r.value["spec"]["replicas"].as_i64() != Some(new_want) {
                    changed |= scale(store, &rs_rt, r, new_want);
                }
            }
        }
        // Status from the ReplicaSets.
        let sum = |field: &str| -> i64 {
            owned
                .iter()
                .map(|r| r.value["status"][field].as_i64().unwrap_or(0))
                .sum()
        };
        let replicas = sum("replicas");
        let ready = sum("readyReplicas");
        let available = sum("availableReplicas");
        let updated = current.map_or(0, |r| r.value["status"]["replicas"].as_i64().unwrap_or(0));
        let available_ok = available >= want;
        let condition = |t: &str, s: bool, reason: &str, message: String| {
            let status = if s { "True" } else { "False" };
            let old = d["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == t && c["status"] == status && c["reason"] == reason)
                .cloned();
            old.unwrap_or_else(|| json!({"type": t, "status": status, "reason": reason, "message": message, "lastUpdateTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}))
        };
        let complete = current.is_some() && updated == want && replicas == want && available_ok;
        let status = strip_zero(json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": (want - available).max(0),
            "conditions": [
                condition("Available", available_ok, if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                    if available_ok { "Deployment has minimum availability.".into() } else { "Deployment does not have minimum availability.".into() }),
                condition("Progressing", true, if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                    format!("ReplicaSet \"{name}-{hash}\" {}", if complete { "has successfully progressed." } else { "is progressing." })),
            ],
        }));
        changed |= write_status(store, o, status);
    }
    changed
}

fn scale(store: &Store, rt: &ResourceType, r: &Object<'_>, replicas: i64) -> bool {
    store
        .write(rt, r.namespace(), r.name(), "", &opts(), |cur| {
            let mut new = cur.clone();
            new["spec"]["replicas"] = json!(replicas);
            Ok((new, None))
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_ignores_its_own_label() {
        let t = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}]}});
        let mut labelled = t.clone();
        labelled["metadata"]["labels"]["pod-template-hash"] = json!("x");
        assert_eq!(template_hash(&t), template_hash(&labelled));
        let mut changed = t.clone();
        changed["spec"]["containers"][0]["image"] = json!("i");
        assert_ne!(template_hash(&t), template_hash(&changed));
    }

    #[test]
    fn zero_counts_are_omitted() {
        let s = strip_zero(json!({"replicas": 0, "readyReplicas": 0, "availableReplicas": 2}));
        assert_eq!(s, json!({"replicas": 0, "availableReplicas": 2}));
    }

    #[test]
    fn facts_read_missing_fields_as_the_controllers_expect() {
        let facts = ObjectFacts::read(&json!({"metadata": {
            "name": "n",
            "finalizers": ["orphan"],
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"name": "a"}, {"uid": "b", "controller": true}, {"uid": "c", "controller": true}],
        }}));
        assert_eq!(facts.uid, "");
        assert_eq!(facts.namespace, None);
        assert_eq!(facts.name.as_deref(), Some("n"));
        assert!(facts.deleting && facts.has_finalizer("orphan"));
        assert_eq!(facts.owner_uids, ["", "b", "c"]);
        assert_eq!(facts.controller_uid.as_deref(), Some("b"));
    }

    fn entry(value: &Arc<Value>) -> Entry {
        let rt = Arc::new(
            crate::resources::builtins()
                .into_iter()
                .find(|t| t.group.is_empty() && t.plural == "configmaps")
                .expect("configmaps are built in"),
        );
        (rt, value.clone())
    }

    #[test]
    fn memo_rereads_changed_objects_and_forgets_gone_ones() {
        let a = Arc::new(json!({"metadata": {"uid": "a"}}));
        let b = Arc::new(json!({"metadata": {"uid": "b"}}));
        let mut memo = FactsMemo::default();
        let first = memo.refresh(&[entry(&a), entry(&b)]);
        assert_eq!((first[0].uid.as_str(), first[1].uid.as_str()), ("a", "b"));

        // A write stores a new Arc: its facts are read again; the unchanged object's are kept.
        let b2 = Arc::new(json!({"metadata": {"uid": "b", "deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        let second = memo.refresh(&[entry(&a), entry(&b2)]);
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        assert!(!first[1].deleting && second[1].deleting);
        assert_eq!(memo.entries.len(), 2, "the old version of b is forgotten");

        // A deleted object is forgotten, and its Arc released.
        drop(b);
        memo.refresh(&[entry(&a)]);
        assert_eq!(memo.entries.len(), 1);
        assert_eq!(Arc::strong_count(&b2), 1);
    }

    #[test]
    fn passes_with_one_memo_see_each_write_of_the_previous_pass() {
        let store = Store::new(1000);
        let cms = store.resource("", "configmaps").expect("configmaps are built in");
        let create = |body: Value| {
            store
                .create(&cms, "default", body, &WriteOptions::default())
                .expect("created")
                .object
        };
        let owner = create(json!({"metadata": {"name": "owner"}}));
        let uid = str_at(&owner, "metadata.uid").expect("uid");
        create(json!({"metadata": {"name": "dependent", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}}));
        let mut memo = FactsMemo::default();
        let settle = |memo: &mut FactsMemo| {
            for _ in 0..10 {
                if !reconcile_with_memo(&store, memo) {
                    break;
                }
            }
        };
        settle(&mut memo);
        assert!(store.get(&cms, "default", "dependent").is_ok());
        store
            .delete(
                &cms,
                "default",
                "owner",
                &DeleteOptions {
                    propagation: Some("Foreground".into()),
                    ..DeleteOptions::default()
                },
            )
            .expect("deleting");
        // The dependent is deleted in the foreground, then goes; only a later pass, which must
        // see it gone, removes the owner's finalizer.
        settle(&mut memo);
        assert!(store.get(&cms, "default", "dependent").is_err());
        assert!(store.get(&cms, "default", "owner").is_err());
    }
}
