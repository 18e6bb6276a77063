//! Resolves the pod template of a RunnerSet's runners: the AutoscaleSet's template with the
//! RunnerSet's merged over it, RSSC's shorthand applied to the runner container, then what the
//! container mode, cache volumes, CA bundle and proxy need. Pure: no API calls.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, EphemeralVolumeSource,
        ExecAction, ObjectFieldSelector, PersistentVolumeClaimTemplate, PersistentVolumeClaimVolumeSource,
        PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
        SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use rssc_api::{
    consts::{components, labels},
    names,
    v1alpha1::{
        AutoscaleSetSpec, CacheVolume, ContainerMode, ContainerModeType, GitHubServerTls, PodTemplate,
        RunnerPodTemplate, RunnerSetSpec, TemplateMetadata,
    },
};

use crate::merge::merge;

/// Name of the container that runs the GitHub runner.
pub const RUNNER_CONTAINER: &str = "runner";
/// Command of the runner container when the template gives none.
pub const RUNNER_COMMAND: &str = "/home/runner/run.sh";
/// Where the runner keeps its work folder.
pub const WORK_DIR: &str = "/home/runner/_work";

const DOCKER_SOCKET_DIR: &str = "/var/run";
const DOCKER_HOST: &str = "unix:///var/run/docker.sock";
const RUNNER_EXTERNALS: &str = "/home/runner/externals";

/// Settings that come from the controller's configuration and the cluster, not from the CRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerDefaults {
    /// The API server supports native sidecars (init containers with `restartPolicy: Always`).
    pub native_sidecars: bool,
    /// Image of the Docker daemon sidecar in `dind` mode.
    pub dind_image: String,
}

impl Default for RunnerDefaults {
    fn default() -> Self {
        Self {
            native_sidecars: true,
            dind_image: "docker:dind".to_owned(),
        }
    }
}

impl RunnerDefaults {
    /// Whether a server of this version runs native sidecars (on by default since 1.29).
    pub fn native_sidecars_supported(major: u32, minor: u32) -> bool {
        (major, minor) >= (1, 29)
    }
}

/// The objects a runner template is resolved from.
#[derive(Clone, Copy, Debug)]
pub struct TemplateSource<'a> {
    /// Name of the AutoscaleSet.
    pub autoscale_set_name: &'a str,
    /// Spec of the AutoscaleSet.
    pub autoscale_set: &'a AutoscaleSetSpec,
    /// Name of the RunnerSet.
    pub runner_set_name: &'a str,
    /// Spec of the RunnerSet.
    pub runner_set: &'a RunnerSetSpec,
}

/// A resolved runner template and the hash that identifies it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedTemplate {
    /// The template, labelled with [`labels::POD_SPEC_HASH`].
    pub template: PodTemplate,
    /// Hash of the template; runners made from another template are outdated.
    pub hash: String,
}

/// Error resolving a runner template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The merged template does not read back as a pod template.
    #[error("the merged runner template is not a valid pod template: {0}")]
    Invalid(#[source] serde_json::Error),
}

