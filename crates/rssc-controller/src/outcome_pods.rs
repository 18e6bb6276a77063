//! Runner Pods decoded with only what their outcome reads. The runner reconciler's cache
//! keeps of each Pod what [`crate::runner_outcome::classify`] and
//! [`crate::runner_outcome::pod_digest`] read, and every kubelet status write is a watch
//! event: decoding the whole Pod first (its spec, its managed fields from three managers, every
//! condition and container state) only to drop most of it was a tenth of the controller's CPU
//! in a burst. [`OutcomePod`] reads the kept fields and skips the rest unread.

use k8s_openapi::{
    api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
};
use serde::{Deserialize, Deserializer};

/// A runner Pod as the cache holds it: its name, namespace, UID, owners, creation and
/// deletion; its phase and reason, and its containers' readiness and exits. Its resource
/// version is read too: the watch resumes from each event's, and fails an event without one.
/// Without the spec, an init container that exited is taken for a regular one, not a sidecar,
/// so the outcome is one the reconcile decides again on the Pod as stored.
#[derive(Clone, Debug, Deserialize)]
pub struct OutcomePod {
    #[serde(deserialize_with = "outcome_metadata")]
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "outcome_status")]
    status: Option<PodStatus>,
}

impl From<OutcomePod> for Pod {
    /// The Pod as the cache holds it: what [`OutcomePod`] says, less the resource version,
    /// which only the watch needs.
    fn from(pod: OutcomePod) -> Self {
        Pod {
            metadata: ObjectMeta {
                resource_version: None,
                ..pod.metadata
            },
            spec: None,
            status: pod.status,
        }
    }
}

crate::lean_runners::reads_as!(OutcomePod, Pod);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
}

fn outcome_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = Metadata::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        owner_references: m.owner_references,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        ..Default::default()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    phase: Option<String>,
    reason: Option<String>,
    container_statuses: Option<Vec<Container>>,
    init_container_statuses: Option<Vec<Container>>,
}

#[derive(Deserialize)]
struct Container {
    name: String,
    #[serde(default)]
    ready: bool,
    state: Option<State>,
}

#[derive(Deserialize)]
struct State {
    terminated: Option<ContainerStateTerminated>,
}

