//! The resource types the server serves: the built-in ones the project uses and those added by
//! CustomResourceDefinitions.

use serde_json::{Value, json};

use crate::error::ResourceRef;

/// One served resource (a plural in a group-version).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// Served versions; the first is the preferred (storage) one.
    pub versions: Vec<String>,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular resource name.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories (`all`, ...).
    pub categories: Vec<String>,
    /// Whether it has a `status` subresource.
    pub has_status: bool,
    /// Whether `metadata.generation` is maintained.
    pub tracks_generation: bool,
    /// Whether an update without `resourceVersion` is allowed.
    pub unconditional_update: bool,
    /// The CRD's structural schema (custom resources only).
    pub schema: Option<Value>,
    /// Extra field selectors (CRD `selectableFields`, as dotted paths without the leading dot).
    pub selectable_fields: Vec<String>,
    /// CRD `additionalPrinterColumns` (custom resources only).
    pub printer_columns: Vec<Value>,
    /// Whether this is a custom resource.
    pub custom: bool,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_owned(),
            versions: vec![version.to_owned()],
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            has_status: false,
            tracks_generation: false,
            unconditional_update: true,
            schema: None,
            selectable_fields: Vec::new(),
            printer_columns: Vec::new(),
            custom: false,
        }
    }

    fn status(mut self) -> Self {
        self.has_status = true;
        self
    }

    fn generation(mut self) -> Self {
        self.tracks_generation = true;
        self
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn all(mut self) -> Self {
        self.categories = vec!["all".to_owned()];
        self
    }

    /// `group/version` (or `version` for the core group) for the given version.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The preferred `apiVersion`.
    pub fn preferred_api_version(&self) -> String {
        self.api_version(&self.versions[0])
    }

    /// The identity used in error messages.
    pub fn as_ref(&self) -> ResourceRef<'_> {
        ResourceRef {
            plural: &self.plural,
            group: &self.group,
            kind: &self.kind,
        }
    }

    /// The verbs served, as discovery lists them.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// Builds the resource type a CRD (as JSON) defines, or explains why it cannot.
    pub fn from_crd(crd: &Value) -> Result<Self, String> {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().ok_or("spec.group is required")?;
        let names = &spec["names"];
        let plural = names["plural"].as_str().ok_or("spec.names.plural is required")?;
        let kind = names["kind"].as_str().ok_or("spec.names.kind is required")?;
        let versions = spec["versions"].as_array().ok_or("spec.versions is required")?;
        let served: Vec<&Value> = versions.iter().filter(|v| v["served"] == true).collect();
        let storage = versions
            .iter()
            .find(|v| v["storage"] == true)
            .ok_or("spec.versions: exactly one version must be the storage version")?;
        let mut names_served: Vec<String> = vec![
            storage["name"]
                .as_str()
                .ok_or("spec.versions[].name is required")?
                .to_owned(),
        ];
        for v in &served {
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            if !names_served.contains(&name) {
                names_served.push(name);
            }
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        Ok(Self {
            group: group.to_owned(),
            versions: names_served,
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            singular: names["singular"]
                .as_str()
                .map_or_else(|| kind.to_lowercase(), str::to_owned),
            namespaced: spec["scope"] != "Cluster",
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            has_status: !storage["subresources"]["status"].is_null(),
            tracks_generation: true,
            unconditional_update: false,
            schema: Some(storage["schema"]["openAPIV3Schema"].clone()),
            selectable_fields: storage["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| {
                    f["jsonPath"]
                        .as_str()
                        .map(|p| p.trim_start_matches('.').to_owned())
                })
                .collect(),
            printer_columns: storage["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            custom: true,
        })
    }

    /// The discovery entry (`APIResource`) for this resource and its subresources.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut entries = vec![main];
        let sub = |name: &str, group: &str, kind: &str| {
            json!({"name": format!("{}/{name}", self.plural), "singularName": "", "namespaced": self.namespaced,
                "group": group, "version": "v1", "kind": kind, "verbs": ["create"]})
        };
        match (self.group.as_str(), self.plural.as_str()) {
            ("", "serviceaccounts") => entries.push(sub("token", "authentication.k8s.io", "TokenRequest")),
            ("", "pods") => {
                entries.push(sub("binding", "", "Binding"));
                entries.push(sub("eviction", "policy", "Eviction"));
            }
            _ => {}
        }
        if self.has_status {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }
}