/// Builds the pod template of the RunnerSet's runners.
pub fn resolve(
    source: TemplateSource<'_>,
    defaults: &RunnerDefaults,
) -> Result<ResolvedTemplate, TemplateError> {
    let merged = merged_user_template(source)?;
    let spec = merged.spec.unwrap_or_default();
    let mut pod = spec.pod;
    let asset = source.autoscale_set;

    let runner = runner_container(&mut pod, &asset.runner_image);
    apply_shorthand(runner, spec.env, spec.resources);

    let mode = asset.container_mode.clone().unwrap_or_default();
    apply_container_mode(&mut pod, &mode, &asset.runner_image, defaults);
    if matches!(
        mode.type_,
        ContainerModeType::Kubernetes | ContainerModeType::KubernetesNovolume
    ) {
        // The runner creates job Pods, so it needs an identity with a Role (made by the controller).
        pod.service_account_name
            .get_or_insert_with(|| names::runner_kube_mode_account(source.runner_set_name));
        pod.automount_service_account_token.get_or_insert(true);
    } else {
        // Runners get no Kubernetes credentials unless the template asks for them.
        pod.automount_service_account_token.get_or_insert(false);
    }
    apply_cache_volumes(&mut pod, source.runner_set_name, &asset.persistent_volumes);
    if let Some(tls) = &asset.github_server_tls {
        apply_ca_bundle(&mut pod, tls);
    }
    if asset.proxy.is_some() {
        apply_proxy_env(&mut pod, source.runner_set_name);
    }
    pod.restart_policy.get_or_insert_with(|| "Never".to_owned());
    let security = pod
        .security_context
        .get_or_insert_with(PodSecurityContext::default);
    security.seccomp_profile.get_or_insert_with(|| SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..Default::default()
    });

    let metadata = template_metadata(merged.metadata.unwrap_or_default(), source);
    let mut template = PodTemplate {
        metadata: Some(metadata),
        spec: pod,
    };
    let hash = template_hash(&template);
    if let Some(metadata) = template.metadata.as_mut() {
        metadata
            .labels
            .insert(labels::POD_SPEC_HASH.to_owned(), hash.clone());
    }
    Ok(ResolvedTemplate { template, hash })
}

/// The AutoscaleSet's template with the RunnerSet's merged over it.
fn merged_user_template(source: TemplateSource<'_>) -> Result<RunnerPodTemplate, TemplateError> {
    let to_value = |t: &Option<RunnerPodTemplate>| serde_json::to_value(t.clone().unwrap_or_default());
    let mut base = to_value(&source.autoscale_set.runner_template).map_err(TemplateError::Invalid)?;
    let overlay = to_value(&source.runner_set.runner_template).map_err(TemplateError::Invalid)?;
    merge(&mut base, &overlay);
    serde_json::from_value(base).map_err(TemplateError::Invalid)
}

/// Labels: the user's, then ours (ours win: selectors and ownership depend on them).
fn template_metadata(user: TemplateMetadata, source: TemplateSource<'_>) -> TemplateMetadata {
    let mut metadata = user;
    metadata
        .labels
        .retain(|key, _| !key.starts_with(rssc_api::consts::PREFIX));
    metadata.labels.extend([
        (
            labels::AUTOSCALE_SET.to_owned(),
            source.autoscale_set_name.to_owned(),
        ),
        (labels::RUNNER_SET.to_owned(), source.runner_set_name.to_owned()),
        (
            labels::RUNNER_GROUP.to_owned(),
            names::label_value(&source.autoscale_set.runner_group),
        ),
        (labels::COMPONENT.to_owned(), components::RUNNER.to_owned()),
        (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
    ]);
    metadata
}

/// Hash of a template: FNV-1a over its canonical JSON (k8s-openapi serializes fields in a fixed
/// order and maps sorted), as eight hex digits.
pub fn template_hash(template: &PodTemplate) -> String {
    let bytes = serde_json::to_vec(template).expect("pod templates serialize");
    format!("{:08x}", names::fnv1a32(&bytes))
}

/// The runner container, added first if the template has none.
fn runner_container<'p>(pod: &'p mut PodSpec, image: &str) -> &'p mut Container {
    let index = match pod.containers.iter().position(|c| c.name == RUNNER_CONTAINER) {
        Some(index) => index,
        None => {
            pod.containers.insert(
                0,
                Container {
                    name: RUNNER_CONTAINER.to_owned(),
                    ..Default::default()
                },
            );
            0
        }
    };
    let runner = &mut pod.containers[index];
    runner.image.get_or_insert_with(|| image.to_owned());
    if runner.command.is_none() && runner.args.is_none() {
        runner.command = Some(vec![RUNNER_COMMAND.to_owned()]);
    }
    runner
}

