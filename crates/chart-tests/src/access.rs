//! What a Kubernetes client does, in RBAC's terms: each request becomes the (API group,
//! resource, verb) an authorizer checks, recorded by a layer around the client's HTTP stack,
//! and compared with RBAC rules.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use serde_json::Value;
use tower::{Layer, Service};

/// One permission: API group (`""` for the core group), resource (`pods`, `pods/status`) and
/// verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// API group.
    pub group: String,
    /// Resource, with `/subresource`.
    pub resource: String,
    /// Verb.
    pub verb: String,
}

impl Access {
    /// `group`, `resource`, `verb`.
    pub fn new(group: &str, resource: &str, verb: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
            verb: verb.to_owned(),
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {}/{}", self.verb, group, self.resource)
    }
}

/// The permissions a request needs; empty for non-resource paths (`/version`, discovery), which
/// every authenticated client may read.
///
/// A server-side apply (`application/apply-patch+yaml`) may create the object, which the API
/// server authorizes as `create` as well as `patch`.
pub fn needed(method: &str, path: &str, query: &str, content_type: Option<&str>) -> Vec<Access> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return Vec::new(),
    };
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] => {
            let mut r = vec![*resource];
            r.extend(tail);
            r
        }
        other => other.to_vec(),
    };
    let (resource, name, sub) = match rest.as_slice() {
        [] => return Vec::new(),
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub, ..] => (*resource, Some(*name), Some(*sub)),
    };
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if watch => "watch",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => return Vec::new(),
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    let mut out = vec![Access::new(group, &resource, verb)];
    if verb == "patch" && content_type.is_some_and(|c| c.starts_with("application/apply-patch")) {
        out.push(Access::new(group, &resource, "create"));
    }
    out
}

/// Every permission the RBAC `rules` (a JSON list of PolicyRules) allow, ignoring
/// `resourceNames` (a rule limited to names is counted as allowing the verb).
pub fn allowed(rules: &Value) -> BTreeSet<Access> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert(Access::new(&group, &resource, &verb));
                }
            }
        }
    }
    out
}

/// The permissions recorded so far.
#[derive(Clone, Default, Debug)]
pub struct Recorded(Arc<Mutex<BTreeSet<Access>>>);

impl Recorded {
    /// What was needed so far.
    pub fn all(&self) -> BTreeSet<Access> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn add(&self, accesses: Vec<Access>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(accesses);
    }
}

/// A layer for kube's `ClientBuilder::with_layer` that records what each request needs.
#[derive(Clone, Default, Debug)]
pub struct RecordLayer {
    /// Where the permissions go.
    pub recorded: Recorded,
}

impl<S> Layer<S> for RecordLayer {
    type Service = RecordService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordService {
            inner,
            recorded: self.recorded.clone(),
        }
    }
}

/// The service [`RecordLayer`] makes.
#[derive(Clone, Debug)]
pub struct RecordService<S> {
    inner: S,
    recorded: Recorded,
}

impl<S, B> Service<http::Request<B>> for RecordService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        self.recorded.add(needed(
            request.method().as_str(),
            request.uri().path(),
            request.uri().query().unwrap_or_default(),
            content_type,
        ));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(method: &str, path: &str, query: &str) -> String {
        let all = needed(method, path, query, None);
        assert_eq!(all.len(), 1, "{all:?}");
        all[0].to_string()
    }

    #[test]
    fn requests_become_the_permissions_an_authorizer_checks() {
        assert_eq!(one("GET", "/api/v1/namespaces/ci/pods/p1", ""), "get core/pods");
        assert_eq!(
            one("GET", "/api/v1/pods", "labelSelector=a%3Db"),
            "list core/pods"
        );
        assert_eq!(
            one(
                "GET",
                "/api/v1/namespaces/ci/secrets",
                "watch=true&resourceVersion=1"
            ),
            "watch core/secrets"
        );
        assert_eq!(
            one(
                "PATCH",
                "/apis/scaleset.actions.github.com/v1alpha1/namespaces/ci/runnersets/a/status",
                ""
            ),
            "patch scaleset.actions.github.com/runnersets/status"
        );
        assert_eq!(
            one("PUT", "/apis/coordination.k8s.io/v1/namespaces/ci/leases/l", ""),
            "update coordination.k8s.io/leases"
        );
        assert_eq!(one("POST", "/api/v1/namespaces/ci/pods", ""), "create core/pods");
        assert_eq!(
            one("DELETE", "/apis/apps/v1/namespaces/ci/deployments/d", ""),
            "delete apps/deployments"
        );
        assert_eq!(
            one("DELETE", "/api/v1/namespaces/ci/pods", ""),
            "deletecollection core/pods"
        );
        assert_eq!(one("GET", "/api/v1/namespaces/ci", ""), "get core/namespaces");
        assert!(needed("GET", "/version", "", None).is_empty());
        assert!(needed("GET", "/apis/apps/v1", "", None).is_empty());
    }

    #[test]
    fn an_apply_may_create() {
        let all = needed(
            "PATCH",
            "/api/v1/namespaces/ci/secrets/s",
            "fieldManager=x&force=true",
            Some("application/apply-patch+yaml"),
        );
        let verbs: Vec<&str> = all.iter().map(|a| a.verb.as_str()).collect();
        assert_eq!(verbs, ["patch", "create"]);
        let merge = needed(
            "PATCH",
            "/api/v1/namespaces/ci/secrets/s",
            "",
            Some("application/merge-patch+json"),
        );
        assert_eq!(merge.len(), 1);
    }

    #[test]
    fn rules_expand_to_each_group_resource_and_verb() {
        let rules = json!([
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["x"], "verbs": ["get"]}
        ]);
        let all = allowed(&rules);
        assert_eq!(all.len(), 5);
        assert!(all.contains(&Access::new("events.k8s.io", "events", "patch")));
        assert!(all.contains(&Access::new("apps", "deployments", "get")));
    }
}
