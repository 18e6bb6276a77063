//! Types shared by several resources: credentials references, scale set labels, network
//! settings, container modes, cache volumes and templates.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Affinity, EnvVar, PersistentVolumeClaimSpec, PodSpec, ResourceRequirements, Toleration},
    apimachinery::pkg::api::resource::Quantity,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::schema::{embedded, embedded_list};

/// A key in a Secret. RSSC manifests may omit `key`; see each use for the keys then tried.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret; defaults to the namespace of the object that references it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Key inside the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

/// Keys tried, in order, for a GitHub App private key when `privateKeySecretRef.key` is unset.
pub const APP_PRIVATE_KEY_KEYS: [&str; 4] = ["privateKey", "private_key", "key", "github_app_private_key"];
/// Keys tried, in order, for a token when `tokenSecretRef.key` is unset.
pub const TOKEN_KEYS: [&str; 4] = ["token", "pat", "accessToken", "github_token"];

impl SecretKeyRef {
    /// Namespace of the Secret, given the namespace of the referencing object.
    pub fn namespace_or<'a>(&'a self, referrer_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(referrer_namespace)
    }
}

/// A label of the scale set on GitHub: what workflows put in `runs-on`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetLabel {
    /// `System` or `User`.
    #[serde(rename = "type", default)]
    pub type_: LabelType,
    /// The label, as written in `runs-on`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
}

/// Kind of a scale set label, as GitHub classifies them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LabelType {
    /// A label GitHub treats as describing the runner's system.
    #[default]
    System,
    /// A label of the user's choosing.
    User,
}

/// GitHub App credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GitHubAppAuth {
    /// The App's client ID (or, for older Apps, its numeric App ID).
    #[serde(rename = "clientID")]
    #[schemars(length(min = 1, max = 128))]
    pub client_id: String,
    /// ID of the App's installation on the organization or repository.
    #[serde(rename = "installationID")]
    #[schemars(range(min = 1))]
    pub installation_id: i64,
    /// The App's PEM private key. Without `key`, the keys `privateKey`, `private_key`, `key` and
    /// `github_app_private_key` are tried in that order.
    #[serde(rename = "privateKeySecretRef")]
    pub private_key_secret_ref: SecretKeyRef,
}

/// Personal access token credentials (the only kind GitHub accepts for enterprise scope).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonalAccessTokenAuth {
    /// Secret holding the token. Without `key`, the keys `token`, `pat`, `accessToken` and
    /// `github_token` are tried in that order.
    pub token_secret_ref: SecretKeyRef,
}

/// Proxy settings for the controller's and listener's GitHub traffic and the runners'.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Proxy for `http://` URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<ProxyServer>,
    /// Proxy for `https://` URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<ProxyServer>,
    /// Hosts, domains (`.example.com`), IPs or CIDRs reached directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
}

/// One proxy server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyServer {
    /// Proxy URL, `http://host:port` or `https://host:port`, without credentials.
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s@/]+(:[0-9]+)?/?$"))]
    pub url: String,
    /// Name of a Secret in the same namespace with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credential_secret_ref: Option<String>,
}

/// Trust settings for a GitHub Enterprise Server with a private CA.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitHubServerTls {
    /// Where the CA bundle (PEM) comes from.
    pub certificate_from: CertificateSource,
    /// If set, the bundle is also mounted into runner containers at this directory, and
    /// `NODE_EXTRA_CA_CERTS` points the runner at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), pattern(r"^/"))]
    pub runner_mount_path: Option<String>,
}

/// Source of a CA bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSource {
    /// A key of a ConfigMap in the same namespace.
    pub config_map_key_ref: ConfigMapKeyRef,
}

/// A key in a ConfigMap in the referencing object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the PEM bundle.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// How runner containers get to run job containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type != 'kubernetes' || has(self.kubernetesModeWorkVolumeClaim)",
        "message": "containerMode 'kubernetes' needs kubernetesModeWorkVolumeClaim: the work volume the runner and its job pods share"
    },
    {
        "rule": "self.type == 'kubernetes' || !has(self.kubernetesModeWorkVolumeClaim)",
        "message": "kubernetesModeWorkVolumeClaim is only used with containerMode 'kubernetes'"
    }
]))]
pub struct ContainerMode {
    /// `default`, `dind`, `kubernetes` or `kubernetes-novolume`.
    #[serde(rename = "type", default)]
    pub type_: ContainerModeType,
    /// Claim template of the work volume, for `kubernetes` mode (an ephemeral volume per runner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "embedded::<PersistentVolumeClaimSpec>")]
    pub kubernetes_mode_work_volume_claim: Option<PersistentVolumeClaimSpec>,
}