/// RSSC's pod-level `env` and `resources` go to the runner container; what the container sets
/// itself is more specific and wins.
fn apply_shorthand(runner: &mut Container, env: Vec<EnvVar>, resources: Option<ResourceRequirements>) {
    for var in env {
        add_env_if_absent(runner, var);
    }
    if let Some(shorthand) = resources {
        let own = runner.resources.get_or_insert_with(ResourceRequirements::default);
        for (own_map, short_map) in [
            (&mut own.requests, shorthand.requests),
            (&mut own.limits, shorthand.limits),
        ] {
            if let Some(short_map) = short_map {
                let own_map = own_map.get_or_insert_with(BTreeMap::new);
                for (resource, quantity) in short_map {
                    own_map.entry(resource).or_insert(quantity);
                }
            }
        }
    }
}

fn apply_container_mode(
    pod: &mut PodSpec,
    mode: &ContainerMode,
    runner_image: &str,
    defaults: &RunnerDefaults,
) {
    match mode.type_ {
        ContainerModeType::Default => {}
        ContainerModeType::Dind => apply_dind(pod, runner_image, defaults),
        ContainerModeType::Kubernetes => {
            let claim = mode.kubernetes_mode_work_volume_claim.clone().unwrap_or_default();
            add_volume_if_absent(
                pod,
                Volume {
                    name: "work".to_owned(),
                    ephemeral: Some(EphemeralVolumeSource {
                        volume_claim_template: Some(PersistentVolumeClaimTemplate {
                            metadata: None,
                            spec: claim,
                        }),
                    }),
                    ..Default::default()
                },
            );
            let runner = runner_mut(pod);
            add_mount_if_absent(runner, "work", WORK_DIR);
            apply_hooks_env(runner, "/home/runner/k8s/index.js");
        }
        ContainerModeType::KubernetesNovolume => {
            let runner = runner_mut(pod);
            apply_hooks_env(runner, "/home/runner/k8s-novolume/index.js");
            add_env_if_absent(runner, env("ACTIONS_RUNNER_IMAGE", runner_image));
        }
    }
}

fn apply_hooks_env(runner: &mut Container, hooks: &str) {
    add_env_if_absent(runner, env("ACTIONS_RUNNER_CONTAINER_HOOKS", hooks));
    add_env_if_absent(
        runner,
        EnvVar {
            name: "ACTIONS_RUNNER_POD_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    add_env_if_absent(runner, env("ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER", "true"));
}

/// Docker-in-Docker: a privileged daemon (a native sidecar where supported) shares its socket
/// and the runner's externals with the runner through emptyDir volumes.
fn apply_dind(pod: &mut PodSpec, runner_image: &str, defaults: &RunnerDefaults) {
    for name in ["work", "dind-sock", "dind-externals"] {
        add_volume_if_absent(
            pod,
            Volume {
                name: name.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        );
    }
    let init_containers = pod.init_containers.get_or_insert_with(Vec::new);
    if !init_containers.iter().any(|c| c.name == "init-dind-externals") {
        init_containers.insert(
            0,
            Container {
                name: "init-dind-externals".to_owned(),
                image: Some(runner_image.to_owned()),
                command: Some(vec!["cp".to_owned()]),
                args: Some(vec![
                    "-r".to_owned(),
                    format!("{RUNNER_EXTERNALS}/."),
                    "/home/runner/tmpDir/".to_owned(),
                ]),
                volume_mounts: Some(vec![mount("dind-externals", "/home/runner/tmpDir")]),
                ..Default::default()
            },
        );
    }
    let user_has_dind = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .any(|c| c.name == "dind");
    if !user_has_dind {
        let mut dind = Container {
            name: "dind".to_owned(),
            image: Some(defaults.dind_image.clone()),
            args: Some(vec![
                "dockerd".to_owned(),
                format!("--host={DOCKER_HOST}"),
                "--group=$(DOCKER_GROUP_GID)".to_owned(),
            ]),
            env: Some(vec![env("DOCKER_GROUP_GID", "123")]),
            security_context: Some(SecurityContext {
                privileged: Some(true),
                ..Default::default()
            }),
            volume_mounts: Some(vec![
                mount("work", WORK_DIR),
                mount("dind-sock", DOCKER_SOCKET_DIR),
                mount("dind-externals", RUNNER_EXTERNALS),
            ]),
            ..Default::default()
        };
        if defaults.native_sidecars {
            // Started before the runner and kept running beside it; the runner starts once the
            // daemon answers, and the Pod completes when the runner exits.
            dind.restart_policy = Some("Always".to_owned());
            dind.startup_probe = Some(Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["docker".to_owned(), "info".to_owned()]),
                }),
                period_seconds: Some(5),
                failure_threshold: Some(24),
                ..Default::default()
            });
            pod.init_containers.get_or_insert_with(Vec::new).push(dind);
        } else {
            pod.containers.push(dind);
        }
    }
    let runner = runner_mut(pod);
    add_env_if_absent(runner, env("DOCKER_HOST", DOCKER_HOST));
    add_env_if_absent(runner, env("RUNNER_WAIT_FOR_DOCKER_IN_SECONDS", "120"));
    add_mount_if_absent(runner, "work", WORK_DIR);
    add_mount_if_absent(runner, "dind-sock", DOCKER_SOCKET_DIR);
}

