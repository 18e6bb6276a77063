//! The HTTP layer: routing, discovery, the REST verbs, watch streams, tables for kubectl.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::body::ResBody;
use crate::encoded::EncodedObjects;
use crate::error::{ApiError, FieldError};
use crate::faults::{Faults, Refused, RequestRecord};
use crate::patch;
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::ssa::{self, Strategy};
use crate::store::{DeleteOptions, Deleted, EventType, Store, StoredEvent, WriteOptions};
use crate::util::{now_rfc3339, str_at};

/// Shared server context.
pub struct Ctx {
    /// The object store.
    pub store: Arc<Store>,
    /// Fault injection and request log.
    pub faults: Arc<Faults>,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Kubernetes version reported by `/version` (`minor`).
    pub minor_version: u32,
    /// Stored objects as lists write them, serialized once per version.
    pub encoded: EncodedObjects,
}

type Query = HashMap<String, String>;

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Query {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn body_response(body: Vec<u8>) -> Response<ResBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(ResBody::Full(Some(Bytes::from(body))))
        .unwrap_or_else(|_| Response::new(ResBody::Full(None)))
}

fn json_response(code: u16, value: &Value, warnings: &[String]) -> Response<ResBody> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    for w in warnings {
        builder = builder.header("warning", format!("299 - {w:?}"));
    }
    builder
        .body(ResBody::Full(Some(Bytes::from(
            serde_json::to_vec(value).unwrap_or_default(),
        ))))
        .unwrap_or_else(|_| Response::new(ResBody::Full(None)))
}

/// What API Priority and Fairness answers a request it rejects: 429, `Retry-After`, and a
/// plain-text body (not a `Status`).
fn too_many_requests() -> Response<ResBody> {
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header("content-type", "text/plain; charset=utf-8")
        .header("retry-after", crate::faults::TOO_MANY_REQUESTS_RETRY_AFTER)
        .body(ResBody::Full(Some(Bytes::from_static(
            crate::faults::TOO_MANY_REQUESTS_BODY.as_bytes(),
        ))))
        .unwrap_or_else(|_| Response::new(ResBody::Full(None)))
}

fn error_response(e: &ApiError) -> Response<ResBody> {
    json_response(e.code, &e.to_status(), &[])
}

/// What a request addressed.
struct Target {
    rt: Arc<ResourceType>,
    version: String,
    ns: String,
    name: String,
    sub: String,

    /// Namespaced type listed across all namespaces.
    all_namespaces: bool,
    /// An `events.k8s.io/v1` request served from core Events.
    events_v1: bool,
}

impl Target {
    fn api_version(&self) -> String {
        if self.events_v1 {
            "events.k8s.io/v1".to_owned()
        } else {
            self.rt.api_version(&self.version)
        }
    }

    /// The stored (core) form of a request body.
    fn incoming(&self, body: Value) -> Value {
        if self.events_v1 {
            crate::events::to_core(&body)
        } else {
            body
        }
    }
}