/// The container modes rssc knows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerModeType {
    /// The runner container as given, no job containers.
    #[default]
    Default,
    /// A privileged Docker-in-Docker sidecar serves the runner's docker socket.
    Dind,
    /// Job containers run as separate pods through the runner's Kubernetes container hooks.
    Kubernetes,
    /// Like `kubernetes`, without a shared work volume.
    KubernetesNovolume,
}

/// A cache volume shared by all runners of a scale set (a PersistentVolumeClaim rssc manages).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheVolume {
    /// Volume name, also used in the claim's name.
    #[schemars(length(min = 1, max = 40), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Requested size, for example `50Gi`.
    pub size: Quantity,
    /// Storage class of the claim; the cluster default if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class: Option<String>,
    /// Where runner containers mount it.
    #[schemars(length(min = 1, max = 1024), pattern(r"^/"))]
    pub mount_path: String,
    /// Access modes of the claim; `ReadWriteMany` so runners on any node can share it.
    #[serde(default = "default_access_modes")]
    pub access_modes: Vec<AccessMode>,
}

fn default_access_modes() -> Vec<AccessMode> {
    vec![AccessMode::ReadWriteMany]
}

/// Access mode of a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    /// Read-write by one node.
    ReadWriteOnce,
    /// Read-only by many nodes.
    ReadOnlyMany,
    /// Read-write by many nodes.
    ReadWriteMany,
    /// Read-write by one pod.
    ReadWriteOncePod,
}

/// Labels and annotations of a template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TemplateMetadata {
    /// Labels added to the Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A user's runner pod template: a full Kubernetes pod template in which everything is optional
/// (rssc fills in the runner container), plus RSSC's shorthand.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct RunnerPodTemplate {
    /// Labels and annotations for runner Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Pod spec for runner Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<RunnerPodSpec>,
}

/// A Kubernetes `PodSpec` whose `containers` may be omitted, plus RSSC's pod-level shorthand:
/// `env` and `resources` here apply to the runner container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RunnerPodSpec {
    /// Environment variables added to the runner container (RSSC shorthand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Resources of the runner container (RSSC shorthand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Everything else: the standard pod spec fields.
    #[serde(flatten)]
    pub pod: PodSpec,
}

impl JsonSchema for RunnerPodSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RunnerPodSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = embedded::<PodSpec>(generator);
        let env = embedded_list::<EnvVar>(generator);
        let resources = embedded::<ResourceRequirements>(generator);
        let object = schema.ensure_object();
        // rssc adds the runner container itself, so a template may name none.
        object.remove("required");
        object.insert(
            "description".into(),
            "Pod spec for runner Pods. `containers` may be omitted: rssc adds the `runner` container. \
             `env` and `resources` at this level are RSSC's shorthand for the runner container's."
                .into(),
        );
        if let Some(props) = object.get_mut("properties").and_then(|p| p.as_object_mut()) {
            props.insert("env".into(), env.to_value());
            props.insert("resources".into(), resources.to_value());
        }
        schema
    }
}

/// Overrides for the listener Pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTemplate {
    /// Labels and annotations for the listener Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Resources of the listener container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "embedded::<ResourceRequirements>")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the listener Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the listener Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "embedded_list::<Toleration>")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the listener Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "embedded::<Affinity>")]
    pub affinity: Option<Affinity>,
    /// Priority class of the listener Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,
    /// Extra environment variables of the listener container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "embedded_list::<EnvVar>")]
    pub env: Vec<EnvVar>,
}

/// A complete pod template, as the controller resolves it for runners.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PodTemplate {
    /// Labels and annotations of the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// The Pod's spec.
    #[schemars(schema_with = "embedded::<PodSpec>")]
    pub spec: PodSpec,
}

/// Reference to an object by name and optional namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct NamespacedRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the object; defaults to the referencing object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl NamespacedRef {
    /// Namespace of the referenced object, given the namespace of the referencing object.
    pub fn namespace_or<'a>(&'a self, referrer_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(referrer_namespace)
    }
}

/// What an EphemeralRunner needs to register with GitHub, copied from its AutoscaleSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerConfig {
    /// The AutoscaleSet whose credentials register the runner.
    pub autoscale_set_ref: NamespacedRef,
    /// The GitHub URL the scale set is registered at.
    #[serde(rename = "githubConfigURL")]
    #[schemars(length(min = 1, max = 2048))]
    pub github_config_url: String,
    /// ID of the scale set on GitHub.
    #[serde(rename = "scaleSetID")]
    pub scale_set_id: i64,
    /// Name of the scale set on GitHub.
    #[schemars(length(max = 256))]
    pub scale_set_name: String,
    /// The runner's work folder, passed to GitHub with the JIT configuration request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub work_folder: Option<String>,
}

/// Schema of a condition list: a map keyed by `type`, so server-side apply merges entries.
pub(crate) fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let items = embedded::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>(generator);
    json_schema!({
        "description": "Current state, one entry per condition type.",
        "type": "array",
        "items": items,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}