fn apply_cache_volumes(pod: &mut PodSpec, runner_set: &str, volumes: &[CacheVolume]) {
    for cache in volumes {
        let volume_name = format!("cache-{}", cache.name);
        add_volume_if_absent(
            pod,
            Volume {
                name: volume_name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: names::cache_claim(runner_set, &cache.name),
                    read_only: None,
                }),
                ..Default::default()
            },
        );
        add_mount_if_absent(runner_mut(pod), &volume_name, &cache.mount_path);
    }
}

/// Mounts the CA bundle into the runner and points Node (the runner's actions) at it.
fn apply_ca_bundle(pod: &mut PodSpec, tls: &GitHubServerTls) {
    let Some(dir) = &tls.runner_mount_path else { return };
    let source = &tls.certificate_from.config_map_key_ref;
    add_volume_if_absent(
        pod,
        Volume {
            name: "github-server-tls".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: source.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let runner = runner_mut(pod);
    add_mount_if_absent(runner, "github-server-tls", dir);
    let file = format!("{}/{}", dir.trim_end_matches('/'), source.key);
    add_env_if_absent(runner, env("NODE_EXTRA_CA_CERTS", &file));
    add_env_if_absent(runner, env("RUNNER_UPDATE_CA_CERTS", "1"));
}

/// Proxy settings, credentials included, come from a Secret the controller writes, so they
/// never appear in a Pod spec.
fn apply_proxy_env(pod: &mut PodSpec, runner_set: &str) {
    let secret = names::runner_proxy_secret(runner_set);
    let runner = runner_mut(pod);
    for key in ["http_proxy", "https_proxy", "no_proxy"] {
        add_env_if_absent(
            runner,
            EnvVar {
                name: key.to_owned(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.clone(),
                        key: key.to_owned(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
    }
}

/// The runner container of a spec that has one (after [`runner_container`]).
pub fn runner_mut(pod: &mut PodSpec) -> &mut Container {
    pod.containers
        .iter_mut()
        .find(|c| c.name == RUNNER_CONTAINER)
        .expect("resolve() adds the runner container first")
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..Default::default()
    }
}

/// Adds an environment variable unless the container already sets one of that name.
pub fn add_env_if_absent(container: &mut Container, var: EnvVar) {
    let vars = container.env.get_or_insert_with(Vec::new);
    if !vars.iter().any(|v| v.name == var.name) {
        vars.push(var);
    }
}

fn add_mount_if_absent(container: &mut Container, name: &str, path: &str) {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if !mounts.iter().any(|m| m.name == name || m.mount_path == path) {
        mounts.push(mount(name, path));
    }
}

fn add_volume_if_absent(pod: &mut PodSpec, volume: Volume) {
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == volume.name) {
        volumes.push(volume);
    }
}

/// Metadata of an object derived from a template, for callers that build Pods.
pub fn object_meta(template: &PodTemplate) -> ObjectMeta {
    let metadata = template.metadata.clone().unwrap_or_default();
    ObjectMeta {
        labels: Some(metadata.labels).filter(|l| !l.is_empty()),
        annotations: Some(metadata.annotations).filter(|a| !a.is_empty()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use rssc_api::v1alpha1::NamespacedRef;
    use serde_json::json;

    use super::*;

    fn autoscale_set(extra: serde_json::Value) -> AutoscaleSetSpec {
        let mut spec = json!({
            "githubConfigURL": "https://github.com/org",
            "scaleSetName": "linux",
            "runnerImage": "ghcr.io/actions/actions-runner:2.330.0",
            "githubApp": {"clientID": "c", "installationID": 1, "privateKeySecretRef": {"name": "s"}}
        });
        merge(&mut spec, &extra);
        serde_json::from_value(spec).unwrap()
    }

    fn runner_set(template: Option<serde_json::Value>) -> RunnerSetSpec {
        RunnerSetSpec {
            autoscale_set_ref: NamespacedRef {
                name: "linux".into(),
                namespace: None,
            },
            runner_group: None,
            runner_template: template.map(|t| serde_json::from_value(t).unwrap()),
            listener_template: None,
        }
    }

    fn resolve_with(
        asset: &AutoscaleSetSpec,
        rs: &RunnerSetSpec,
        defaults: &RunnerDefaults,
    ) -> ResolvedTemplate {
        resolve(
            TemplateSource {
                autoscale_set_name: "linux",
                autoscale_set: asset,
                runner_set_name: "ci",
                runner_set: rs,
            },
            defaults,
        )
        .unwrap()
    }

    fn runner(t: &ResolvedTemplate) -> &Container {
        t.template
            .spec
            .containers
            .iter()
            .find(|c| c.name == RUNNER_CONTAINER)
            .unwrap()
    }

    fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
        c.env.iter().flatten().find(|e| e.name == name)
    }

    #[test]
    fn an_empty_template_gets_a_locked_down_runner_container() {
        let t = resolve_with(
            &autoscale_set(json!({})),
            &runner_set(None),
            &RunnerDefaults::default(),
        );
        let r = runner(&t);
        assert_eq!(r.image.as_deref(), Some("ghcr.io/actions/actions-runner:2.330.0"));
        assert_eq!(r.command, Some(vec![RUNNER_COMMAND.to_owned()]));
        let spec = &t.template.spec;
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "no API token for runners"
        );
        assert_eq!(
            spec.security_context
                .as_ref()
                .unwrap()
                .seccomp_profile
                .as_ref()
                .unwrap()
                .type_,
            "RuntimeDefault"
        );
        let labels = &t.template.metadata.as_ref().unwrap().labels;
        assert_eq!(labels[labels::AUTOSCALE_SET], "linux");
        assert_eq!(labels[labels::RUNNER_SET], "ci");
        assert_eq!(labels[labels::RUNNER_GROUP], "default");
        assert_eq!(labels[labels::COMPONENT], components::RUNNER);
        assert_eq!(labels[labels::POD_SPEC_HASH], t.hash);
    }

    #[test]
    fn runner_set_overrides_merge_over_the_autoscale_set_template() {
        let asset = autoscale_set(json!({"runnerTemplate": {
            "metadata": {"labels": {"team": "a", "tier": "x"}},
            "spec": {
                "nodeSelector": {"os": "linux", "pool": "general"},
                "tolerations": [{"key": "ci", "operator": "Exists"}],
                "containers": [{"name": "runner", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "1"}]}]
            }
        }}));
        let rs = runner_set(Some(json!({
            "metadata": {"labels": {"team": "b"}},
            "spec": {
                "nodeSelector": {"pool": "compute"},
                "tolerations": [{"key": "gpu", "operator": "Exists"}],
                "containers": [{"name": "runner", "env": [{"name": "B", "value": "2"}]}]
            }
        })));
        let t = resolve_with(&asset, &rs, &RunnerDefaults::default());
        let spec = &t.template.spec;
        let selector = spec.node_selector.as_ref().unwrap();
        assert_eq!(
            (selector["os"].as_str(), selector["pool"].as_str()),
            ("linux", "compute")
        );
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 2);
        let r = runner(&t);
        assert_eq!(env_value(r, "A").unwrap().value.as_deref(), Some("1"));
        assert_eq!(env_value(r, "B").unwrap().value.as_deref(), Some("2"));
        let labels = &t.template.metadata.as_ref().unwrap().labels;
        assert_eq!((labels["team"].as_str(), labels["tier"].as_str()), ("b", "x"));
    }

    #[test]
    fn rssc_shorthand_applies_to_the_runner_container_and_the_container_wins() {
        let asset = autoscale_set(json!({"runnerTemplate": {"spec": {
            "env": [{"name": "DEBUG", "value": "1"}, {"name": "MODE", "value": "short"}],
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
            "containers": [{"name": "runner", "env": [{"name": "MODE", "value": "container"}],
                            "resources": {"requests": {"cpu": "1"}}}]
        }}}));
        let t = resolve_with(&asset, &runner_set(None), &RunnerDefaults::default());
        let r = runner(&t);
        assert_eq!(env_value(r, "DEBUG").unwrap().value.as_deref(), Some("1"));
        assert_eq!(env_value(r, "MODE").unwrap().value.as_deref(), Some("container"));
        let res = r.resources.as_ref().unwrap();
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "1");
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "1Gi");
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "4Gi");
    }

    #[test]
    fn reserved_labels_cannot_be_spoofed_by_templates() {
        let asset = autoscale_set(json!({"runnerTemplate": {"metadata": {"labels": {
            "scaleset.actions.github.com/runnerset": "someone-else",
            "scaleset.actions.github.com/runner-state": "busy"
        }}}}));
        let t = resolve_with(&asset, &runner_set(None), &RunnerDefaults::default());
        let labels = &t.template.metadata.as_ref().unwrap().labels;
        assert_eq!(labels[labels::RUNNER_SET], "ci");
        assert!(!labels.contains_key(labels::RUNNER_STATE));
    }

    #[test]
    fn dind_uses_a_native_sidecar_where_supported() {
        let asset = autoscale_set(json!({"containerMode": {"type": "dind"}}));
        let t = resolve_with(&asset, &runner_set(None), &RunnerDefaults::default());
        let spec = &t.template.spec;
        let inits = spec.init_containers.as_ref().unwrap();
        assert_eq!(inits[0].name, "init-dind-externals");
        let dind = inits
            .iter()
            .find(|c| c.name == "dind")
            .expect("dind as native sidecar");
        assert_eq!(dind.restart_policy.as_deref(), Some("Always"));
        assert!(dind.startup_probe.is_some());
        assert_eq!(dind.security_context.as_ref().unwrap().privileged, Some(true));
        assert!(spec.containers.iter().all(|c| c.name != "dind"));
        let r = runner(&t);
        assert_eq!(
            env_value(r, "DOCKER_HOST").unwrap().value.as_deref(),
            Some(DOCKER_HOST)
        );
        let mounts: Vec<_> = r
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(mounts, ["work", "dind-sock"]);
        let volumes: Vec<_> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["work", "dind-sock", "dind-externals"]);

        let old = RunnerDefaults {
            native_sidecars: false,
            ..Default::default()
        };
        let t = resolve_with(&asset, &runner_set(None), &old);
        assert!(
            t.template.spec.containers.iter().any(|c| c.name == "dind"),
            "plain sidecar on old servers"
        );
    }

    #[test]
    fn kubernetes_mode_gets_hooks_a_work_claim_and_an_identity() {
        let asset = autoscale_set(json!({"containerMode": {"type": "kubernetes",
            "kubernetesModeWorkVolumeClaim": {"accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}}));
        let t = resolve_with(&asset, &runner_set(None), &RunnerDefaults::default());
        let spec = &t.template.spec;
        assert_eq!(spec.service_account_name.as_deref(), Some("ci-kube-mode"));
        assert_eq!(spec.automount_service_account_token, Some(true));
        let work = spec.volumes.iter().flatten().find(|v| v.name == "work").unwrap();
        assert!(work.ephemeral.is_some());
        let r = runner(&t);
        assert_eq!(
            env_value(r, "ACTIONS_RUNNER_CONTAINER_HOOKS")
                .unwrap()
                .value
                .as_deref(),
            Some("/home/runner/k8s/index.js")
        );
        assert!(
            env_value(r, "ACTIONS_RUNNER_POD_NAME")
                .unwrap()
                .value_from
                .is_some()
        );

        let novolume = autoscale_set(json!({"containerMode": {"type": "kubernetes-novolume"}}));
        let t = resolve_with(&novolume, &runner_set(None), &RunnerDefaults::default());
        let r = runner(&t);
        assert_eq!(
            env_value(r, "ACTIONS_RUNNER_IMAGE").unwrap().value.as_deref(),
            Some("ghcr.io/actions/actions-runner:2.330.0")
        );
        assert!(t.template.spec.volumes.is_none());
    }

    #[test]
    fn cache_volumes_ca_bundle_and_proxy_are_wired_without_secrets_in_the_spec() {
        let asset = autoscale_set(json!({
            "persistentVolumes": [{"name": "tools", "size": "5Gi", "mountPath": "/opt/tools"}],
            "githubServerTLS": {"certificateFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.pem"}},
                                "runnerMountPath": "/etc/ghes-ca/"},
            "proxy": {"https": {"url": "http://proxy:3128", "credentialSecretRef": "proxy-creds"}}
        }));
        let t = resolve_with(&asset, &runner_set(None), &RunnerDefaults::default());
        let spec = &t.template.spec;
        let cache = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "cache-tools")
            .unwrap();
        assert_eq!(
            cache.persistent_volume_claim.as_ref().unwrap().claim_name,
            "ci-cache-tools"
        );
        let r = runner(&t);
        assert_eq!(
            env_value(r, "NODE_EXTRA_CA_CERTS").unwrap().value.as_deref(),
            Some("/etc/ghes-ca/ca.pem")
        );
        let proxy = env_value(r, "https_proxy").unwrap();
        assert_eq!(proxy.value, None);
        assert_eq!(
            proxy
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "ci-runner-proxy"
        );
        let text = serde_json::to_string(&t.template).unwrap();
        assert!(
            !text.contains("proxy-creds"),
            "credential Secret names stay with the controller"
        );
    }

    #[test]
    fn the_hash_changes_with_the_template_and_only_then() {
        let defaults = RunnerDefaults::default();
        let a = resolve_with(&autoscale_set(json!({})), &runner_set(None), &defaults);
        let b = resolve_with(&autoscale_set(json!({})), &runner_set(None), &defaults);
        assert_eq!(a.hash, b.hash);
        let changed = autoscale_set(json!({"runnerImage": "ghcr.io/actions/actions-runner:2.331.0"}));
        let c = resolve_with(&changed, &runner_set(None), &defaults);
        assert_ne!(a.hash, c.hash);
        // min/max changes must not roll runners.
        let scaled = autoscale_set(json!({"minRunners": 3, "maxRunners": 30}));
        assert_eq!(resolve_with(&scaled, &runner_set(None), &defaults).hash, a.hash);
    }

    #[test]
    fn a_user_defined_runner_container_keeps_its_command() {
        let asset = autoscale_set(json!({"runnerTemplate": {"spec": {"containers": [
            {"name": "runner", "image": "my/runner:1", "command": ["/entrypoint.sh"]}
        ]}}}));
        let t = resolve_with(&asset, &runner_set(None), &RunnerDefaults::default());
        let r = runner(&t);
        assert_eq!(r.image.as_deref(), Some("my/runner:1"));
        assert_eq!(r.command, Some(vec!["/entrypoint.sh".to_owned()]));
    }
}
