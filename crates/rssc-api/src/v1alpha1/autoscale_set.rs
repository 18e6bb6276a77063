//! `AutoscaleSet`: one runner scale set registered with GitHub.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CacheVolume, ContainerMode, GitHubAppAuth, GitHubServerTls, PersonalAccessTokenAuth, ProxyConfig,
    RunnerPodTemplate, ScaleSetLabel, conditions_schema,
};

/// Default runner group on GitHub.
pub const DEFAULT_RUNNER_GROUP: &str = "default";
/// Default `maxRunners`.
pub const DEFAULT_MAX_RUNNERS: i32 = 10;

/// A runner scale set on GitHub: where it is registered, with which credentials, and what its
/// runners look like. Field names follow the original RSSC manifests.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scaleset.actions.github.com",
    version = "v1alpha1",
    kind = "AutoscaleSet",
    namespaced,
    status = "AutoscaleSetStatus",
    shortname = "asss",
    category = "github",
    category = "scaleset",
    doc = "A GitHub Actions runner scale set: registration, credentials and runner defaults.",
    printcolumn = r#"{"name":"Scale Set","type":"string","jsonPath":".spec.scaleSetName"}"#,
    printcolumn = r#"{"name":"ID","type":"integer","jsonPath":".status.scaleSetID"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Min","type":"integer","jsonPath":".spec.minRunners"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxRunners"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentRunners"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredRunners"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"URL","type":"string","priority":1,"jsonPath":".spec.githubConfigURL"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    selectable = ".spec.scaleSetName",
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("AutoscaleSet names are at most 63 characters: the name is written into a label on every runner"),
    validation = Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.scaleSetID) || self.spec.githubConfigURL == oldSelf.spec.githubConfigURL"
    )
    .message("githubConfigURL cannot change once the scale set is registered (status.scaleSetID is set); create a new AutoscaleSet for the new URL")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.minRunners <= self.maxRunners",
        "message": "minRunners must not be greater than maxRunners"
    },
    {
        "rule": "has(self.githubApp) != has(self.personalAccessToken)",
        "message": "set exactly one of githubApp or personalAccessToken"
    }
]))]
pub struct AutoscaleSetSpec {
    /// URL of the enterprise (`https://github.com/enterprises/NAME`), organization
    /// (`https://github.com/ORG`) or repository (`https://github.com/ORG/REPO`) the scale set is
    /// registered at; GitHub Enterprise Server and `*.ghe.com` hosts work the same way.
    #[serde(rename = "githubConfigURL")]
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": r"self.matches('^https://[^/?#\\s]+/[^/?#\\s]+(/[^/?#\\s]+)?/?$')",
        "message": "githubConfigURL must be an https URL of an enterprise (https://github.com/enterprises/NAME), an organization (https://github.com/ORG) or a repository (https://github.com/ORG/REPO)"
    }]))]
    pub github_config_url: String,
    /// Name of the scale set on GitHub, unique within its runner group; workflows use it in
    /// `runs-on`.
    #[schemars(length(min = 1, max = 256))]
    pub scale_set_name: String,
    /// Runner group the scale set belongs to.
    #[serde(default = "default_runner_group")]
    #[schemars(length(min = 1, max = 256))]
    pub runner_group: String,
    /// Extra labels of the scale set (its name is always one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub labels: Vec<ScaleSetLabel>,
    /// Idle runners kept ready on top of the runners that have jobs.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_runners: i32,
    /// Most runners at once; `0` pauses the scale set (jobs wait in GitHub's queue).
    #[serde(default = "default_max_runners")]
    #[schemars(range(min = 0))]
    pub max_runners: i32,
    /// Image of the runner container, for example `ghcr.io/actions/actions-runner:latest`.
    #[schemars(length(min = 1, max = 1024))]
    pub runner_image: String,
    /// GitHub App credentials. Exactly one of `githubApp` and `personalAccessToken` is set.
    #[serde(default, rename = "githubApp", skip_serializing_if = "Option::is_none")]
    pub github_app: Option<GitHubAppAuth>,
    /// Personal access token credentials (required for enterprise scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_access_token: Option<PersonalAccessTokenAuth>,
    /// Template of runner Pods; a RunnerSet's `runnerTemplate` is merged over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_template: Option<RunnerPodTemplate>,
    /// Proxy for GitHub traffic of the controller, the listener and the runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    /// CA bundle for a GitHub Enterprise Server with a private CA.
    #[serde(default, rename = "githubServerTLS", skip_serializing_if = "Option::is_none")]
    pub github_server_tls: Option<GitHubServerTls>,
    /// How runners run job containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_mode: Option<ContainerMode>,
    /// Cache volumes shared by this scale set's runners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub persistent_volumes: Vec<CacheVolume>,
}

fn default_runner_group() -> String {
    DEFAULT_RUNNER_GROUP.to_owned()
}

fn default_max_runners() -> i32 {
    DEFAULT_MAX_RUNNERS
}

/// Observed state of an AutoscaleSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscaleSetStatus {
    /// ID of the scale set on GitHub, once registered.
    #[serde(default, rename = "scaleSetID", skip_serializing_if = "Option::is_none")]
    pub scale_set_id: Option<i64>,
    /// ID of the runner group on GitHub.
    #[serde(default, rename = "runnerGroupID", skip_serializing_if = "Option::is_none")]
    pub runner_group_id: Option<i64>,
    /// Labels as GitHub registered them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<ScaleSetLabel>,
    /// Runners that exist now.
    #[serde(default)]
    pub current_runners: i32,
    /// Runners the listener asks for.
    #[serde(default)]
    pub desired_runners: i32,
    /// Summary for people; conditions carry the detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AutoscaleSetPhase>,
    /// Set when a runner exits because GitHub no longer accepts its version; cleared when a
    /// runner completes a job again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated_runner_version: Option<DeprecatedRunnerVersion>,
    /// `Ready`, `CredentialsValid`, `ScaleSetRegistered` and `RunnerVersionSupported`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A runner that exited with code 7 (deprecated runner version).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeprecatedRunnerVersion {
    /// Image of the runner container.
    pub image: String,
    /// The EphemeralRunner it was.
    pub runner: String,
    /// When it exited.
    pub time: Time,
}

/// Lifecycle phase of an AutoscaleSet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AutoscaleSetPhase {
    /// Not registered with GitHub yet.
    Pending,
    /// Registered and serving jobs.
    Active,
    /// Something needs attention; see the conditions.
    Error,
    /// Being deleted: waiting for runners to drain, then removing the scale set from GitHub.
    Deleting,
}