/// Handles one request.
pub async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<ResBody>, Infallible> {
    let latency = ctx.faults.config().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query());
    let headers = req.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header("content-type");
    let accept = header("accept");
    let user_agent = header("user-agent");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading the body: {e}"
            ))));
        }
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let target = match segments.as_slice() {
        ["api", "v1", rest @ ..] => resolve(&ctx, "", "v1", rest),
        ["apis", group, version, rest @ ..] => resolve(&ctx, group, version, rest),
        _ => None,
    };
    let Some(target) = target else {
        let response = discovery(&ctx, &segments, &method);
        ctx.faults.record(RequestRecord {
            verb: "discovery".into(),
            resource: path.clone(),
            namespace: String::new(),
            name: String::new(),
            code: response.status().as_u16(),
        });
        return Ok(response);
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => return Ok(error_response(&e)),
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, target.name.is_empty()) {
        (&Method::GET, true) if watch => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "deletecollection",
        (&Method::DELETE, false) => "delete",
        _ => "unknown",
    };
    let resource = if target.sub.is_empty() {
        target.rt.plural.clone()
    } else {
        format!("{}/{}", target.rt.plural, target.sub)
    };
    let record = |code: u16| RequestRecord {
        verb: verb.to_owned(),
        resource: resource.clone(),
        namespace: target.ns.clone(),
        name: target.name.clone(),
        code,
    };
    if matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) {
        let faults = ctx.faults.config();
        let roll = crate::util::random_unit();
        let injected = if let Some(answer) = ctx.faults.take_refusal(verb, &resource) {
            let rt = ResourceType::as_ref(&target.rt);
            Some(match answer {
                Refused::Conflict => ApiError::conflict(rt, &target.name),
                Refused::ServerError => ApiError::internal("injected fault: etcd is unavailable"),
                Refused::NameTaken => ApiError::already_exists(rt, &generated_name(&body)),
                Refused::TooManyRequests => {
                    ctx.faults.record(record(429));
                    return Ok(too_many_requests());
                }
            })
        } else if roll < faults.write_conflict_rate {
            Some(ApiError::conflict(ResourceType::as_ref(&target.rt), &target.name))
        } else if roll < faults.write_conflict_rate + faults.write_error_rate {
            Some(ApiError::internal("injected fault: etcd is unavailable"))
        } else {
            None
        };
        if let Some(e) = injected {
            ctx.faults.record(record(e.code));
            return Ok(error_response(&e));
        }
    }
    if verb == "watch" {
        ctx.faults.record(record(200));
        return Ok(watch_response(&ctx, &target, &query, &accept));
    }
    if verb == "list" && !wants_table(&accept) && !wants_metadata(&accept) {
        let response = match list_body(&ctx, &target, &query) {
            Ok(body) => body_response(body),
            Err(e) => error_response(&e),
        };
        ctx.faults.record(record(response.status().as_u16()));
        return Ok(response);
    }
    let opts = WriteOptions {
        manager: query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| default_manager(&user_agent)),
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        field_validation: query
            .get("fieldValidation")
            .cloned()
            .unwrap_or_else(|| "Warn".to_owned()),
    };
    let result = match verb {
        "get" => ctx
            .store
            .get(&target.rt, &target.ns, &target.name)
            .map(|o| (200, present(&target, o, &accept), vec![])),
        "list" => list(&ctx, &target, &query).map(|l| {
            (
                200,
                if wants_table(&accept) {
                    table(
                        &target.rt,
                        l["items"].as_array().cloned().unwrap_or_default(),
                        &l["metadata"],
                    )
                } else if wants_metadata(&accept) {
                    let items: Vec<Value> =
                        l["items"].as_array().into_iter().flatten().map(partial).collect();
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                           "metadata": l["metadata"], "items": items})
                } else {
                    l
                },
                vec![],
            )
        }),
        "create" => parse_body(&body, &content_type).and_then(|obj| {
            if !target.sub.is_empty() {
                return subresource_create(&ctx, &target, &obj);
            }

            let obj = target.incoming(obj);
            check_type(&target, &obj)?;
            let r = ctx.store.create(&target.rt, &target.ns, obj, &opts)?;
            Ok((201, versioned(&target, r.object), r.warnings))
        }),
        "update" => parse_body(&body, &content_type).and_then(|obj| {
            let obj = target.incoming(obj);
            check_type(&target, &obj)?;
            let r = ctx
                .store
                .update(&target.rt, &target.ns, &target.name, obj, &target.sub, &opts)?;
            Ok((200, versioned(&target, r.object), r.warnings))
        }),
        "patch" => patch_object(&ctx, &target, &body, &content_type, &query, &opts),
        "delete" => delete_options(&body, &query).and_then(|d| {
            match ctx.store.delete(&target.rt, &target.ns, &target.name, &d)? {
                Deleted::Now(o) => Ok((200, deleted_response(&target, o), vec![])),
                Deleted::Pending(o) => Ok((
                    if target.rt.plural == "namespaces" {
                        200
                    } else {
                        202
                    },
                    versioned(&target, o),
                    vec![],
                )),
            }
        }),
        "deletecollection" => delete_collection(&ctx, &target, &body, &query),
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported here"
        ))),
    };
    let response = match result {
        Ok((code, value, warnings)) => json_response(code, &value, &warnings),
        Err(e) => error_response(&e),
    };
    ctx.faults.record(record(response.status().as_u16()));
    Ok(response)
}

fn default_manager(user_agent: &str) -> String {
    let first = user_agent.split('/').next().unwrap_or_default();
    if first.is_empty() {
        "unknown".to_owned()
    } else {
        first.to_owned()
    }
}

fn resolve(ctx: &Ctx, group: &str, version: &str, rest: &[&str]) -> Option<Result<Target, ApiError>> {
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            (Some(*ns), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [] => return None,
        [plural] => (*plural, "", ""),
        [plural, name] => (*plural, *name, ""),
        [plural, name, sub] => (*plural, *name, *sub),
        _ => return Some(Err(ApiError::path_not_found())),
    };
    let Some(rt) = ctx.store.resource(group, plural) else {
        return Some(Err(ApiError::path_not_found()));
    };
    if !rt.versions.iter().any(|v| v == version) {
        return Some(Err(ApiError::path_not_found()));
    }
    let sub_ok = sub.is_empty()
        || (sub == "status" && rt.has_status)
        || (sub == "finalize" && plural == "namespaces")
        || (group.is_empty() && plural == "serviceaccounts" && sub == "token")
        || (group.is_empty() && plural == "pods" && matches!(sub, "eviction" | "binding"));
    if !sub_ok {
        return Some(Err(ApiError::path_not_found()));
    }
    if rt.namespaced && ns.is_none() && !name.is_empty() {
        return Some(Err(ApiError::path_not_found()));
    }
    if !rt.namespaced && ns.is_some() {
        return Some(Err(ApiError::path_not_found()));
    }

    let events_v1 = group == "events.k8s.io" && plural == "events";
    let rt = if events_v1 {
        ctx.store.resource("", "events").unwrap_or(rt)
    } else {
        rt
    };
    Some(Ok(Target {
        all_namespaces: rt.namespaced && ns.is_none(),
        events_v1,
        rt,
        version: version.to_owned(),
        ns: ns.unwrap_or_default().to_owned(),
        name: name.to_owned(),
        sub: if sub == "finalize" {
            String::new()
        } else {
            sub.to_owned()
        },
    }))
}

