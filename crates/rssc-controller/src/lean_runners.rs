//! EphemeralRunners decoded with only what the controller keeps of them. Every runner event
//! is decoded by two caches (the runner reconciler's and its set's), and every write to a
//! runner is an event: the managed fields in each (for a runner, a tree as large as its Pod
//! template) were decoded only to be dropped. These types skip them, and the set's skips the
//! Pod template as well, while still reading as the EphemeralRunner kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::runtime::watcher;
use rssc_api::v1alpha1::{
    EphemeralRunner, EphemeralRunnerSpec, EphemeralRunnerStatus, PodTemplate, RunnerConfig,
};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// An EphemeralRunner without its managed fields: what the runner reconciler's cache holds.
#[derive(Clone, Debug, Deserialize)]
pub struct LeanRunner {
    #[serde(deserialize_with = "without_managed_fields")]
    metadata: ObjectMeta,
    spec: EphemeralRunnerSpec,
    #[serde(default)]
    status: Option<EphemeralRunnerStatus>,
}

/// An EphemeralRunner without its managed fields and Pod template: what a set reads of its
/// runners, from its cache or a list.
#[derive(Clone, Debug, Deserialize)]
pub struct SetRunner {
    #[serde(deserialize_with = "without_managed_fields")]
    metadata: ObjectMeta,
    spec: SetRunnerSpec,
    #[serde(default)]
    status: Option<EphemeralRunnerStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetRunnerSpec {
    runner_config: RunnerConfig,
}

impl From<LeanRunner> for EphemeralRunner {
    fn from(lean: LeanRunner) -> Self {
        EphemeralRunner {
            metadata: lean.metadata,
            spec: lean.spec,
            status: lean.status,
        }
    }
}

impl From<SetRunner> for EphemeralRunner {
    fn from(runner: SetRunner) -> Self {
        EphemeralRunner {
            metadata: runner.metadata,
            spec: EphemeralRunnerSpec {
                runner_template: PodTemplate::default(),
                runner_config: runner.spec.runner_config,
            },
            status: runner.status,
        }
    }
}

/// Implements `Resource` for a lean type `$ty` (with a `metadata` field) so that it reads as
/// the namespaced kind `$full` (its API path, group and version): a watch of it is a watch of
/// `$full`, decoded into less.
macro_rules! reads_as {
    ($ty:ty, $full:ty) => {
        impl ::kube::Resource for $ty {
            type DynamicType = ();
            type Scope = ::kube::core::NamespaceResourceScope;

            fn kind(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::kind(dt)
            }
            fn group(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::group(dt)
            }
            fn version(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::version(dt)
            }
            fn plural(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::plural(dt)
            }
            fn meta(&self) -> &::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use reads_as;

reads_as!(LeanRunner, EphemeralRunner);
reads_as!(SetRunner, EphemeralRunner);

/// A watch event of a lean type as one of the full type it stands for.
pub fn as_full_event<K: Into<T>, T>(event: watcher::Event<K>) -> watcher::Event<T> {
    match event {
        watcher::Event::Apply(k) => watcher::Event::Apply(k.into()),
        watcher::Event::Delete(k) => watcher::Event::Delete(k.into()),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(k) => watcher::Event::InitApply(k.into()),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Object metadata with every field but `managedFields`, which is skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaWithoutManagedFields {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

fn without_managed_fields<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = MetaWithoutManagedFields::deserialize(deserializer)?;
    Ok(ObjectMeta {
        annotations: m.annotations,
        creation_timestamp: m.creation_timestamp,
        deletion_grace_period_seconds: m.deletion_grace_period_seconds,
        deletion_timestamp: m.deletion_timestamp,
        finalizers: m.finalizers,
        generate_name: m.generate_name,
        generation: m.generation,
        labels: m.labels,
        managed_fields: None,
        name: m.name,
        namespace: m.namespace,
        owner_references: m.owner_references,
        resource_version: m.resource_version,
        self_link: m.self_link,
        uid: m.uid,
    })
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    fn stored() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "EphemeralRunner",
            "metadata": {"name": "ci-runner-x", "namespace": "ns", "uid": "u", "generation": 2,
                         "resourceVersion": "7", "generateName": "ci-runner-", "finalizers": ["f"],
                         "creationTimestamp": "2026-11-22T12:00:00Z", "deletionTimestamp": "2026-11-22T12:01:00Z",
                         "deletionGracePeriodSeconds": 0,
                         "labels": {"l": "v"}, "annotations": {"a": "b"},
                         "ownerReferences": [{"apiVersion": "v", "kind": "EphemeralRunnerSet", "name": "ci", "uid": "set"}],
                         "managedFields": [{"manager": "rssc", "operation": "Update", "fieldsType": "FieldsV1",
                                            "fieldsV1": {"f:spec": {"f:runnerTemplate": {}}}}]},
            "spec": {"runnerTemplate": {"spec": {"containers": [{"name": "runner", "image": "i"}]}},
                     "runnerConfig": {"autoscaleSetRef": {"name": "a"}, "githubConfigURL": "https://github.com/o",
                                      "scaleSetID": 4, "scaleSetName": "s"}},
            "status": {"phase": "Running", "runnerId": 9, "job": {"requestId": 5, "result": "succeeded"}}
        })
    }

    #[test]
    fn a_lean_runner_is_the_runner_without_its_managed_fields() {
        let mut full: EphemeralRunner = serde_json::from_value(stored()).unwrap();
        let lean: EphemeralRunner = serde_json::from_value::<LeanRunner>(stored()).unwrap().into();
        assert!(full.metadata.managed_fields.is_some());
        full.metadata.managed_fields = None;
        assert_eq!(
            serde_json::to_value(lean).unwrap(),
            serde_json::to_value(full).unwrap()
        );
    }

    #[test]
    fn a_set_runner_is_the_runner_without_its_managed_fields_and_template() {
        let mut full: EphemeralRunner = serde_json::from_value(stored()).unwrap();
        let read: EphemeralRunner = serde_json::from_value::<SetRunner>(stored()).unwrap().into();
        full.metadata.managed_fields = None;
        full.spec.runner_template = PodTemplate::default();
        assert_eq!(
            serde_json::to_value(read).unwrap(),
            serde_json::to_value(full).unwrap()
        );
    }

    #[test]
    fn lean_types_read_as_the_ephemeral_runner_kind() {
        assert_eq!(
            LeanRunner::url_path(&(), Some("ns")),
            EphemeralRunner::url_path(&(), Some("ns"))
        );
        assert_eq!(SetRunner::api_version(&()), EphemeralRunner::api_version(&()));
        assert_eq!(SetRunner::kind(&()), "EphemeralRunner");
    }
}