impl From<Container> for ContainerStatus {
    fn from(c: Container) -> Self {
        ContainerStatus {
            name: c.name,
            ready: c.ready,
            state: c.state.and_then(|s| s.terminated).map(|t| ContainerState {
                terminated: Some(t),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn outcome_status<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PodStatus>, D::Error> {
    let kept = |all: Option<Vec<Container>>| all.map(|all| all.into_iter().map(Into::into).collect());
    Ok(Option::<Status>::deserialize(deserializer)?.map(|s| PodStatus {
        phase: s.phase,
        reason: s.reason,
        container_statuses: kept(s.container_statuses),
        init_container_statuses: kept(s.init_container_statuses),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use kube::Resource;
    use serde_json::{Value, json};

    use super::*;
    use crate::runner_outcome::{Outcome, RunnerFacts, classify, pod_digest};

    /// What the cache kept of a Pod before this type: the whole Pod decoded, then trimmed.
    fn kept_plainly(mut pod: Pod) -> Pod {
        let meta = std::mem::take(&mut pod.metadata);
        pod.metadata = ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            owner_references: meta.owner_references,
            creation_timestamp: meta.creation_timestamp,
            deletion_timestamp: meta.deletion_timestamp,
            ..Default::default()
        };
        pod.spec = None;
        pod.status = pod.status.map(|status| {
            let keep = |all: Option<Vec<ContainerStatus>>| {
                all.map(|all| {
                    all.into_iter()
                        .map(|c| ContainerStatus {
                            name: c.name,
                            ready: c.ready,
                            state: c.state.and_then(|s| s.terminated).map(|t| ContainerState {
                                terminated: Some(t),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect()
                })
            };
            PodStatus {
                phase: status.phase,
                reason: status.reason,
                container_statuses: keep(status.container_statuses),
                init_container_statuses: keep(status.init_container_statuses),
                ..Default::default()
            }
        });
        pod
    }

    fn container(name: &str, ready: bool, state: Value) -> Value {
        json!({"name": name, "image": "runner:2", "imageID": "sha256:1", "ready": ready,
               "restartCount": 0, "started": true, "state": state,
               "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}})
    }

    fn stored(phase: &str, mut status: Value) -> Value {
        status["phase"] = json!(phase);
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "ci-runner-x", "namespace": "ns", "uid": "u",
                         "resourceVersion": "9", "generation": 1,
                         "creationTimestamp": "2026-12-07T12:00:00Z",
                         "labels": {"app.kubernetes.io/managed-by": "rssc"},
                         "annotations": {"a": "b"}, "finalizers": ["f"],
                         "ownerReferences": [{"apiVersion": "scaleset.actions.github.com/v1alpha1",
                             "kind": "EphemeralRunner", "name": "ci-runner-x", "uid": "r",
                             "controller": true}],
                         "managedFields": [{"manager": "kubelet", "operation": "Update",
                             "subresource": "status", "fieldsType": "FieldsV1",
                             "fieldsV1": {"f:status": {"f:phase": {}}}}]},
            "spec": {"containers": [{"name": "runner", "image": "runner:2"}],
                     "initContainers": [{"name": "dind", "image": "docker", "restartPolicy": "Always"}],
                     "nodeName": "node-1"},
            "status": status,
        })
    }

    /// Pods in each phase, one being deleted, and one with nothing but a name.
    fn stored_pods() -> Vec<Value> {
        let running = json!({"running": {"startedAt": "2026-12-07T12:00:01Z"}});
        let exited = |code: i32, reason: &str| {
            json!({"terminated": {"exitCode": code, "reason": reason,
                   "startedAt": "2026-12-07T12:00:01Z", "finishedAt": "2026-12-07T12:01:00Z"}})
        };
        let runner = |ready, state| json!([container("runner", ready, state)]);
        let mut deleting = stored(
            "Running",
            json!({"containerStatuses": runner(true, running.clone())}),
        );
        deleting["metadata"]["deletionTimestamp"] = json!("2026-12-07T12:05:00Z");
        deleting["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        vec![
            stored("Pending", json!({})),
            stored(
                "Running",
                json!({
                "conditions": [{"type": "Ready", "status": "True"}], "podIP": "10.0.0.1",
                "containerStatuses": runner(true, running.clone()),
                "initContainerStatuses": [container("dind", true, running)]}),
            ),
            stored(
                "Succeeded",
                json!({"containerStatuses": runner(false, exited(0, "Completed"))}),
            ),
            stored(
                "Failed",
                json!({"reason": "Evicted", "message": "The node was low on memory.",
                "containerStatuses": runner(false, exited(137, "OOMKilled")),
                "initContainerStatuses": [container("dind", false, exited(1, "Error"))]}),
            ),
            deleting,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"}}),
        ]
    }

    #[test]
    fn an_outcome_pod_is_what_trimming_the_whole_pod_kept() {
        for stored in stored_pods() {
            let whole: Pod = serde_json::from_value(stored.clone()).unwrap();
            let lean: Pod = serde_json::from_value::<OutcomePod>(stored).unwrap().into();
            assert_eq!(lean, kept_plainly(whole));
        }
    }

    #[test]
    fn an_outcome_pod_classifies_and_digests_as_the_whole_pod() {
        let facts = RunnerFacts {
            registered: true,
            has_job: false,
            was_running: true,
            failures: 0,
            last_failure: None,
        };
        let now = "2026-12-07T12:00:30Z".parse().unwrap();
        let timeout = std::time::Duration::from_secs(600);
        let mut outcomes = Vec::new();
        for stored in stored_pods() {
            // Which init container is a sidecar is in the spec, which is not kept.
            let sidecar_exited = stored["status"]["initContainerStatuses"]
                .as_array()
                .is_some_and(|all| all.iter().any(|c| !c["state"]["terminated"].is_null()));
            let whole: Pod = serde_json::from_value(stored.clone()).unwrap();
            let lean: Pod = serde_json::from_value::<OutcomePod>(stored).unwrap().into();
            assert_eq!(pod_digest(&lean), pod_digest(&whole));
            let outcome = classify(Some(&lean), facts, now, timeout);
            if !sidecar_exited {
                assert_eq!(outcome, classify(Some(&whole), facts, now, timeout));
            }
            outcomes.push(outcome);
        }
        assert!(
            outcomes.contains(&Outcome::Running { ready: true }),
            "{outcomes:?}"
        );
        assert!(outcomes.contains(&Outcome::Succeeded), "{outcomes:?}");
    }

    #[test]
    fn a_sidecar_that_exited_reads_as_a_failed_init_container() {
        // An outcome decided again on the Pod as stored (see `OutcomePod`).
        let stored = stored(
            "Pending",
            json!({
            "initContainerStatuses": [container("dind", false, json!({"terminated": {"exitCode": 1}}))]}),
        );
        let facts = RunnerFacts {
            registered: true,
            has_job: false,
            was_running: false,
            failures: 0,
            last_failure: None,
        };
        let now = "2026-12-07T12:00:30Z".parse().unwrap();
        let timeout = std::time::Duration::from_secs(600);
        let whole: Pod = serde_json::from_value(stored.clone()).unwrap();
        let lean: Pod = serde_json::from_value::<OutcomePod>(stored).unwrap().into();
        assert_eq!(classify(Some(&whole), facts, now, timeout), Outcome::Pending);
        assert!(matches!(
            classify(Some(&lean), facts, now, timeout),
            Outcome::RetryPod(f) if f.reason == "InitContainerFailed"
        ));
    }

    #[test]
    fn an_outcome_pod_keeps_the_resource_version_the_watch_resumes_from() {
        let pod: OutcomePod = serde_json::from_value(stored("Pending", json!({}))).unwrap();
        assert_eq!(kube::ResourceExt::resource_version(&pod).as_deref(), Some("9"));
    }

    #[test]
    fn an_outcome_pod_reads_as_the_pod_kind() {
        assert_eq!(
            OutcomePod::url_path(&(), Some("ns")),
            Pod::url_path(&(), Some("ns"))
        );
        assert_eq!(OutcomePod::api_version(&()), "v1");
        assert_eq!(OutcomePod::kind(&()), "Pod");
    }
}