/// `POST` on a subresource: `serviceaccounts/token` (TokenRequest), `pods/eviction` (deletes
/// the pod with the eviction's delete options) and `pods/binding` (schedules the pod).
fn subresource_create(
    ctx: &Ctx,
    target: &Target,
    body: &Value,
) -> Result<(u16, Value, Vec<String>), ApiError> {
    let current = ctx.store.get(&target.rt, &target.ns, &target.name)?;
    let success =
        || json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    match target.sub.as_str() {
        "token" => {
            let seconds = body["spec"]["expirationSeconds"].as_u64().unwrap_or(3600);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut out = body.clone();
            out["apiVersion"] = json!("authentication.k8s.io/v1");
            out["kind"] = json!("TokenRequest");
            out["metadata"] =
                json!({"name": target.name, "namespace": target.ns, "creationTimestamp": now_rfc3339()});
            out["spec"]["expirationSeconds"] = json!(seconds);
            if out["spec"]["audiences"].as_array().is_none_or(Vec::is_empty) {
                out["spec"]["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
            }
            out["status"] = json!({
                "token": format!("rssc-kube-sim.{}.{}.{}", target.ns, target.name, str_at(&current, "metadata.uid").unwrap_or_default()),
                "expirationTimestamp": crate::util::format_rfc3339(now + seconds),
            });
            Ok((201, out, vec![]))
        }
        "eviction" => {
            let opts = &body["deleteOptions"];
            let d = DeleteOptions {
                grace_period: opts["gracePeriodSeconds"].as_i64(),
                uid: opts["preconditions"]["uid"].as_str().map(str::to_owned),
                resource_version: opts["preconditions"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned),
                ..DeleteOptions::default()
            };
            ctx.store.delete(&target.rt, &target.ns, &target.name, &d)?;
            Ok((201, success(), vec![]))
        }
        "binding" => {
            let node = body["target"]["name"].as_str().unwrap_or_default().to_owned();
            if node.is_empty() {
                return Err(ApiError::bad_request("a Binding needs target.name"));
            }
            let opts = WriteOptions {
                manager: "kube-scheduler".into(),
                ..WriteOptions::default()
            };
            let name = target.name.clone();
            ctx.store.bind_pod(&target.rt, &target.ns, &name, &node, &opts)?;
            Ok((201, success(), vec![]))
        }
        _ => Err(ApiError::method_not_allowed(
            "create is not supported on this subresource",
        )),
    }
}

/// What a completed delete returns: the object for the types whose registry returns it (pods,
/// services, namespaces, custom resources and CRDs), a `Success` status for the others.
fn deleted_response(target: &Target, obj: Value) -> Value {
    let rt = &target.rt;
    let returns_object = rt.custom
        || rt.group == "apiextensions.k8s.io"
        || (rt.group.is_empty() && matches!(rt.plural.as_str(), "pods" | "services" | "namespaces"));
    if returns_object {
        return versioned(target, obj);
    }
    let mut details = json!({"name": str_at(&obj, "metadata.name"), "kind": rt.plural, "uid": str_at(&obj, "metadata.uid")});
    if !rt.group.is_empty() && !target.events_v1 {
        details["group"] = json!(rt.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn versioned(target: &Target, mut obj: Value) -> Value {
    if target.events_v1 {
        return crate::events::to_events_v1(&obj);
    }
    obj["apiVersion"] = json!(target.rt.api_version(&target.version));
    obj
}

fn present(target: &Target, obj: Value, accept: &str) -> Value {
    let obj = versioned(target, obj);
    if wants_metadata(accept) {
        partial(&obj)
    } else if wants_table(accept) {
        let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
        table(&target.rt, vec![obj], &meta)
    } else {
        obj
    }
}

fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// The name an API server would have generated for the object in `body` (`generateName` and a
/// random suffix), for an injected `AlreadyExists`.
fn generated_name(body: &Bytes) -> String {
    let object: Value = serde_json::from_slice(body).unwrap_or_default();
    let prefix = object["metadata"]["generateName"].as_str().unwrap_or_default();
    format!("{prefix}{}", crate::util::random_suffix())
}

fn parse_body(body: &Bytes, content_type: &str) -> Result<Value, ApiError> {
    if content_type.contains("yaml") {
        let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        serde_yaml::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    }
}

fn check_type(target: &Target, obj: &Value) -> Result<(), ApiError> {
    let api_version = target.rt.api_version(&target.version);
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
        && v != api_version
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != target.rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            target.rt.kind
        )));
    }
    Ok(())
}

fn field_allowed(rt: &ResourceType, path: &str) -> bool {
    path == "metadata.name"
        || (path == "metadata.namespace" && rt.namespaced)
        || rt.selectable_fields.iter().any(|f| f == path)
        || match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "pods") => matches!(
                path,
                "spec.nodeName"
                    | "spec.restartPolicy"
                    | "spec.schedulerName"
                    | "spec.serviceAccountName"
                    | "status.phase"
                    | "status.podIP"
                    | "status.nominatedNodeName"
            ),
            ("", "events") => {
                path.starts_with("involvedObject.")
                    || matches!(path, "reason" | "reportingComponent" | "source" | "type")
            }
            ("events.k8s.io", "events") => {
                path.starts_with("regarding.") || matches!(path, "reason" | "reportingController" | "type")
            }
            ("", "secrets") => path == "type",
            ("", "namespaces") => path == "status.phase",
            ("apps", "replicasets") => path == "status.replicas",
            _ => false,
        }
}

