//! The JIT Secret and the runner Pod of one EphemeralRunner. Both are named after the runner
//! and owned by it, so they go when it goes. The JIT configuration is the runner's only
//! credential: it lives in the Secret and reaches the runner through `secretKeyRef`.

use std::{collections::BTreeMap, fmt};

use k8s_openapi::{
    ByteString,
    api::core::v1::{EnvVar, EnvVarSource, Pod, Secret, SecretKeySelector},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Resource, ResourceExt};
use rssc_api::{
    consts::{annotations, components, labels, runner_states},
    v1alpha1::EphemeralRunner,
};

use crate::runner_template::{add_env_if_absent, object_meta, runner_mut};

/// Key of the encoded JIT configuration in the runner's Secret.
pub const JIT_TOKEN_KEY: &str = "jitToken";

/// A runner's just-in-time configuration as GitHub issued it.
#[derive(Clone, PartialEq, Eq)]
pub struct JitConfig {
    /// The encoded configuration: a credential, never logged.
    pub encoded: String,
    /// Runner ID on GitHub.
    pub runner_id: i64,
    /// Runner name on GitHub.
    pub runner_name: String,
    /// Scale set the runner belongs to.
    pub scale_set_id: i64,
}

impl fmt::Debug for JitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JitConfig")
            .field("encoded", &"<redacted>")
            .field("runner_id", &self.runner_id)
            .field("runner_name", &self.runner_name)
            .field("scale_set_id", &self.scale_set_id)
            .finish()
    }
}

/// The GitHub registration a runner's JIT Secret records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Runner ID on GitHub.
    pub runner_id: i64,
    /// Runner name on GitHub.
    pub runner_name: Option<String>,
}

/// Reads the registration from a runner's JIT Secret; `None` if it records no runner ID.
pub fn registration_in(secret: &Secret) -> Option<Registration> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
    Some(Registration {
        runner_id: text("runnerId")?.parse().ok()?,
        runner_name: text("runnerName"),
    })
}

/// Error building a runner's objects.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The EphemeralRunner has no name, namespace or UID yet (it was not read from the API).
    #[error("EphemeralRunner has no {0}; build objects only for runners read from the API")]
    Missing(&'static str),
}

fn owner(runner: &EphemeralRunner) -> Result<(String, String, OwnerReference), BuildError> {
    let name = runner.metadata.name.clone().ok_or(BuildError::Missing("name"))?;
    let namespace = runner
        .metadata
        .namespace
        .clone()
        .ok_or(BuildError::Missing("namespace"))?;
    let reference = runner
        .controller_owner_ref(&())
        .ok_or(BuildError::Missing("uid"))?;
    Ok((name, namespace, reference))
}

/// The Secret holding the runner's JIT configuration. Immutable: it never changes, and the
/// kubelet need not watch it.
pub fn jit_secret(runner: &EphemeralRunner, jit: &JitConfig) -> Result<Secret, BuildError> {
    let (name, namespace, owner) = owner(runner)?;
    let runner_set = runner
        .labels()
        .get(labels::RUNNER_SET)
        .cloned()
        .unwrap_or_default();
    let data = BTreeMap::from([
        (
            JIT_TOKEN_KEY.to_owned(),
            ByteString(jit.encoded.clone().into_bytes()),
        ),
        (
            "runnerId".to_owned(),
            ByteString(jit.runner_id.to_string().into_bytes()),
        ),
        (
            "runnerName".to_owned(),
            ByteString(jit.runner_name.clone().into_bytes()),
        ),
        (
            "scaleSetId".to_owned(),
            ByteString(jit.scale_set_id.to_string().into_bytes()),
        ),
    ]);
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([
                (
                    labels::COMPONENT.to_owned(),
                    components::RUNNER_JIT_SECRET.to_owned(),
                ),
                (labels::RUNNER_NAME.to_owned(), name),
                (labels::RUNNER_SET.to_owned(), runner_set),
                (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
            ])),
            ..Default::default()
        },
        immutable: Some(true),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Default::default()
    })
}