/// The built-in resource types the project uses.
pub fn builtins() -> Vec<ResourceType> {
    use ResourceType as R;
    vec![
        R::builtin("", "v1", "Namespace", "namespaces", false)
            .status()
            .short(&["ns"]),
        R::builtin("", "v1", "Node", "nodes", false)
            .status()
            .short(&["no"]),
        R::builtin("", "v1", "Pod", "pods", true)
            .status()
            .short(&["po"])
            .all(),
        R::builtin("", "v1", "Secret", "secrets", true),
        R::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        R::builtin("", "v1", "ResourceQuota", "resourcequotas", true)
            .status()
            .short(&["quota"]),
        R::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        R::builtin("", "v1", "Service", "services", true)
            .status()
            .short(&["svc"])
            .all(),
        R::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        R::builtin("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true)
            .status()
            .short(&["pvc"]),
        R::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
        R::builtin("apps", "v1", "Deployment", "deployments", true)
            .status()
            .generation()
            .short(&["deploy"])
            .all(),
        R::builtin("apps", "v1", "ReplicaSet", "replicasets", true)
            .status()
            .generation()
            .short(&["rs"])
            .all(),
        R::builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        R::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        R::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        R::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        R::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        R::builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .status()
        .generation()
        .short(&["pdb"]),
        R::builtin(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        )
        .short(&["netpol"]),
        R::builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .status()
        .generation()
        .short(&["crd", "crds"]),
    ]
}

/// How a list field merges (server-side apply and strategic merge patch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars, merged by value.
    Set,
    /// A list of objects merged by these key fields.
    Map(Vec<String>),
}

/// The list kind of field `name` in a built-in object, given the path of its parent
/// (property names only), following the built-in types' `patchMergeKey`s and list types.
pub fn builtin_list_kind(parent: &[String], name: &str) -> ListKind {
    let keys = |k: &[&str]| ListKind::Map(k.iter().map(|s| (*s).to_owned()).collect());
    match name {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "hostAliases"
        | "readinessGates"
        | "resourceClaims" => match name {
            "hostAliases" => keys(&["ip"]),
            "readinessGates" => keys(&["conditionType"]),
            _ => keys(&["name"]),
        },
        "containerStatuses" | "initContainerStatuses" => ListKind::Atomic,
        "volumeMounts" => keys(&["mountPath"]),
        "volumeDevices" => keys(&["devicePath"]),
        "ports" => {
            if parent.last().is_some_and(|p| p == "spec") && !parent.iter().any(|p| p == "template") {
                // Service ports (and anything else at spec.ports).
                keys(&["port", "protocol"])
            } else {
                keys(&["containerPort", "protocol"])
            }
        }
        "conditions" => keys(&["type"]),
        "finalizers" => ListKind::Set,
        "ownerReferences" => keys(&["uid"]),
        _ => ListKind::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_becomes_a_resource_type() {
        let crd = json!({
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                    "selectableFields": [{"jsonPath": ".spec.color"}],
                    "subresources": {"status": {}}}]
            }
        });
        let r = ResourceType::from_crd(&crd).unwrap();
        assert_eq!(r.plural, "widgets");
        assert!(r.has_status && r.namespaced && r.custom);
        assert_eq!(r.selectable_fields, vec!["spec.color"]);
        assert_eq!(r.preferred_api_version(), "example.com/v1");
    }

    #[test]
    fn builtin_merge_keys() {
        let spec = vec!["spec".to_owned()];
        assert_eq!(
            builtin_list_kind(&spec, "containers"),
            ListKind::Map(vec!["name".into()])
        );
        assert_eq!(
            builtin_list_kind(&spec, "ports"),
            ListKind::Map(vec!["port".into(), "protocol".into()])
        );
        let container = vec!["spec".to_owned(), "containers".to_owned()];
        assert_eq!(
            builtin_list_kind(&container, "ports"),
            ListKind::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(builtin_list_kind(&spec, "args"), ListKind::Atomic);
    }
}