fn selectors(target: &Target, query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;

    let raw_fields = query.get("fieldSelector").cloned().unwrap_or_default();
    let raw_fields = if target.events_v1 {
        raw_fields
            .split(',')
            .map(|term| {
                let cut = term.find(['=', '!']).unwrap_or(term.len());
                format!(
                    "{}{}",
                    crate::events::core_field_path(term[..cut].trim()),
                    &term[cut..]
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    } else {
        raw_fields
    };
    let fields = FieldSelector::parse(&raw_fields, |p| field_allowed(&target.rt, p)).map_err(|e| {
        let detail = e.0.clone();
        match detail.strip_prefix("field label not supported: ") {
            Some(path) if target.rt.custom => {
                ApiError::bad_request(format!("field label not supported: {path}"))
            }
            Some(path) => ApiError::bad_request(format!(
                "\"{path}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            )),
            None => ApiError::bad_request(format!("invalid field selector: {detail}")),
        }
    })?;
    Ok((labels, fields))
}

fn namespace_filter(target: &Target) -> Option<&str> {
    if target.all_namespaces || !target.rt.namespaced {
        None
    } else {
        Some(target.ns.as_str())
    }
}

/// The objects a list asks for, as stored, and the list's metadata.
fn list_items(ctx: &Ctx, target: &Target, query: &Query) -> Result<(Vec<Arc<Value>>, Value), ApiError> {
    let (labels, fields) = selectors(target, query)?;
    let (items, rv) = ctx.store.list(&target.rt, namespace_filter(target));
    let mut items: Vec<Arc<Value>> = items
        .into_iter()
        .filter(|o| labels.matches_object(o) && fields.matches(o))
        .collect();
    let mut list_rv = rv;
    if let Some(token) = query.get("continue").filter(|c| !c.is_empty()) {
        let (token_rv, after) = decode_continue(token)
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: malformed token"))?;
        list_rv = token_rv;
        items.retain(|o| object_key(o) > after);
    }
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().map(|o| object_key(o)).unwrap_or_default();
        metadata["continue"] = json!(encode_continue(list_rv, &last));
        metadata["remainingItemCount"] = json!(remaining);
    }
    Ok((items, metadata))
}

/// A list item in the version asked for; built-in kinds' items carry no type.
fn list_item(target: &Target, object: Value) -> Value {
    let mut o = versioned(target, object);
    if !target.rt.custom
        && let Some(m) = o.as_object_mut()
    {
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// A list as a value, for the table and metadata-only forms.
fn list(ctx: &Ctx, target: &Target, query: &Query) -> Result<Value, ApiError> {
    let (items, metadata) = list_items(ctx, target, query)?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|o| list_item(target, Arc::unwrap_or_clone(o)))
        .collect();
    Ok(json!({
        "kind": format!("{}List", target.rt.kind),
        "apiVersion": target.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

/// A list serialized as it is sent: objects stored in the version asked for are written from
/// the store without being copied first (a list of a thousand runners copied a thousand Pod
/// templates), each version serialized once for every list that returns it; the same list as
/// [`list`] gives, `items` written last.
fn list_body(ctx: &Ctx, target: &Target, query: &Query) -> Result<Vec<u8>, ApiError> {
    let (items, metadata) = list_items(ctx, target, query)?;
    let head = json!({
        "kind": format!("{}List", target.rt.kind),
        "apiVersion": target.api_version(),
        "metadata": metadata,
    });
    let mut body = serde_json::to_vec(&head).map_err(|e| ApiError::internal(e.to_string()))?;
    body.pop(); // the closing brace: items follow
    body.extend_from_slice(b",\"items\":[");
    let version = target.rt.api_version(&target.version);
    for (i, object) in items.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let as_stored =
            target.rt.custom && !target.events_v1 && object["apiVersion"].as_str() == Some(version.as_str());
        let written = if as_stored {
            ctx.encoded
                .encode(&object)
                .map(|bytes| body.extend_from_slice(&bytes))
        } else {
            serde_json::to_writer(&mut body, &list_item(target, Arc::unwrap_or_clone(object)))
        };
        written.map_err(|e| ApiError::internal(e.to_string()))?;
    }
    body.extend_from_slice(b"]}");
    Ok(body)
}

fn object_key(o: &Value) -> String {
    format!(
        "{}/{}",
        str_at(o, "metadata.namespace").unwrap_or_default(),
        str_at(o, "metadata.name").unwrap_or_default()
    )
}

fn encode_continue(rv: u64, key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"rv": rv, "start": key}).to_string())
}

fn decode_continue(token: &str) -> Option<(u64, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((v["rv"].as_u64()?, v["start"].as_str()?.to_owned()))
}

fn strategy(rt: &ResourceType) -> Strategy<'_> {
    match &rt.schema {
        Some(s) => Strategy::Schema(s),
        None => Strategy::Builtin,
    }
}

fn patch_object(
    ctx: &Ctx,
    target: &Target,
    body: &Bytes,
    content_type: &str,
    query: &Query,
    opts: &WriteOptions,
) -> Result<(u16, Value, Vec<String>), ApiError> {
    let kind = content_type.split(';').next().unwrap_or_default().trim();
    let rt = &target.rt;
    match kind {
        "application/merge-patch+json" | "application/json-patch+json" => {}
        "application/strategic-merge-patch+json" if !rt.custom => {}
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            return apply(ctx, target, body, query, opts);
        }
        _ => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                if rt.custom {
                    ""
                } else {
                    ", application/strategic-merge-patch+json"
                }
            )));
        }
    }
    let patch_doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let r = ctx
        .store
        .write(rt, &target.ns, &target.name, &target.sub, opts, |old| {
            let mut new = if target.events_v1 {
                crate::events::to_events_v1(old)
            } else {
                old.clone()
            };
            let result = match kind {
                "application/merge-patch+json" => patch::merge_patch(&mut new, &patch_doc),
                "application/json-patch+json" => patch::json_patch(&mut new, &patch_doc),
                _ => patch::strategic_merge_patch(&mut new, &patch_doc, &strategy(rt)),
            };
            result.map_err(|e| match e {
                patch::PatchError::Malformed(m) => ApiError::bad_request(m),
                patch::PatchError::Failed(m) => ApiError::invalid(
                    ResourceType::as_ref(rt),
                    &target.name,
                    &[FieldError {
                        reason: "FieldValueInvalid",
                        field: String::new(),
                        message: format!("Invalid value: \"json patch\": {m}"),
                    }],
                ),
            })?;
            let new = target.incoming(new);
            // A resourceVersion in the patch is a precondition.
            if let Some(rv) = str_at(&new, "metadata.resourceVersion")
                && Some(rv) != str_at(old, "metadata.resourceVersion")
            {
                return Err(ApiError::conflict(ResourceType::as_ref(rt), &target.name));
            }
            Ok((new, None))
        })?;
    Ok((200, versioned(target, r.object), r.warnings))
}

