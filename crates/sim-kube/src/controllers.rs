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

/// An object with its type, as a pass sees it (shared with the store, not copied).
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
    loop {
        let notified = store.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Several passes per wake-up, since each pass may enable the next step.
        for _ in 0..4 {
            if !reconcile_once(&store) {
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

fn ns_name(o: &Value) -> (String, String) {
    (
        str_at(o, "metadata.namespace").unwrap_or_default().to_owned(),
        str_at(o, "metadata.name").unwrap_or_default().to_owned(),
    )
}

fn uid(o: &Value) -> String {
    str_at(o, "metadata.uid").unwrap_or_default().to_owned()
}

fn deleting(o: &Value) -> bool {
    !o["metadata"]["deletionTimestamp"].is_null()
}

fn owner_refs(o: &Value) -> &[Value] {
    o["metadata"]["ownerReferences"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn remove_finalizer(store: &Store, rt: &ResourceType, o: &Value, finalizer: &str) -> bool {
    let (ns, name) = ns_name(o);
    store
        .write(rt, &ns, &name, "", &opts(), |cur| {
            let mut new = cur.clone();
            let f: Vec<String> = finalizers(cur).into_iter().filter(|x| x != finalizer).collect();
            new["metadata"]["finalizers"] = json!(f);
            Ok((new, None))
        })
        .is_ok()
}

fn delete(store: &Store, rt: &ResourceType, o: &Value, propagation: &str) -> bool {
    let (ns, name) = ns_name(o);
    store
        .delete(
            rt,
            &ns,
            &name,
            &DeleteOptions {
                propagation: Some(propagation.to_owned()),
                ..DeleteOptions::default()
            },
        )
        .is_ok()
}

/// One pass over everything; returns whether anything changed.
pub fn reconcile_once(store: &Store) -> bool {
    let all = store.all_objects();
    let by_uid: HashMap<String, &Entry> = all.iter().map(|e| (uid(&e.1), e)).collect();
    let mut changed = false;
    // Dependents of each owner uid.
    let mut dependents: HashMap<String, Vec<&Entry>> = HashMap::new();
    for entry in &all {
        for r in owner_refs(&entry.1) {
            dependents
                .entry(r["uid"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push(entry);
        }
    }
    // Garbage collection of dependents.
    for (rt, o) in &all {
        let refs = owner_refs(o);
        if refs.is_empty() || deleting(o) {
            continue;
        }
        // A namespaced owner must be in the dependent's namespace to count.
        let dep_ns = str_at(o, "metadata.namespace").unwrap_or_default();
        let owners: Vec<Option<&&Entry>> = refs
            .iter()
            .map(|r| {
                by_uid
                    .get(r["uid"].as_str().unwrap_or_default())
                    .filter(|(t, owner)| !t.namespaced || str_at(owner, "metadata.namespace") == Some(dep_ns))
            })
            .collect();
        if owners.iter().all(Option::is_none) {
            changed |= delete(store, rt, o, "Background");
        } else if owners
            .iter()
            .flatten()
            .any(|owner| deleting(&owner.1) && finalizers(&owner.1).iter().any(|f| f == "foregroundDeletion"))
        {
            changed |= delete(store, rt, o, "Foreground");
        } else if owners.iter().any(Option::is_none) {
            let (ns, name) = ns_name(o);
            let live: HashSet<String> = by_uid.keys().cloned().collect();
            changed |= store
                .write(rt, &ns, &name, "", &opts(), |cur| {
                    let mut new = cur.clone();
                    let kept: Vec<Value> = owner_refs(cur)
                        .iter()
                        .filter(|r| live.contains(r["uid"].as_str().unwrap_or_default()))
                        .cloned()
                        .collect();
                    new["metadata"]["ownerReferences"] = json!(kept);
                    Ok((new, None))
                })
                .is_ok();
        }
    }
    // Owners being deleted in the foreground or orphaning.
    for (rt, o) in &all {
        if !deleting(o) {
            continue;
        }
        let fins = finalizers(o);
        let deps = dependents.get(&uid(o)).cloned().unwrap_or_default();
        if fins.iter().any(|f| f == "orphan") {
            for (drt, d) in &deps {
                let (ns, name) = ns_name(d);
                let owner = uid(o);
                let _ = store.write(drt, &ns, &name, "", &opts(), |cur| {
                    let mut new = cur.clone();
                    let kept: Vec<Value> = owner_refs(cur)
                        .iter()
                        .filter(|r| r["uid"] != owner.as_str())
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
            changed |= remove_finalizer(store, rt, o, "orphan");
        } else if fins.iter().any(|f| f == "foregroundDeletion") && deps.is_empty() {
            changed |= remove_finalizer(store, rt, o, "foregroundDeletion");
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let ns = str_at(o, "metadata.name").unwrap_or_default();
            let contents: Vec<&Entry> = all
                .iter()
                .filter(|(t, x)| t.namespaced && str_at(x, "metadata.namespace") == Some(ns))
                .collect();
            for (t, x) in &contents {
                if !deleting(x) {
                    changed |= delete(store, t, x, "Background");
                }
            }
            if contents.is_empty() && finalizers(o).is_empty() {
                store.force_remove(rt, "", ns);
                changed = true;
            }
        }
    }
    changed |= namespace_defaults(store, &all);
    changed |= replica_sets(store, &all);
    changed |= deployments(store, &all);
    changed
}

fn namespace_defaults(store: &Store, all: &[Entry]) -> bool {
    let mut changed = false;
    let (Some(sa), Some(cm)) = (
        store.resource("", "serviceaccounts"),
        store.resource("", "configmaps"),
    ) else {
        return false;
    };
    let exists = |plural: &str, ns: &str, name: &str| {
        all.iter().any(|(t, o)| {
            t.group.is_empty() && t.plural == plural && ns_name(o) == (ns.to_owned(), name.to_owned())
        })
    };
    for (t, o) in all
        .iter()
        .filter(|(t, _)| t.group.is_empty() && t.plural == "namespaces")
    {
        let _ = t;
        if deleting(o) {
            continue;
        }
        let ns = str_at(o, "metadata.name").unwrap_or_default();
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

fn controller_of(o: &Value) -> Option<String> {
    owner_refs(o)
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str().map(str::to_owned))
}

fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn owner_ref(rt: &ResourceType, o: &Value) -> Value {
    json!({"apiVersion": rt.preferred_api_version(), "kind": rt.kind, "name": str_at(o, "metadata.name"), "uid": uid(o), "controller": true, "blockOwnerDeletion": true})
}

fn write_status(store: &Store, rt: &ResourceType, o: &Value, status: Value) -> bool {
    if o["status"] == status {
        return false;
    }
    let (ns, name) = ns_name(o);
    store
        .write(rt, &ns, &name, "status", &opts(), |cur| {
            let mut new = cur.clone();
            new["status"] = status.clone();
            Ok((new, None))
        })
        .map(|r| r.object != *o)
        .unwrap_or(false)
}

fn replica_sets(store: &Store, all: &[Entry]) -> bool {
    let Some(pods_rt) = store.resource("", "pods") else {
        return false;
    };
    let mut changed = false;
    for (rt, rs) in all
        .iter()
        .filter(|(t, _)| t.group == "apps" && t.plural == "replicasets")
    {
        if deleting(rs) {
            continue;
        }
        let (ns, name) = ns_name(rs);
        let rs_uid = uid(rs);
        let mut pods: Vec<&Value> = all
            .iter()
            .filter(|(t, p)| {
                t.group.is_empty()
                    && t.plural == "pods"
                    && controller_of(p).as_deref() == Some(rs_uid.as_str())
                    && !deleting(p)
            })
            .map(|(_, p)| p.as_ref())
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
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
                pod["metadata"]["ownerReferences"] = json!([owner_ref(rt, rs)]);
                changed |= store.create(&pods_rt, &ns, pod, &opts()).is_ok();
            }
        } else if pods.len() > want {
            pods.sort_by_key(|p| {
                (
                    pod_ready(p),
                    std::cmp::Reverse(
                        str_at(p, "metadata.creationTimestamp")
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                )
            });
            for p in pods.iter().take(pods.len() - want) {
                changed |= delete(store, &pods_rt, p, "Background");
            }
        }
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let count = pods.len().min(want.max(pods.len()));
        let status = json!({
            "replicas": count,
            "fullyLabeledReplicas": count,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        let status = strip_zero(status);
        changed |= write_status(store, rt, rs, status);
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

fn deployments(store: &Store, all: &[Entry]) -> bool {
    let Some(rs_rt) = store.resource("apps", "replicasets") else {
        return false;
    };
    let mut changed = false;
    for (rt, d) in all
        .iter()
        .filter(|(t, _)| t.group == "apps" && t.plural == "deployments")
    {
        if deleting(d) {
            continue;
        }
        let (ns, name) = ns_name(d);
        let d_uid = uid(d);
        let template = &d["spec"]["template"];
        let hash = template_hash(template);
        let want = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let owned: Vec<&Value> = all
            .iter()
            .filter(|(t, r)| {
                t.group == "apps"
                    && t.plural == "replicasets"
                    && controller_of(r).as_deref() == Some(d_uid.as_str())
            })
            .map(|(_, r)| r.as_ref())
            .collect();
        let current = owned
            .iter()
            .find(|r| r["metadata"]["labels"]["pod-template-hash"] == hash.as_str());
        let old: Vec<&&Value> = owned
            .iter()
            .filter(|r| r["metadata"]["labels"]["pod-template-hash"] != hash.as_str())
            .collect();
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let old_pods_left = old.iter().any(|r| {
            let ruid = uid(r);
            all.iter().any(|(t, p)| {
                t.plural == "pods" && t.group.is_empty() && controller_of(p).as_deref() == Some(ruid.as_str())
            })
        });
        for r in &old {
            if r["spec"]["replicas"].as_i64() != Some(0) {
                changed |= scale(store, &rs_rt, r, 0);
            }
        }
        let new_want = if recreate && old_pods_left { 0 } else { want };
        let revision = owned
            .iter()
            .filter_map(|r| {
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
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
                        "ownerReferences": [owner_ref(rt, d)],
                    },
                    "spec": {"replicas": new_want, "selector": selector, "template": tmpl},
                });
                changed |= store.create(&rs_rt, &ns, rs, &opts()).is_ok();
            }
            Some(r) => {
                if r["spec"]["replicas"].as_i64() != Some(new_want) {
                    changed |= scale(store, &rs_rt, r, new_want);
                }
            }
        }
        // Status from the ReplicaSets.
        let sum = |field: &str, set: &mut dyn Iterator<Item = &&Value>| -> i64 {
            set.map(|r| r["status"][field].as_i64().unwrap_or(0)).sum()
        };
        let replicas = sum("replicas", &mut owned.iter());
        let ready = sum("readyReplicas", &mut owned.iter());
        let available = sum("availableReplicas", &mut owned.iter());
        let updated = current.map_or(0, |r| r["status"]["replicas"].as_i64().unwrap_or(0));
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
        changed |= write_status(store, rt, d, status);
    }
    changed
}

fn scale(store: &Store, rt: &ResourceType, r: &Value, replicas: i64) -> bool {
    let (ns, name) = ns_name(r);
    store
        .write(rt, &ns, &name, "", &opts(), |cur| {
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
}
