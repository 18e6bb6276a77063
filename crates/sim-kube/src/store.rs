//! The object store: one resource-version counter, objects by resource, a bounded event history
//! for watches, and the write semantics of the API server (identity, generation, optimistic
//! concurrency, status subresource, validation, finalizers, managed fields).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};

use crate::error::{ApiError, FieldError};
use crate::resources::{ResourceType, builtins};
use crate::ssa::{self, Strategy};
use crate::util::{self, meta_mut, now_rfc3339, str_at};

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Resource version of the change.
    pub rv: u64,
    /// Resource key (group, plural).
    pub resource: (String, String),
    /// What happened.
    pub kind: EventType,
    /// The object after the change (before, for deletions), shared with the store.
    pub object: Arc<Value>,
    /// The object before the change (for selector transitions).
    pub old: Option<Arc<Value>>,
    /// The event as most watchers receive it, serialized once for all of them (as the API
    /// server's watch cache does).
    pub rendered: std::sync::OnceLock<bytes::Bytes>,
}

type ObjKey = (String, String);

/// Receives committed changes.
pub type EventReceiver = broadcast::Receiver<Arc<StoredEvent>>;
type ResKey = (String, String);

/// Options that apply to every write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Field manager for managed fields.
    pub manager: String,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation` (`Strict`, `Warn`, `Ignore`).
    pub field_validation: String,
}

/// The result of a write: the object and any warnings for the `Warning` header.
#[derive(Debug, Clone)]
pub struct WriteResult {
    /// The stored (or would-be stored) object.
    pub object: Value,
    /// Warnings (unknown fields pruned under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
    /// Whether the object was created (201) rather than changed (200).
    pub created: bool,
}

/// Delete options from the query and the `DeleteOptions` body.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `Foreground`, `Background` or `Orphan`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The outcome of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Removed now; the last state.
    Now(Value),
    /// Marked for deletion (finalizers or grace period); the current state.
    Pending(Value),
}

/// The server state.
pub struct State {
    rv: u64,
    // Shared: a CRD's type carries its whole schema, and every request looks its type up.
    types: Vec<Arc<ResourceType>>,
    // Shared, so snapshots, lists and events cost a reference count rather than a deep copy.
    objects: HashMap<ResKey, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    compacted: u64,
    /// Watchers' feed. Events are sent as they are committed, under the store's lock, so every
    /// watcher sees them in resourceVersion order; sending after unlocking let two concurrent
    /// writes arrive out of order, and a watcher skipping versions it had passed lost one.
    feed: broadcast::Sender<Arc<StoredEvent>>,
}

/// The store shared by the HTTP layer and the controllers.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<StoredEvent>>,
    /// Woken after every committed change (controllers wait on it).
    pub changed: Notify,
}

fn key(ns: &str, name: &str) -> ObjKey {
    (ns.to_owned(), name.to_owned())
}

fn rk(rt: &ResourceType) -> ResKey {
    (rt.group.clone(), rt.plural.clone())
}

static DNS_SUBDOMAIN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("valid regex")
});
static DNS_LABEL: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid regex"));
static LABEL_VALUE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("valid regex")
});

fn dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && DNS_SUBDOMAIN.is_match(name)
}

fn dns_label(name: &str) -> bool {
    name.len() <= 63 && DNS_LABEL.is_match(name)
}

fn validate_meta(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = str_at(obj, "metadata.name").unwrap_or_default();
    if let Some(e) = string_maps(rt, obj) {
        errors.push(e);
    }
    let label_names = rt.plural == "namespaces" || rt.plural == "services";
    if label_names && !dns_label(name) {
        errors.push(FieldError::invalid("metadata.name", &json!(name), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"));
    } else if !label_names && !dns_subdomain(name) {
        errors.push(FieldError::invalid("metadata.name", &json!(name), "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"));
    }
    for (k, v) in obj["metadata"]["labels"].as_object().into_iter().flatten() {
        let v = v.as_str().unwrap_or_default();
        if v.len() > 63 {
            errors.push(FieldError::invalid(
                "metadata.labels",
                &json!(v),
                "must be no more than 63 characters",
            ));
        } else if !LABEL_VALUE.is_match(v) {
            errors.push(FieldError::invalid("metadata.labels", &json!(v), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
        }
        let name_part = k.rsplit('/').next().unwrap_or_default();
        if name_part.is_empty() || name_part.len() > 63 {
            errors.push(FieldError::invalid(
                "metadata.labels",
                &json!(k),
                "name part must be no more than 63 characters",
            ));
        }
    }
    errors
}

/// Maps whose values must be strings (a real server fails to decode anything else).
fn string_maps(rt: &ResourceType, obj: &Value) -> Option<FieldError> {
    let mut maps = vec!["metadata.labels", "metadata.annotations"];
    if rt.group.is_empty() && matches!(rt.plural.as_str(), "configmaps" | "secrets") {
        maps.extend(["data", "binaryData", "stringData"]);
    }
    for path in maps {
        for (k, v) in util::at(obj, path)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if !v.is_string() {
                return Some(FieldError::invalid(
                    &format!("{path}[{k}]"),
                    v,
                    "must be a string",
                ));
            }
        }
    }
    None
}

/// Built-in defaults the API server applies on create and update.
fn builtin_defaults(rt: &ResourceType, obj: &mut Value) {
    fn pod_spec(spec: &mut Value) {
        let Some(s) = spec.as_object_mut() else { return };
        s.entry("restartPolicy").or_insert(json!("Always"));
        s.entry("terminationGracePeriodSeconds").or_insert(json!(30));
        s.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
        s.entry("schedulerName").or_insert(json!("default-scheduler"));
        s.entry("securityContext").or_insert(json!({}));
        for list in ["containers", "initContainers"] {
            for c in s
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let image = c["image"].as_str().unwrap_or_default().to_owned();
                let Some(c) = c.as_object_mut() else { continue };
                let tag = image.rsplit('/').next().unwrap_or_default();
                let latest = !tag.contains(':') || tag.ends_with(":latest");
                c.entry("imagePullPolicy")
                    .or_insert(json!(if latest { "Always" } else { "IfNotPresent" }));
                c.entry("terminationMessagePath")
                    .or_insert(json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy").or_insert(json!("File"));
                c.entry("resources").or_insert(json!({}));
                for p in c
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = p.as_object_mut() {
                        p.entry("protocol").or_insert(json!("TCP"));
                    }
                }
            }
        }
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => pod_spec(&mut obj["spec"]),
        ("", "namespaces") => {
            let name = obj["metadata"]["name"].clone();
            let meta = meta_mut(obj);
            let labels = meta.entry("labels").or_insert(json!({}));
            if labels.is_object() {
                labels["kubernetes.io/metadata.name"] = name;
            }
        }
        ("", "secrets") if obj.get("type").is_none() => obj["type"] = json!("Opaque"),
        ("", "services") => {
            let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
                return;
            };
            spec.entry("type").or_insert(json!("ClusterIP"));
            spec.entry("sessionAffinity").or_insert(json!("None"));
            for p in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let port = p["port"].clone();
                if let Some(p) = p.as_object_mut() {
                    p.entry("protocol").or_insert(json!("TCP"));
                    p.entry("targetPort").or_insert(port);
                }
            }
        }
        ("apps", "deployments") | ("apps", "replicasets") => {
            let deployment = rt.plural == "deployments";
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("replicas").or_insert(json!(1));
                if deployment {
                    spec.entry("revisionHistoryLimit").or_insert(json!(10));
                    spec.entry("progressDeadlineSeconds").or_insert(json!(600));
                    let strategy = spec.entry("strategy").or_insert(json!({}));
                    if strategy.get("type").is_none() {
                        strategy["type"] = json!("RollingUpdate");
                    }
                    if strategy["type"] == "RollingUpdate" && strategy.get("rollingUpdate").is_none() {
                        strategy["rollingUpdate"] = json!({"maxUnavailable": "25%", "maxSurge": "25%"});
                    }
                }
                if let Some(template) = spec.get_mut("template") {
                    pod_spec(&mut template["spec"]);
                }
            }
        }
        _ => {}
    }
}

/// The status a built-in object gets on create.
fn initial_status(rt: &ResourceType) -> Option<Value> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => Some(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        ("", "namespaces") => Some(json!({"phase": "Active"})),
        ("", "persistentvolumeclaims") => Some(json!({"phase": "Pending"})),
        ("", "services") => Some(json!({"loadBalancer": {}})),
        ("apiextensions.k8s.io", _) => Some(json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()}
            ],
            "acceptedNames": {}, "storedVersions": []
        })),
        _ => None,
    }
}

/// Whether a write from `a` to `b` leaves the generation as it is: everything but metadata
/// (and status, for a custom resource with a status subresource) is unchanged, or the spec of a
/// built-in resource. Compared in place, since these objects can be large (a runner's Pod
/// template) and every write asks.
fn same_generation(rt: &ResourceType, a: &Value, b: &Value) -> bool {
    if rt.custom {
        let except: &[&str] = if rt.has_status {
            &["metadata", "status"]
        } else {
            &["metadata"]
        };
        same_except(a, b, except)
    } else {
        a.get("spec").unwrap_or(&Value::Null) == b.get("spec").unwrap_or(&Value::Null)
    }
}

/// What a write to the status subresource stores: `old` with the requested status (none if the
/// request has none) and the requested managed fields, if it names them. Built from the request
/// when it agrees with `old` elsewhere, as a status write's request nearly always does, so the
/// stored object (a runner's carries its Pod template) is not copied on every status write.
fn status_write(old: &Value, mut requested: Value) -> Value {
    if let (Some(old_map), Some(out)) = (old.as_object(), requested.as_object_mut())
        && let Some(Value::Object(old_meta)) = old_map.get("metadata")
        && out.get("metadata").is_some_and(Value::is_object)
    {
        // Every top-level field but status and metadata is the stored one.
        out.retain(|k, _| k == "status" || k == "metadata" || old_map.contains_key(k));
        for (k, v) in old_map {
            if k != "status" && k != "metadata" && out.get(k) != Some(v) {
                out.insert(k.clone(), v.clone());
            }
        }
        // Metadata is the stored one, with the requested managed fields when there are some.
        let meta = meta_mut(&mut requested);
        let requested_managed = meta.remove("managedFields");
        if same_maps_except(meta, old_meta, &["managedFields"]) {
            if let Some(managed) = requested_managed.or_else(|| old_meta.get("managedFields").cloned()) {
                meta.insert("managedFields".into(), managed);
            }
        } else {
            *meta = old_meta.clone();
            if let Some(managed) = requested_managed {
                meta.insert("managedFields".into(), managed);
            }
        }
        return requested;
    }
    status_write_plainly(old, &requested)
}

/// [`status_write`] by copying the stored object: for requests of an unusual shape, and the
/// reference its tests compare with.
fn status_write_plainly(old: &Value, requested: &Value) -> Value {
    let mut out = old.clone();
    match requested.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            if let Some(m) = out.as_object_mut() {
                m.remove("status");
            }
        }
    }
    if let Some(mf) = requested["metadata"].get("managedFields") {
        meta_mut(&mut out).insert("managedFields".into(), mf.clone());
    }
    out
}

/// Whether `a` and `b` are equal but for the top-level fields in `except` (equal outright when
/// either is not an object).
fn same_except(a: &Value, b: &Value, except: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => same_maps_except(a, b, except),
        _ => a == b,
    }
}

/// Whether two JSON objects are equal but for the keys in `except`, whatever their order.
fn same_maps_except(
    a: &serde_json::Map<String, Value>,
    b: &serde_json::Map<String, Value>,
    except: &[&str],
) -> bool {
    let counted =
        |map: &serde_json::Map<String, Value>| map.keys().filter(|k| !except.contains(&k.as_str())).count();
    counted(a) == counted(b)
        && a.iter()
            .filter(|(k, _)| !except.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

/// Whether `a` and `b` differ at most in what changes on every write (the resourceVersion and
/// the managed fields' times), for no-op detection.
fn same_but_volatile(a: &Value, b: &Value) -> bool {
    if !same_except(a, b, &["metadata"]) {
        return false;
    }
    let (Some(ma), Some(mb)) = (a.get("metadata"), b.get("metadata")) else {
        return a.get("metadata") == b.get("metadata");
    };
    if !same_except(ma, mb, &["resourceVersion", "managedFields"]) {
        return false;
    }
    match (ma.get("managedFields"), mb.get("managedFields")) {
        (Some(Value::Array(fa)), Some(Value::Array(fb))) => {
            fa.len() == fb.len() && fa.iter().zip(fb).all(|(x, y)| same_except(x, y, &["time"]))
        }
        (x, y) => x == y,
    }
}

fn strategy(rt: &ResourceType) -> Strategy<'_> {
    match &rt.schema {
        Some(schema) => Strategy::Schema(schema),
        None => Strategy::Builtin,
    }
}

impl State {
    fn objects(&self, rt: &ResourceType) -> Option<&BTreeMap<ObjKey, Arc<Value>>> {
        self.objects.get(&rk(rt))
    }

    fn commit(
        &mut self,
        rt: &ResourceType,
        kind: EventType,
        mut obj: Value,
        old: Option<Arc<Value>>,
    ) -> Arc<StoredEvent> {
        self.rv += 1;
        let ns = str_at(&obj, "metadata.namespace").unwrap_or_default().to_owned();
        let name = str_at(&obj, "metadata.name").unwrap_or_default().to_owned();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        obj["apiVersion"] = json!(rt.preferred_api_version());
        obj["kind"] = json!(rt.kind);
        let obj = Arc::new(obj);
        let bucket = self.objects.entry(rk(rt)).or_default();
        match kind {
            EventType::Deleted => {
                bucket.remove(&key(&ns, &name));
            }
            _ => {
                bucket.insert(key(&ns, &name), obj.clone());
            }
        }
        let event = Arc::new(StoredEvent {
            rv: self.rv,
            resource: rk(rt),
            kind,
            object: obj,
            old,
            rendered: std::sync::OnceLock::new(),
        });
        self.history.push_back(event.clone());
        let _ = self.feed.send(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        event
    }
}

impl Store {
    /// A store with the built-in types, the usual namespaces, and `history_limit` watch events.
    pub fn new(history_limit: usize) -> Arc<Self> {
        let (events, _) = broadcast::channel(65_536);
        let store = Arc::new(Self {
            state: Mutex::new(State {
                rv: 0,
                types: builtins().into_iter().map(Arc::new).collect(),
                objects: HashMap::new(),
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                compacted: 0,
                feed: events.clone(),
            }),
            events,
            changed: Notify::new(),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let rt = store.resource("", "namespaces").expect("namespaces are built in");
            let _ = store.create(
                &rt,
                "",
                json!({"metadata": {"name": ns}}),
                &WriteOptions::default(),
            );
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes whoever waits for changes (the events themselves went out at commit).
    fn publish(&self, _events: Vec<Arc<StoredEvent>>) {
        self.changed.notify_waiters();
        self.changed.notify_one();
    }

    /// All served resource types.
    pub fn types(&self) -> Vec<Arc<ResourceType>> {
        self.lock().types.clone()
    }

    /// The resource type for a group and plural.
    pub fn resource(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }

    /// The resource type for a group and kind.
    pub fn resource_for_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.lock()
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .objects(rt)
            .and_then(|m| m.get(&key(ns, name)))
            .map(|o| Value::clone(o))
            .ok_or_else(|| ApiError::not_found(rt.as_ref(), name))
    }

    /// Objects of a type, in one namespace or (with `None`) all, sorted by namespace and name,
    /// with the resource version of the snapshot.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let state = self.lock();
        let items = state
            .objects(rt)
            .into_iter()
            .flatten()
            .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.rv)
    }

    /// Subscribes to changes after `from` (exclusive): the retained events since then and a
    /// receiver for later ones; `Err(oldest)` if `from` has been compacted.
    pub fn watch_from(&self, from: u64) -> Result<(Vec<Arc<StoredEvent>>, EventReceiver), u64> {
        let state = self.lock();
        if from < state.compacted {
            return Err(state.compacted + 1);
        }
        let backlog = state.history.iter().filter(|e| e.rv > from).cloned().collect();
        Ok((backlog, self.events.subscribe()))
    }

    /// A receiver for changes after now, with the current state of one type (for initial
    /// events), atomically.
    pub fn snapshot_and_watch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Arc<StoredEvent>>) {
        let state = self.lock();
        let items = state
            .objects(rt)
            .into_iter()
            .flatten()
            .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.rv, self.events.subscribe())
    }

    fn check_namespace(state: &State, rt: &ResourceType, ns: &str, creating: bool) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns_key: ResKey = (String::new(), "namespaces".to_owned());
        let ns_type = state
            .types
            .iter()
            .find(|t| t.group.is_empty() && t.plural == "namespaces")
            .cloned();
        let found = state.objects.get(&ns_key).and_then(|m| m.get(&key("", ns)));
        match (found, ns_type) {
            (None, Some(t)) => Err(ApiError::not_found((*t).as_ref(), ns)),
            (Some(n), _) if creating && !n["metadata"]["deletionTimestamp"].is_null() => {
                Err(ApiError::forbidden(format!(
                    "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.plural
                )))
            }
            _ => Ok(()),
        }
    }

    /// Creates an object.
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let body_ns = str_at(&obj, "metadata.namespace").unwrap_or_default().to_owned();
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut state = self.lock();
        Self::check_namespace(&state, rt, ns, true)?;
        let meta = meta_mut(&mut obj);
        if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let name = format!("{prefix}{}", util::random_suffix());
                    meta.insert("name".into(), json!(name));
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt.as_ref(),
                        "",
                        &[FieldError {
                            reason: "FieldValueRequired",
                            field: "metadata.name".into(),
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ));
                }
            }
        }
        if rt.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        for field in [
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(field);
        }
        meta.insert("uid".into(), json!(util::uuid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if rt.tracks_generation {
            meta.insert("generation".into(), json!(1));
        }
        let name = str_at(&obj, "metadata.name").unwrap_or_default().to_owned();
        if rt.has_status {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
            if let Some(status) = initial_status(rt) {
                obj["status"] = status;
            }
            if rt.group.is_empty() && rt.plural == "pods" {
                obj["status"]["qosClass"] = json!(qos_class(&obj["spec"]));
            }
            if rt.group.is_empty() && rt.plural == "resourcequotas" {
                // The quota controller publishes the limits at once; usage is computed at
                // admission instead of being kept in status.
                obj["status"] = json!({"hard": obj["spec"]["hard"].clone()});
            }
        }
        if rt.plural == "namespaces" && rt.group.is_empty() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        let mut warnings = Vec::new();
        self.validate_write(rt, None, &mut obj, opts, &mut warnings)?;
        if rt.group.is_empty() && rt.plural == "pods" {
            admit_pod(&state, ns, &mut obj)?;
            admit_pod_quota(&state, ns, &name)?;
        }
        if rt.group.is_empty() && rt.plural == "services" {
            allocate_cluster_ip(&state, &mut obj);
        }
        if state
            .objects(rt)
            .is_some_and(|m| m.contains_key(&key(ns_of(rt, ns), &name)))
        {
            return Err(ApiError::already_exists(rt.as_ref(), &name));
        }
        let manager = manager_or_default(opts);
        ssa::record_update(
            &json!({}),
            &mut obj,
            &manager,
            &rt.preferred_api_version(),
            "",
            &strategy(rt),
            &now_rfc3339(),
        );
        if opts.dry_run {
            return Ok(WriteResult {
                object: obj,
                warnings,
                created: true,
            });
        }
        let crd = rt.group == "apiextensions.k8s.io";
        if crd {
            let new_type = ResourceType::from_crd(&obj).map_err(|e| {
                ApiError::invalid(
                    rt.as_ref(),
                    &name,
                    &[FieldError::invalid("spec", &json!("object"), &e)],
                )
            })?;
            state
                .types
                .retain(|t| !(t.group == new_type.group && t.plural == new_type.plural));
            state.types.push(Arc::new(new_type));
        }
        let event = state.commit(rt, EventType::Added, obj, None);
        drop(state);
        let object = Value::clone(&event.object);
        self.publish(vec![event]);
        Ok(WriteResult {
            object,
            warnings,
            created: true,
        })
    }

    /// Prunes, defaults and validates a write; `old` is the stored object on updates.
    fn validate_write(
        &self,
        rt: &ResourceType,
        old: Option<&Value>,
        obj: &mut Value,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let name = str_at(obj, "metadata.name").unwrap_or_default().to_owned();
        let mut errors = validate_meta(rt, obj);
        if let Some(schema) = &rt.schema {
            let pruned = crate::schema::prune(obj, schema);
            if !pruned.is_empty() {
                match opts.field_validation.as_str() {
                    "Strict" => {
                        let list: Vec<String> =
                            pruned.iter().map(|p| format!("unknown field {p:?}")).collect();
                        return Err(ApiError::bad_request(format!(
                            "strict decoding error: {}",
                            list.join(", ")
                        )));
                    }
                    "Ignore" => {}
                    _ => warnings.extend(pruned.iter().map(|p| format!("unknown field {p:?}"))),
                }
            }
            crate::schema::apply_defaults(obj, schema);
            errors.extend(crate::schema::validate(obj, old, schema));
        } else {
            builtin_defaults(rt, obj);
            if rt.group.is_empty() && rt.plural == "secrets" {
                normalize_secret(obj)?;
            }
            if let Some(old) = old {
                errors.extend(immutable_fields(rt, old, obj));
            }
        }
        if let Some(old) = old
            && rt.group.is_empty()
            && rt.plural == "pods"
            && mutable_pod_view(&old["spec"]) != mutable_pod_view(&obj["spec"])
        {
            errors.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
        }
        if let Some(old) = old
            && !old["metadata"]["deletionTimestamp"].is_null()
        {
            let old_f = finalizers(old);
            if finalizers(obj).iter().any(|f| !old_f.contains(f)) {
                errors.push(FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(rt.as_ref(), &name, &errors))
        }
    }

    /// Replaces an object (PUT), on the main resource or the `status` subresource.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        subresource: &str,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        if str_at(&obj, "metadata.name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                str_at(&obj, "metadata.name").unwrap_or_default()
            )));
        }
        let rv = str_at(&obj, "metadata.resourceVersion").map(str::to_owned);
        self.write(rt, ns, name, subresource, opts, |old| {
            match rv.as_deref() {
                Some(rv) if !rv.is_empty() && Some(rv) != str_at(old, "metadata.resourceVersion") => {
                    return Err(ApiError::conflict(rt.as_ref(), name));
                }
                None | Some("") if !rt.unconditional_update => {
                    return Err(ApiError::invalid(
                        rt.as_ref(),
                        name,
                        &[FieldError::invalid(
                            "metadata.resourceVersion",
                            &json!("0x0"),
                            "must be specified for an update",
                        )],
                    ));
                }
                _ => {}
            }
            Ok((obj, None))
        })
    }

    /// Reads, transforms and writes one object under the lock. `change` gets the stored
    /// object and returns the requested new object, plus (for apply) the final managed fields.
    pub fn write(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        subresource: &str,
        opts: &WriteOptions,
        change: impl FnOnce(&Value) -> Result<(Value, Option<Value>), ApiError>,
    ) -> Result<WriteResult, ApiError> {
        let mut state = self.lock();
        Self::check_namespace(&state, rt, ns, false)?;
        let old = state
            .objects(rt)
            .and_then(|m| m.get(&key(ns_of(rt, ns), name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt.as_ref(), name))?;
        let (requested, managed) = change(&old)?;
        let mut new = self.merge_for_endpoint(rt, &old, requested, subresource);
        let mut warnings = Vec::new();
        self.validate_write(rt, Some(&old), &mut new, opts, &mut warnings)?;
        if rt.tracks_generation && !same_generation(rt, &old, &new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        match managed {
            Some(m) => {
                meta_mut(&mut new).insert("managedFields".into(), m);
                if new["metadata"]["managedFields"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
                {
                    meta_mut(&mut new).remove("managedFields");
                }
            }
            None => {
                let manager = manager_or_default(opts);
                ssa::record_update(
                    &old,
                    &mut new,
                    &manager,
                    &rt.preferred_api_version(),
                    subresource,
                    &strategy(rt),
                    &now_rfc3339(),
                );
            }
        }
        if same_but_volatile(&new, &old) {
            return Ok(WriteResult {
                object: Value::clone(&old),
                warnings,
                created: false,
            });
        }
        if opts.dry_run {
            return Ok(WriteResult {
                object: new,
                warnings,
                created: false,
            });
        }
        // Removing the last finalizer deletes the object, but a Pod in its grace period stays
        // until its kubelet confirms with a zero-grace delete, even when the kubelet writes
        // its final status first.
        let in_grace = new["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            > 0;
        let deleting =
            !new["metadata"]["deletionTimestamp"].is_null() && finalizers(&new).is_empty() && !in_grace;
        let event = if deleting {
            state.commit(rt, EventType::Modified, new, Some(old.clone()));
            let last = state
                .objects(rt)
                .and_then(|m| m.get(&key(ns_of(rt, ns), name)))
                .cloned()
                .unwrap_or_default();
            let e1 = state.history.back().cloned();
            let e2 = state.commit(rt, EventType::Deleted, Value::clone(&last), Some(last));
            self.after_delete(&mut state, rt);
            drop(state);
            self.publish(e1.into_iter().chain([e2.clone()]).collect());
            return Ok(WriteResult {
                object: Value::clone(&e2.object),
                warnings,
                created: false,
            });
        } else {
            state.commit(rt, EventType::Modified, new, Some(old))
        };
        drop(state);
        let object = Value::clone(&event.object);
        self.publish(vec![event]);
        Ok(WriteResult {
            object,
            warnings,
            created: false,
        })
    }

    /// Keeps what the endpoint may not change: identity, and spec vs status per subresource.
    fn merge_for_endpoint(&self, rt: &ResourceType, old: &Value, mut new: Value, subresource: &str) -> Value {
        if subresource == "status" {
            return status_write(old, new);
        }
        if rt.has_status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            new["spec"] = old["spec"].clone();
        }
        if rt.group.is_empty() && rt.plural == "services" && new["spec"].is_object() {
            for field in [
                "clusterIP",
                "clusterIPs",
                "ipFamilies",
                "ipFamilyPolicy",
                "internalTrafficPolicy",
            ] {
                if new["spec"].get(field).is_none()
                    && let Some(v) = old["spec"].get(field)
                {
                    new["spec"][field] = v.clone();
                }
            }
        }
        let old_meta = &old["metadata"];
        let meta = meta_mut(&mut new);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        new
    }

    fn after_delete(&self, state: &mut State, rt: &ResourceType) {
        // Deleting a CRD stops serving its resource and removes its objects.
        if rt.group == "apiextensions.k8s.io" {
            let known: Vec<ResKey> = state.types.iter().filter(|t| t.custom).map(|t| rk(t)).collect();
            let live: Vec<ResKey> = state
                .objects
                .get(&rk(rt))
                .into_iter()
                .flatten()
                .filter_map(|(_, crd)| ResourceType::from_crd(crd).ok().map(|t| rk(&t)))
                .collect();
            for gone in known.into_iter().filter(|k| !live.contains(k)) {
                let Some(t) = state.types.iter().find(|t| rk(t) == gone).cloned() else {
                    continue;
                };
                let objs: Vec<Arc<Value>> = state
                    .objects
                    .get(&gone)
                    .into_iter()
                    .flatten()
                    .map(|(_, v)| v.clone())
                    .collect();
                for o in objs {
                    // commit() sends the event to watchers.
                    state.commit(&t, EventType::Deleted, Value::clone(&o), Some(o));
                }
                state.types.retain(|x| rk(x) != gone);
                state.objects.remove(&gone);
            }
        }
    }

    /// Deletes an object, honouring finalizers, propagation and preconditions.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let mut state = self.lock();
        let old = state
            .objects(rt)
            .and_then(|m| m.get(&key(ns_of(rt, ns), name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt.as_ref(), name))?;
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != str_at(&old, "metadata.uid")
        {
            return Err(ApiError::conflict_with(
                rt.as_ref(),
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    str_at(&old, "metadata.uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != str_at(&old, "metadata.resourceVersion")
        {
            return Err(ApiError::conflict_with(
                rt.as_ref(),
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    str_at(&old, "metadata.resourceVersion").unwrap_or_default()
                ),
            ));
        }
        let mut new = Value::clone(&old);
        let mut fins = finalizers(&old);
        let already_deleting = !old["metadata"]["deletionTimestamp"].is_null();
        match opts.propagation.as_deref() {
            Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                fins.push("foregroundDeletion".into())
            }
            Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
            _ => {}
        }
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        // As the Pod strategy's CheckGracefulDelete: a Pod not scheduled, or already
        // terminated, has nothing left to stop and goes at once.
        let graceful_pod = rt.group.is_empty()
            && rt.plural == "pods"
            && str_at(&old, "spec.nodeName").is_some_and(|n| !n.is_empty())
            && !matches!(str_at(&old, "status.phase"), Some("Succeeded" | "Failed"))
            && opts
                .grace_period
                .or_else(|| old["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                > 0;
        if fins.is_empty() && !is_namespace && !graceful_pod {
            if opts.dry_run {
                return Ok(Deleted::Now(Value::clone(&old)));
            }
            let e = state.commit(rt, EventType::Deleted, Value::clone(&old), Some(old));
            self.after_delete(&mut state, rt);
            drop(state);
            let obj = Value::clone(&e.object);
            self.publish(vec![e]);
            return Ok(Deleted::Now(obj));
        }
        if already_deleting && fins == finalizers(&old) {
            return Ok(Deleted::Pending(Value::clone(&old)));
        }
        let meta = meta_mut(&mut new);
        if !fins.is_empty() || !already_deleting {
            meta.insert("finalizers".into(), json!(fins));
        }
        if !already_deleting {
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            let grace = if graceful_pod {
                opts.grace_period
                    .or_else(|| old["spec"]["terminationGracePeriodSeconds"].as_i64())
                    .unwrap_or(30)
            } else {
                0
            };
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), json!(g + 1));
            }
        }
        if fins.is_empty()
            && let Some(m) = new["metadata"].as_object_mut()
        {
            m.remove("finalizers");
        }
        if is_namespace {
            new["status"]["phase"] = json!("Terminating");
        }
        if opts.dry_run {
            return Ok(Deleted::Pending(new));
        }
        let e = state.commit(rt, EventType::Modified, new, Some(old));
        drop(state);
        let obj = Value::clone(&e.object);
        self.publish(vec![e]);
        Ok(Deleted::Pending(obj))
    }

    /// Sets a pending pod's `spec.nodeName` and its `PodScheduled` condition (the `binding`
    /// subresource); 409 if it is already bound.
    pub fn bind_pod(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        node: &str,
        opts: &WriteOptions,
    ) -> Result<(), ApiError> {
        let mut state = self.lock();
        let old = state
            .objects(rt)
            .and_then(|m| m.get(&key(ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt.as_ref(), name))?;
        if str_at(&old, "spec.nodeName").is_some_and(|n| !n.is_empty()) {
            return Err(ApiError::conflict_with(
                rt.as_ref(),
                name,
                &format!(
                    "pod {name} is already assigned to node {:?}",
                    str_at(&old, "spec.nodeName").unwrap_or_default()
                ),
            ));
        }
        let mut new = Value::clone(&old);
        new["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = old["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
        new["status"]["conditions"] = json!(conditions);
        ssa::record_update(
            &old,
            &mut new,
            &opts.manager,
            "v1",
            "",
            &strategy(rt),
            &now_rfc3339(),
        );
        let e = state.commit(rt, EventType::Modified, new, Some(old));
        drop(state);
        self.publish(vec![e]);
        Ok(())
    }

    /// Removes an object regardless of finalizers (for controllers finishing a deletion:
    /// namespaces once empty, pods once their grace period is over).
    pub fn force_remove(&self, rt: &ResourceType, ns: &str, name: &str) {
        let mut state = self.lock();
        let Some(old) = state
            .objects(rt)
            .and_then(|m| m.get(&key(ns_of(rt, ns), name)))
            .cloned()
        else {
            return;
        };
        let e = state.commit(rt, EventType::Deleted, Value::clone(&old), Some(old));
        self.after_delete(&mut state, rt);
        drop(state);
        self.publish(vec![e]);
    }

    /// Every object of every type (for controllers).
    pub fn all_objects(&self) -> Vec<(Arc<ResourceType>, Arc<Value>)> {
        let state = self.lock();
        let mut out = Vec::with_capacity(state.objects.values().map(BTreeMap::len).sum());
        for t in &state.types {
            for v in state.objects.get(&rk(t)).into_iter().flatten().map(|(_, v)| v) {
                out.push((t.clone(), v.clone()));
            }
        }
        out
    }
}

/// Folds `stringData` into `data` (base64) and checks that `data` values are base64, as the
/// API server's decoding does.
fn normalize_secret(secret: &mut Value) -> Result<(), ApiError> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    for (k, v) in secret["data"].as_object().into_iter().flatten() {
        let text = v.as_str().unwrap_or_default();
        if let Err(e) = engine.decode(text) {
            return Err(ApiError::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data for key {k:?}: {e}"
            )));
        }
    }
    if let Some(string_data) = secret.as_object_mut().and_then(|m| m.remove("stringData"))
        && let Some(map) = string_data.as_object()
    {
        if !secret["data"].is_object() {
            secret["data"] = json!({});
        }
        for (k, v) in map {
            secret["data"][k] = json!(engine.encode(v.as_str().unwrap_or_default()));
        }
    }
    Ok(())
}

/// Fields the API server refuses to change on update.
fn immutable_fields(rt: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut same = |path: &str, field: &str| {
        let (a, b) = (util::at(old, path), util::at(new, path));
        if a != b {
            errors.push(FieldError::invalid(
                field,
                b.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    };
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "replicasets") => same("spec.selector", "spec.selector"),
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings")
            if util::at(old, "roleRef") != util::at(new, "roleRef") =>
        {
            errors.push(FieldError::invalid(
                "roleRef",
                &new["roleRef"],
                "cannot change roleRef",
            ));
        }
        ("", "secrets" | "configmaps") if old["immutable"] == true => {
            same("data", "data");
            same("binaryData", "binaryData");
            if new["immutable"] != true {
                errors.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        _ => {}
    }
    errors
}

/// The QoS class of a pod spec: Guaranteed when every container's CPU and memory limits are set
/// and requests (if set) equal them, BestEffort when no container sets any, else Burstable.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect();
    let any = containers.iter().any(|c| {
        c["resources"]["requests"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
            || c["resources"]["limits"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = &c["resources"]["limits"][*r];
            let request = &c["resources"]["requests"][*r];
            !limit.is_null() && (request.is_null() || request == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// A pod spec without the fields an update may change.
fn mutable_pod_view(spec: &Value) -> Value {
    let mut v = spec.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("activeDeadlineSeconds");
        m.remove("tolerations");
        m.remove("terminationGracePeriodSeconds");
        for list in ["containers", "initContainers"] {
            for c in m
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(c) = c.as_object_mut() {
                    c.remove("image");
                }
            }
        }
    }
    v
}

/// What admission does to a new Pod: the ServiceAccount must exist; its token is mounted
/// unless automounting is off; default tolerations and priority are set.
/// ResourceQuota admission for the Pod count (`pods` or `count/pods` in `spec.hard`), as the API
/// server's quota admission refuses a Pod: 403 with `exceeded quota` in the message. Pods that
/// ended (Succeeded or Failed) do not count, as in Kubernetes. Compute-resource quotas are not
/// modelled.
fn admit_pod_quota(state: &State, ns: &str, name: &str) -> Result<(), ApiError> {
    let in_namespace = |plural: &str| {
        state
            .objects
            .get(&(String::new(), plural.to_owned()))
            .into_iter()
            .flat_map(|m| m.values())
            .filter(move |o| str_at(o, "metadata.namespace") == Some(ns))
    };
    let mut quotas = in_namespace("resourcequotas").peekable();
    if quotas.peek().is_none() {
        return Ok(());
    }
    let used = in_namespace("pods")
        .filter(|p| !matches!(str_at(p, "status.phase"), Some("Succeeded" | "Failed")))
        .count();
    for quota in quotas {
        for resource in ["pods", "count/pods"] {
            let Some(limit) = quota["spec"]["hard"][resource]
                .as_str()
                .and_then(|q| q.parse::<usize>().ok())
                .or_else(|| quota["spec"]["hard"][resource].as_u64().map(|n| n as usize))
            else {
                continue;
            };
            if used + 1 > limit {
                let quota_name = str_at(quota, "metadata.name").unwrap_or_default();
                return Err(ApiError::forbidden(format!(
                    "pods {name:?} is forbidden: exceeded quota: {quota_name}, requested: {resource}=1, used: {resource}={used}, limited: {resource}={limit}"
                )));
            }
        }
    }
    Ok(())
}

fn admit_pod(state: &State, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
    let name = str_at(pod, "metadata.name").unwrap_or_default().to_owned();
    let spec = &mut pod["spec"];
    let sa_name = spec["serviceAccountName"]
        .as_str()
        .or_else(|| spec["serviceAccount"].as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_owned();
    spec["serviceAccountName"] = json!(sa_name);
    spec["serviceAccount"] = json!(sa_name);
    let sa = state
        .objects
        .get(&(String::new(), "serviceaccounts".to_owned()))
        .and_then(|m| m.get(&key(ns, &sa_name)))
        .ok_or_else(|| {
            ApiError::forbidden(format!(
                "pods {name:?} is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
            ))
        })?;
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mounted = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["mountPath"] == TOKEN_PATH)
    };
    if automount {
        let volume = format!("kube-api-access-{}", util::random_suffix());
        let mut added = false;
        for list in ["initContainers", "containers"] {
            for c in spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if mounted(c) {
                    continue;
                }
                if !c["volumeMounts"].is_array() {
                    c["volumeMounts"] = json!([]);
                }
                if let Some(mounts) = c["volumeMounts"].as_array_mut() {
                    mounts.push(json!({"name": volume, "readOnly": true, "mountPath": TOKEN_PATH}));
                    added = true;
                }
            }
        }
        if added {
            if !spec["volumes"].is_array() {
                spec["volumes"] = json!([]);
            }
            if let Some(volumes) = spec["volumes"].as_array_mut() {
                volumes.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}}));
            }
        }
    }
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    if let Some(tolerations) = spec["tolerations"].as_array_mut() {
        for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            if !tolerations.iter().any(|t| t["key"] == taint) {
                tolerations.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    if let Some(s) = spec.as_object_mut() {
        s.entry("enableServiceLinks").or_insert(json!(true));
        s.entry("priority").or_insert(json!(0));
        s.entry("preemptionPolicy")
            .or_insert(json!("PreemptLowerPriority"));
    }
    Ok(())
}

/// Gives a ClusterIP Service an address from 10.96.0.0/16, as the service IP allocator does.
fn allocate_cluster_ip(state: &State, svc: &mut Value) {
    let spec = &mut svc["spec"];
    if spec["type"] == "ExternalName" || spec["clusterIP"].as_str().is_some_and(|ip| !ip.is_empty()) {
        if let Some(ip) = spec["clusterIP"].as_str().map(str::to_owned) {
            spec["clusterIPs"] = json!([ip]);
        }
        return;
    }
    let used = state
        .objects
        .get(&(String::new(), "services".to_owned()))
        .map_or(0, BTreeMap::len);
    let n = used + 10;
    let ip = format!("10.96.{}.{}", (n / 250) % 256, n % 250 + 1);
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
    spec["internalTrafficPolicy"] = json!("Cluster");
}

fn ns_of<'a>(rt: &ResourceType, ns: &'a str) -> &'a str {
    if rt.namespaced { ns } else { "" }
}

fn manager_or_default(opts: &WriteOptions) -> String {
    if opts.manager.is_empty() {
        "unknown".to_owned()
    } else {
        opts.manager.clone()
    }
}

/// An object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(plural: &str) -> ResourceType {
        builtins()
            .into_iter()
            .find(|t| t.plural == plural && (t.group.is_empty() || t.group == "apps"))
            .unwrap()
    }

    #[test]
    fn watchers_see_concurrent_writes_in_version_order() {
        let store = Store::new(10_000);
        let (_, mut feed) = store.watch_from(0).unwrap();
        let configmaps = rt("configmaps");
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let (store, configmaps) = (&store, &configmaps);
                scope.spawn(move || {
                    for i in 0..50 {
                        let obj = json!({"metadata": {"name": format!("cm-{writer}-{i}")}});
                        store
                            .create(configmaps, "default", obj, &WriteOptions::default())
                            .unwrap();
                    }
                });
            }
        });
        let mut last = 0;
        let mut created = 0;
        while let Ok(event) = feed.try_recv() {
            assert!(event.rv > last, "event {} after {last}: out of order", event.rv);
            last = event.rv;
            created += usize::from(event.resource == rk(&configmaps));
        }
        assert_eq!(created, 400, "every write reaches the watcher");
    }

    #[test]
    fn qos_classes() {
        let c = |resources: Value| json!({"containers": [{"name": "c", "resources": resources}]});
        assert_eq!(qos_class(&c(json!({}))), "BestEffort");
        assert_eq!(qos_class(&c(json!({"requests": {"cpu": "1"}}))), "Burstable");
        assert_eq!(
            qos_class(&c(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&c(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})
            )),
            "Burstable"
        );
    }

    #[test]
    fn secrets_fold_string_data_and_reject_bad_base64() {
        let mut s = json!({"data": {"a": "YQ=="}, "stringData": {"b": "b"}});
        normalize_secret(&mut s).unwrap();
        assert_eq!(s, json!({"data": {"a": "YQ==", "b": "Yg=="}}));
        assert_eq!(
            normalize_secret(&mut json!({"data": {"a": "not base64!"}}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn immutable_fields_are_reported() {
        let old = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
        let new = json!({"spec": {"selector": {"matchLabels": {"a": "2"}}}});
        let errors = immutable_fields(&rt("deployments"), &old, &new);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .line()
                .starts_with("spec.selector: Invalid value: \"object\": field is immutable")
        );
        assert!(immutable_fields(&rt("deployments"), &old, &old).is_empty());
    }

    #[test]
    fn a_status_write_keeps_everything_but_the_status_and_managed_fields() {
        let old = json!({
            "apiVersion": "v1", "kind": "Thing",
            "metadata": {"name": "a", "labels": {"x": "1"}, "resourceVersion": "7",
                         "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {"template": {"containers": [{"name": "c", "image": "i"}]}},
            "status": {"phase": "Pending"}
        });
        let requests = [
            // The usual one: a patch of the status.
            |r: &mut Value| r["status"]["phase"] = json!("Running"),
            // Everything else it asks for is not taken.
            |r: &mut Value| {
                r["spec"]["template"] = json!({});
                r["metadata"]["labels"]["x"] = json!("2");
                r["extra"] = json!(true);
            },
            |r: &mut Value| {
                r.as_object_mut().unwrap().remove("spec");
                r["metadata"].as_object_mut().unwrap().remove("name");
            },
            |r: &mut Value| {
                r.as_object_mut().unwrap().remove("status");
            },
            // Without managed fields, the stored ones stay; with other ones, they are taken.
            |r: &mut Value| {
                r["metadata"].as_object_mut().unwrap().remove("managedFields");
            },
            |r: &mut Value| r["metadata"]["managedFields"] = json!([{"manager": "n"}]),
            // Not the usual shape: the plain form's answer.
            |r: &mut Value| r["metadata"] = json!("odd"),
            |r: &mut Value| *r = json!({"status": {"phase": "Failed"}}),
        ];
        for (i, change) in requests.iter().enumerate() {
            let mut requested = old.clone();
            change(&mut requested);
            assert_eq!(
                status_write(&old, requested.clone()),
                status_write_plainly(&old, &requested),
                "request {i}"
            );
        }
        let mut bare = old.clone();
        bare["metadata"].as_object_mut().unwrap().remove("managedFields");
        let mut requested = bare.clone();
        requested["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        requested["status"] = json!({"phase": "Running"});
        assert_eq!(
            status_write(&bare, requested.clone()),
            status_write_plainly(&bare, &requested)
        );
    }

    #[test]
    fn a_write_is_a_no_op_when_only_the_version_and_managed_times_differ() {
        let a = json!({
            "metadata": {"name": "a", "resourceVersion": "1",
                         "managedFields": [{"manager": "m", "time": "2026-01-01T00:00:00Z"}]},
            "spec": {"x": 1}
        });
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        b["metadata"]["managedFields"][0]["time"] = json!("2026-01-02T00:00:00Z");
        assert!(same_but_volatile(&a, &b));
        let mut c = b.clone();
        c["metadata"]["managedFields"][0]["manager"] = json!("n");
        assert!(!same_but_volatile(&a, &c));
        let mut d = b.clone();
        d["metadata"]["labels"] = json!({"x": "1"});
        assert!(!same_but_volatile(&a, &d));
        let mut e = b.clone();
        e["spec"]["x"] = json!(2);
        assert!(!same_but_volatile(&a, &e));
        let mut f = b;
        f["metadata"]["managedFields"] = json!([]);
        assert!(!same_but_volatile(&a, &f));
    }

    #[test]
    fn a_custom_resource_s_generation_follows_everything_but_metadata_and_status() {
        let mut custom = rt("deployments");
        custom.custom = true;
        custom.has_status = true;
        let a = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"] = json!({"x": "1"});
        b["status"]["y"] = json!(2);
        assert!(same_generation(&custom, &a, &b));
        b["data"] = json!(1);
        assert!(!same_generation(&custom, &a, &b), "a field beside spec counts");
        custom.has_status = false;
        let mut c = a.clone();
        c["status"]["y"] = json!(2);
        assert!(
            !same_generation(&custom, &a, &c),
            "without a status subresource, status is data"
        );
    }

    #[test]
    fn generation_ignores_metadata_and_status() {
        let deployments = rt("deployments");
        let a =
            json!({"metadata": {"labels": {"x": "1"}}, "spec": {"replicas": 1}, "status": {"replicas": 0}});
        let mut b = a.clone();
        b["metadata"]["labels"]["x"] = json!("2");
        b["status"]["replicas"] = json!(1);
        assert!(same_generation(&deployments, &a, &b));
        b["spec"]["replicas"] = json!(2);
        assert!(!same_generation(&deployments, &a, &b));
    }

    #[test]
    fn store_semantics() {
        let store = Store::new(10);
        let cms = store.resource("", "configmaps").unwrap();
        let opts = WriteOptions::default();
        let created = store
            .create(
                &cms,
                "default",
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                &opts,
            )
            .unwrap();
        let rv = str_at(&created.object, "metadata.resourceVersion")
            .unwrap()
            .to_owned();
        let same = store
            .update(&cms, "default", "a", created.object.clone(), "", &opts)
            .unwrap();
        assert_eq!(
            str_at(&same.object, "metadata.resourceVersion"),
            Some(rv.as_str()),
            "a no-op update keeps the version"
        );
        assert_eq!(
            store
                .create(&cms, "nope", json!({"metadata": {"name": "a"}}), &opts)
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            store
                .create(&cms, "default", json!({"metadata": {"name": "a"}}), &opts)
                .unwrap_err()
                .reason,
            "AlreadyExists"
        );
        let mut stale = created.object.clone();
        stale["data"]["k"] = json!("w");
        store
            .update(&cms, "default", "a", stale.clone(), "", &opts)
            .unwrap();
        assert_eq!(
            store
                .update(&cms, "default", "a", stale, "", &opts)
                .unwrap_err()
                .reason,
            "Conflict"
        );
        assert!(store.watch_from(0).is_ok());
    }
}