fn apply(
    ctx: &Ctx,
    target: &Target,
    body: &Bytes,
    query: &Query,
    opts: &WriteOptions,
) -> Result<(u16, Value, Vec<String>), ApiError> {
    let rt = &target.rt;
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::invalid(
            ResourceType::as_ref(rt),
            &target.name,
            &[FieldError {
                reason: "FieldValueRequired",
                field: "fieldManager".into(),
                message: "Required value: is required for apply patch".into(),
            }],
        ));
    };
    let force = query.get("force").is_some_and(|f| f == "true");

    let applied = target.incoming(parse_body(body, "yaml")?);
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "an applied configuration must be an object",
        ));
    }
    for field in ["apiVersion", "kind"] {
        if applied
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!("{field} must be set")));
        }
    }
    check_type(target, &applied)?;
    if str_at(&applied, "metadata.name").is_some_and(|n| n != target.name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let mut restricted = applied.clone();
    if let Some(m) = restricted.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "name",
                "namespace",
                "resourceVersion",
                "uid",
                "managedFields",
                "creationTimestamp",
                "generation",
            ] {
                meta.remove(f);
            }
        }
        if target.sub == "status" {
            m.retain(|k, _| k == "status");
        } else if rt.has_status {
            m.remove("status");
        }
    }
    let api_version = rt.api_version(&target.version);
    let now = now_rfc3339();
    let conflict_error = |conflicts: Vec<ssa::Conflict>| {
        let n = conflicts.len();
        let plural = if n == 1 { "" } else { "s" };
        let lines: Vec<String> = conflicts
            .iter()
            .map(|c| {
                format!(
                    "conflict with {:?} using {}: {}",
                    c.manager, c.api_version, c.field
                )
            })
            .collect();
        let mut e = ApiError::conflict_with(ResourceType::as_ref(rt), &target.name, "");
        e.message = if n == 1 {
            format!("Apply failed with 1 conflict: {}", lines[0])
        } else {
            format!("Apply failed with {n} conflict{plural}: {}", lines.join("\n"))
        };
        if let Some(d) = e.details.as_mut() {
            d["causes"] = conflicts.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?} using {}", c.manager, c.api_version), "field": c.field})).collect();
        }
        e
    };
    let sub = target.sub.clone();
    let result = ctx
        .store
        .write(rt, &target.ns, &target.name, &target.sub, opts, |old| {
            if let Some(rv) = str_at(&applied, "metadata.resourceVersion")
                && Some(rv) != str_at(old, "metadata.resourceVersion")
            {
                return Err(ApiError::conflict(ResourceType::as_ref(rt), &target.name));
            }
            let out = ssa::apply(&ssa::ApplyRequest {
                live: old,
                applied: &restricted,
                manager,
                force,
                api_version: &api_version,
                subresource: &sub,
                strategy: strategy(rt),
                now: &now,
            })
            .map_err(conflict_error)?;
            let managed = out["metadata"]["managedFields"].clone();
            Ok((out, Some(if managed.is_null() { json!([]) } else { managed })))
        });
    match result {
        Ok(r) => Ok((200, versioned(target, r.object), r.warnings)),
        Err(e) if e.code == 404 && e.reason == "NotFound" && target.sub.is_empty() => {
            // Apply creates the object.
            let out = ssa::apply(&ssa::ApplyRequest {
                live: &json!({}),
                applied: &restricted,
                manager,
                force,
                api_version: &api_version,
                subresource: "",
                strategy: strategy(rt),
                now: &now,
            })
            .map_err(conflict_error)?;
            let mut obj = out;
            let meta = crate::util::meta_mut(&mut obj);
            meta.insert("name".into(), json!(target.name));
            let managed = meta.remove("managedFields");
            let created = ctx.store.create(
                rt,
                &target.ns,
                obj,
                &WriteOptions {
                    manager: manager.clone(),
                    ..opts.clone()
                },
            )?;
            // Replace the creator's Update entry with the Apply entry.
            let mut object = created.object;
            if let Some(managed) = managed
                && !opts.dry_run
            {
                let name = target.name.clone();
                let fixed = ctx.store.write(rt, &target.ns, &name, "", opts, |cur| {
                    let mut cur2 = cur.clone();
                    crate::util::meta_mut(&mut cur2).insert("managedFields".into(), managed.clone());
                    Ok((cur2, Some(managed.clone())))
                });
                if let Ok(f) = fixed {
                    object = f.object;
                }
            }
            Ok((201, versioned(target, object), created.warnings))
        }
        Err(e) => Err(e),
    }
}