/// The runner Pod: the runner's resolved template, the runner's identity labels, and the JIT
/// configuration from the Secret of the same name.
pub fn runner_pod(runner: &EphemeralRunner, user_agent: &str) -> Result<Pod, BuildError> {
    let (name, namespace, owner) = owner(runner)?;
    let template = &runner.spec.runner_template;
    let mut metadata = object_meta(template);
    metadata.name = Some(name.clone());
    metadata.namespace = Some(namespace);
    metadata.owner_references = Some(vec![owner]);
    let pod_labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    // The runner's own labels (pod-spec-hash included) and its identity.
    for (key, value) in runner.labels() {
        if key.starts_with(rssc_api::consts::PREFIX) || key == labels::MANAGED_BY {
            pod_labels.insert(key.clone(), value.clone());
        }
    }
    pod_labels.insert(labels::RUNNER_NAME.to_owned(), name.clone());
    pod_labels.insert(labels::RUNNER_STATE.to_owned(), runner_states::IDLE.to_owned());
    if let Some(traceparent) = runner.annotations().get(annotations::TRACEPARENT) {
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(annotations::TRACEPARENT.to_owned(), traceparent.clone());
    }

    let mut spec = template.spec.clone();
    let container = runner_mut(&mut spec);
    add_env_if_absent(
        container,
        EnvVar {
            name: "ACTIONS_RUNNER_INPUT_JITCONFIG".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name,
                    key: JIT_TOKEN_KEY.to_owned(),
                    optional: None,
                }),
                ..Default::default()
            }),
        },
    );
    for (var, value) in [
        ("GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT", user_agent),
        // Exit 7 instead of updating itself when GitHub deprecates the runner version.
        ("ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE", "1"),
    ] {
        add_env_if_absent(
            container,
            EnvVar {
                name: var.to_owned(),
                value: Some(value.to_owned()),
                value_from: None,
            },
        );
    }
    Ok(Pod {
        metadata,
        spec: Some(spec),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use rssc_api::v1alpha1::{
        EphemeralRunnerSpec, NamespacedRef, PodTemplate, RunnerConfig, TemplateMetadata,
    };

    use super::*;
    use crate::runner_template::RUNNER_CONTAINER;

    fn runner() -> EphemeralRunner {
        let template = PodTemplate {
            metadata: Some(TemplateMetadata {
                labels: BTreeMap::from([
                    ("team".to_owned(), "a".to_owned()),
                    (labels::POD_SPEC_HASH.to_owned(), "abc".to_owned()),
                ]),
                annotations: BTreeMap::new(),
            }),
            spec: serde_json::from_value(
                serde_json::json!({"containers": [{"name": "runner", "image": "r"}]}),
            )
            .unwrap(),
        };
        let mut er = EphemeralRunner::new(
            "ci-runner-x7k2p",
            EphemeralRunnerSpec {
                runner_template: template,
                runner_config: RunnerConfig {
                    autoscale_set_ref: NamespacedRef {
                        name: "linux".into(),
                        namespace: None,
                    },
                    github_config_url: "https://github.com/org".into(),
                    scale_set_id: 3,
                    scale_set_name: "linux".into(),
                    work_folder: None,
                },
            },
        );
        er.metadata.namespace = Some("ci".into());
        er.metadata.uid = Some("uid-1".into());
        er.metadata.labels = Some(BTreeMap::from([
            (labels::RUNNER_SET.to_owned(), "ci".to_owned()),
            (labels::POD_SPEC_HASH.to_owned(), "abc".to_owned()),
        ]));
        er.metadata.annotations = Some(BTreeMap::from([(
            annotations::TRACEPARENT.to_owned(),
            "00-aa-bb-01".to_owned(),
        )]));
        er
    }

    fn jit() -> JitConfig {
        JitConfig {
            encoded: "c2VjcmV0".into(),
            runner_id: 11,
            runner_name: "ci-runner-x7k2p".into(),
            scale_set_id: 3,
        }
    }

    #[test]
    fn the_secret_is_owned_immutable_and_holds_the_jit_config() {
        let secret = jit_secret(&runner(), &jit()).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("ci-runner-x7k2p"));
        assert_eq!(secret.immutable, Some(true));
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("EphemeralRunner", "uid-1", Some(true))
        );
        assert_eq!(
            registration_in(&secret),
            Some(Registration {
                runner_id: 11,
                runner_name: Some("ci-runner-x7k2p".into())
            })
        );
        let data = secret.data.unwrap();
        assert_eq!(data[JIT_TOKEN_KEY].0, b"c2VjcmV0");
        assert_eq!(data["runnerId"].0, b"11");
    }

    #[test]
    fn the_pod_reads_the_jit_config_from_the_secret_only() {
        let pod = runner_pod(&runner(), "rssc/0.1.0").unwrap();
        let spec = pod.spec.as_ref().unwrap();
        let r = spec
            .containers
            .iter()
            .find(|c| c.name == RUNNER_CONTAINER)
            .unwrap();
        let jit_var = r
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "ACTIONS_RUNNER_INPUT_JITCONFIG")
            .unwrap();
        assert_eq!(jit_var.value, None);
        let key_ref = jit_var
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (key_ref.name.as_str(), key_ref.key.as_str()),
            ("ci-runner-x7k2p", JIT_TOKEN_KEY)
        );
        assert!(!serde_json::to_string(&pod).unwrap().contains("c2VjcmV0"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[labels::RUNNER_NAME], "ci-runner-x7k2p");
        assert_eq!(labels[labels::RUNNER_STATE], runner_states::IDLE);
        assert_eq!(labels[labels::POD_SPEC_HASH], "abc");
        assert_eq!(labels["team"], "a");
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()[annotations::TRACEPARENT],
            "00-aa-bb-01"
        );
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].name,
            "ci-runner-x7k2p"
        );
    }

    #[test]
    fn debug_output_never_shows_the_jit_config() {
        assert!(!format!("{:?}", jit()).contains("c2VjcmV0"));
    }

    #[test]
    fn objects_need_a_runner_read_from_the_api() {
        let mut er = runner();
        er.metadata.uid = None;
        assert_eq!(runner_pod(&er, "ua").unwrap_err(), BuildError::Missing("uid"));
    }
}