fn delete_options(body: &Bytes, query: &Query) -> Result<DeleteOptions, ApiError> {
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let mut opts = DeleteOptions {
        propagation: parsed["propagationPolicy"].as_str().map(str::to_owned),
        uid: parsed["preconditions"]["uid"].as_str().map(str::to_owned),
        resource_version: parsed["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned),
        grace_period: parsed["gracePeriodSeconds"].as_i64(),
        dry_run: parsed["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All")),
    };
    if parsed["orphanDependents"] == true {
        opts.propagation = Some("Orphan".into());
    }
    if let Some(p) = query.get("propagationPolicy") {
        opts.propagation = Some(p.clone());
    }
    if let Some(g) = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
        opts.grace_period = Some(g);
    }
    if query.get("dryRun").is_some_and(|d| d == "All") {
        opts.dry_run = true;
    }
    if let Some(p) = &opts.propagation
        && !matches!(p.as_str(), "Foreground" | "Background" | "Orphan")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {p:?}"
        )));
    }
    Ok(opts)
}

fn delete_collection(
    ctx: &Ctx,
    target: &Target,
    body: &Bytes,
    query: &Query,
) -> Result<(u16, Value, Vec<String>), ApiError> {
    let opts = delete_options(body, query)?;
    let (labels, fields) = selectors(target, query)?;
    let (items, _) = ctx.store.list(&target.rt, namespace_filter(target));
    let mut deleted = Vec::new();
    for o in items
        .into_iter()
        .filter(|o| labels.matches_object(o) && fields.matches(o))
    {
        let ns = str_at(&o, "metadata.namespace").unwrap_or_default().to_owned();
        let name = str_at(&o, "metadata.name").unwrap_or_default().to_owned();
        match ctx.store.delete(&target.rt, &ns, &name, &opts) {
            Ok(Deleted::Now(o) | Deleted::Pending(o)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok((
        200,
        json!({
            "kind": format!("{}List", target.rt.kind),
            "apiVersion": target.rt.api_version(&target.version),
            "metadata": {"resourceVersion": ctx.store.resource_version().to_string()},
            "items": deleted,
        }),
        vec![],
    ))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    #[derive(serde::Serialize)]
    struct WatchEvent<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    let mut line = serde_json::to_vec(&WatchEvent { kind, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Whether the client asked for metadata only (`as=PartialObjectMetadata[List]`), as
/// kube-runtime's metadata watcher does.
fn wants_metadata(accept: &str) -> bool {
    accept.contains("as=PartialObjectMetadata")
}

/// An object as `PartialObjectMetadata`: its metadata only.
fn partial(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

/// How a watcher of `target` receives `object`: its metadata only, or the object in the
/// version asked for (by reference when stored in that version already).
fn watch_line(target: &Target, kind: &str, object: &Value, metadata_only: bool) -> Bytes {
    if metadata_only {
        event_line(kind, &partial(object))
    } else if !target.events_v1
        && object["apiVersion"].as_str() == Some(&target.rt.api_version(&target.version))
    {
        event_line(kind, object)
    } else {
        event_line(kind, &versioned(target, object.clone()))
    }
}

fn bookmark(rt: &ResourceType, version: &str, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": meta})
}

fn watch_response(ctx: &Ctx, target: &Target, query: &Query, accept: &str) -> Response<ResBody> {
    let metadata_only = wants_metadata(accept);
    let (labels, fields) = match selectors(target, query) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let rv_param = query.get("resourceVersion").cloned().unwrap_or_default();
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    if send_initial
        && (!bookmarks
            || query
                .get("resourceVersionMatch")
                .is_none_or(|m| m != "NotOlderThan"))
    {
        return error_response(&ApiError::invalid(
            ResourceType::as_ref(&target.rt),
            "",
            &[FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled and allowWatchBookmarks is true and resourceVersionMatch is NotOlderThan",
            )],
        ));
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let ns = namespace_filter(target).map(str::to_owned);
    let matches = move |o: &Value, labels: &LabelSelector, fields: &FieldSelector| {
        ns.as_deref()
            .is_none_or(|n| str_at(o, "metadata.namespace") == Some(n))
            && labels.matches_object(o)
            && fields.matches(o)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial: Vec<Bytes> = Vec::new();
    let (start_rv, mut events_rx) = if send_initial || rv_param.is_empty() || rv_param == "0" {
        let (items, rv, rx) = ctx.store.snapshot_and_watch(&target.rt, None);
        for o in items.into_iter().filter(|o| matches(o, &labels, &fields)) {
            initial.push(watch_line(target, "ADDED", &o, metadata_only));
        }
        if send_initial {
            initial.push(event_line(
                "BOOKMARK",
                &bookmark(&target.rt, &target.version, rv, true),
            ));
        }
        (rv, rx)
    } else {
        let Ok(from) = rv_param.parse::<u64>() else {
            return error_response(&ApiError::bad_request(format!(
                "invalid resource version {rv_param:?}"
            )));
        };
        match ctx.store.watch_from(from) {
            Ok((backlog, rx)) => {
                let mut last = from;
                for e in backlog {
                    last = e.rv;
                    if let Some(line) = render_event(target, &e, &matches, &labels, &fields, metadata_only) {
                        initial.push(line);
                    }
                }
                (last.max(from), rx)
            }
            Err(oldest) => {
                let status =
                    ApiError::gone(format!("too old resource version: {from} ({oldest})")).to_status();
                initial.push(event_line("ERROR", &status));
                let _ = tx.try_send(initial.remove(0));
                drop(tx);
                return stream_response(rx);
            }
        }
    };
    let mut drops = ctx.faults.watch_drops();
    let interval = ctx.bookmark_interval;
    let rt = target.rt.clone();
    let version = target.version.clone();
    let target = Target {
        rt: target.rt.clone(),
        version: target.version.clone(),
        ns: target.ns.clone(),
        name: String::new(),
        sub: String::new(),
        all_namespaces: target.all_namespaces,
        events_v1: target.events_v1,
    };
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_rv = start_rv;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = drops.recv() => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(event_line("BOOKMARK", &bookmark(&rt, &version, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                received = events_rx.recv() => {
                    let Ok(e) = received else { return };
                    if e.rv <= last_rv {
                        continue;
                    }
                    last_rv = e.rv;
                    if let Some(line) = render_event(&target, &e, &matches, &labels, &fields, metadata_only)
                        && tx.send(line).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    stream_response(rx)
}

fn render_event(
    target: &Target,
    e: &StoredEvent,
    matches: &impl Fn(&Value, &LabelSelector, &FieldSelector) -> bool,
    labels: &LabelSelector,
    fields: &FieldSelector,
    metadata_only: bool,
) -> Option<Bytes> {
    if e.resource.0 != target.rt.group || e.resource.1 != target.rt.plural {
        return None;
    }
    let now = matches(&e.object, labels, fields);
    let before = e.old.as_ref().is_some_and(|o| matches(o, labels, fields));
    let kind = match (e.kind, before, now) {
        (EventType::Added, _, true) => "ADDED",
        (EventType::Deleted, _, true) => "DELETED",
        (EventType::Modified, true, true) => "MODIFIED",
        (EventType::Modified, false, true) => "ADDED",
        (EventType::Modified, true, false) => "DELETED",
        _ => return None,
    };
    let stored_version = e.object["apiVersion"].as_str() == Some(&target.rt.api_version(&target.version));
    if kind == e.kind.as_str() && !metadata_only && !target.events_v1 && stored_version {
        // What most watchers get: serialized once, shared.
        return Some(
            e.rendered
                .get_or_init(|| watch_line(target, kind, &e.object, false))
                .clone(),
        );
    }
    Some(watch_line(target, kind, &e.object, metadata_only))
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<ResBody> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(ResBody::Stream(rx))
        .unwrap_or_else(|_| Response::new(ResBody::Full(None)))
}

fn human_age(created: &str) -> String {
    let secs = parse_rfc3339(created).map_or(0, |t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        now.saturating_sub(t)
    });
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.trim_end_matches('Z');
    let mut t = time.split(':');
    let (h, mi, sec) = (
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
        t.next()?.split('.').next()?.parse::<u64>().ok()?,
    );
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as u64 * 86_400 + h * 3600 + mi * 60 + sec)
}

/// A `meta.k8s.io/v1` Table for kubectl: name, CRD printer columns (simple JSON paths), age.
fn table(rt: &ResourceType, items: Vec<Value>, list_meta: &Value) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let mut paths: Vec<String> = Vec::new();
    let builtin_cols: &[(&str, &str)] = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => &[("Status", ".status.phase")],
        ("", "namespaces") => &[("Status", ".status.phase")],
        ("apps", "deployments") => &[("Replicas", ".spec.replicas"), ("Ready", ".status.readyReplicas")],
        ("apps", "replicasets") => &[
            ("Desired", ".spec.replicas"),
            ("Current", ".status.replicas"),
            ("Ready", ".status.readyReplicas"),
        ],
        ("", "secrets") => &[("Type", ".type")],
        _ => &[],
    };
    for (name, path) in builtin_cols {
        columns.push(json!({"name": name, "type": "string", "format": "", "description": "", "priority": 0}));
        paths.push((*path).to_owned());
    }
    let mut has_age = false;
    for c in &rt.printer_columns {
        if c["jsonPath"] == ".metadata.creationTimestamp" {
            has_age = true;
        }
        columns.push(json!({"name": c["name"], "type": c["type"], "format": c["format"].as_str().unwrap_or(""), "description": c["description"].as_str().unwrap_or(""), "priority": c["priority"].as_i64().unwrap_or(0)}));
        paths.push(c["jsonPath"].as_str().unwrap_or_default().to_owned());
    }
    if !has_age {
        columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}));
        paths.push(".metadata.creationTimestamp".to_owned());
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(str_at(o, "metadata.name").unwrap_or_default())];
            for p in &paths {
                let v = crate::util::at(o, p.trim_start_matches('.')).cloned().unwrap_or(Value::Null);
                if p == ".metadata.creationTimestamp" {
                    cells.push(json!(human_age(v.as_str().unwrap_or_default())));
                } else if v.is_null() {
                    cells.push(if p.contains("eplicas") { json!(0) } else { json!("<none>") });
                } else {
                    cells.push(v);
                }
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}

fn discovery(ctx: &Ctx, segments: &[&str], method: &Method) -> Response<ResBody> {
    if method != Method::GET {
        return error_response(&ApiError::method_not_allowed("only GET is served here"));
    }
    let types = ctx.store.types();
    let groups = || {
        let mut order: Vec<String> = Vec::new();
        for t in types.iter().filter(|t| !t.group.is_empty()) {
            if !order.contains(&t.group) {
                order.push(t.group.clone());
            }
        }
        order
    };
    let group_doc = |group: &str| {
        let mut versions: Vec<String> = Vec::new();
        for t in types.iter().filter(|t| t.group == group) {
            for v in &t.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
    };
    let resource_list = |group: &str, version: &str| {
        let resources: Vec<Value> = types
            .iter()
            .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
            .flat_map(|t| t.discovery_entries())
            .collect();
        let gv = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        (!resources.is_empty()).then(|| json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
    };
    let ok = |v: Value| json_response(200, &v, &[]);
    match segments {
        ["version"] => ok(json!({
            "major": "1", "minor": ctx.minor_version.to_string(),
            "gitVersion": format!("v1.{}.0-rssc-sim", ctx.minor_version), "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc", "platform": "linux/amd64"
        })),
        ["healthz" | "livez" | "readyz"] => Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(ResBody::Full(Some(Bytes::from_static(b"ok"))))
            .unwrap_or_else(|_| Response::new(ResBody::Full(None))),
        ["api"] => ok(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:0"}]}),
        ),
        ["api", "v1"] => ok(resource_list("", "v1").unwrap_or(Value::Null)),
        ["apis"] => ok(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups().iter().map(|g| group_doc(g)).collect::<Vec<_>>()}),
        ),
        ["apis", group] if groups().iter().any(|g| g == group) => {
            let mut doc = group_doc(group);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            ok(doc)
        }
        ["apis", group, version] => match resource_list(group, version) {
            Some(v) => ok(v),
            None => error_response(&ApiError::path_not_found()),
        },
        ["openapi", "v3"] => {
            let mut paths = serde_json::Map::new();
            let mut gvs: Vec<(String, String)> = Vec::new();
            for t in &types {
                for v in &t.versions {
                    let gv = (t.group.clone(), v.clone());
                    if !gvs.contains(&gv) {
                        gvs.push(gv);
                    }
                }
            }
            for (g, v) in gvs {
                let p = if g.is_empty() {
                    format!("api/{v}")
                } else {
                    format!("apis/{g}/{v}")
                };
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=0")}),
                );
            }
            ok(json!({"paths": paths}))
        }
        ["openapi", "v3", "api", version] => ok(openapi_v3_doc(&types, "", version)),
        ["openapi", "v3", "apis", group, version] => ok(openapi_v3_doc(&types, group, version)),
        _ => error_response(&ApiError::path_not_found()),
    }
}

/// An OpenAPI v3 document for one group-version with the operations kubectl inspects (its
/// `fieldValidation` support check looks for a PATCH operation per kind); no schemas.
fn openapi_v3_doc(types: &[Arc<ResourceType>], group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
        .iter()
        .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": true}))
        .collect();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let item = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let op = |verb: &str| json!({"operationId": format!("{verb}{}", t.kind), "parameters": params, "responses": {"200": {"description": "OK"}}, "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk});
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "unversioned"}, "paths": paths, "components": {"schemas": {}}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_time_parsing() {
        let q = parse_query(Some("labelSelector=a%3Db%2Cc+in+(x)&watch=true&x"));
        assert_eq!(q["labelSelector"], "a=b,c in (x)");
        assert_eq!(q["watch"], "true");
        assert_eq!(q["x"], "");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        let token = encode_continue(7, "ns/a");
        assert_eq!(decode_continue(&token), Some((7, "ns/a".to_owned())));
    }
}
