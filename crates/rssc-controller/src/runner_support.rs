//! Objects a RunnerSet's runners lean on, besides their own Pods and Secrets: the proxy Secret
//! their environment reads, the ServiceAccount and Role the `kubernetes` container modes need
//! to create job Pods, and the claims of cache volumes. Pure builders.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{
            PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, ServiceAccount,
            VolumeResourceRequirements,
        },
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use rssc_api::{
    consts::{components, labels},
    listener_config::ListenerProxy,
    names,
    v1alpha1::{AccessMode, CacheVolume, ContainerModeType},
};

/// Where the objects go and who owns them.
#[derive(Clone, Debug)]
pub struct Owner {
    /// The RunnerSet's name.
    pub runner_set: String,
    /// Its namespace.
    pub namespace: String,
    /// Its owner reference.
    pub reference: OwnerReference,
}

impl Owner {
    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(BTreeMap::from([
                (labels::RUNNER_SET.to_owned(), self.runner_set.clone()),
                (labels::COMPONENT.to_owned(), components::RUNNER.to_owned()),
                (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
            ])),
            owner_references: Some(vec![self.reference.clone()]),
            ..Default::default()
        }
    }
}

/// The runners' proxy environment, credentials included, as the template's `secretKeyRef`s
/// expect it.
pub fn proxy_secret(owner: &Owner, proxy: &ListenerProxy) -> Secret {
    let mut data = BTreeMap::new();
    for (key, value) in [
        ("http_proxy", proxy.http.clone()),
        ("https_proxy", proxy.https.clone()),
    ] {
        if let Some(value) = value {
            data.insert(key.to_owned(), ByteString(value.into_bytes()));
        }
    }
    if !proxy.no_proxy.is_empty() {
        data.insert(
            "no_proxy".to_owned(),
            ByteString(proxy.no_proxy.join(",").into_bytes()),
        );
    }
    Secret {
        metadata: owner.meta(&names::runner_proxy_secret(&owner.runner_set)),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// What runners in the `kubernetes` modes may do: run the job's containers as Pods.
pub fn kube_mode_rbac(owner: &Owner, mode: ContainerModeType) -> Option<(ServiceAccount, Role, RoleBinding)> {
    if !matches!(
        mode,
        ContainerModeType::Kubernetes | ContainerModeType::KubernetesNovolume
    ) {
        return None;
    }
    let name = names::runner_kube_mode_account(&owner.runner_set);
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    };
    let mut rules = vec![
        rule(&[""], &["pods"], &["get", "list", "create", "delete"]),
        rule(&[""], &["pods/exec"], &["get", "create"]),
        rule(&[""], &["pods/log"], &["get", "list", "watch"]),
        rule(&[""], &["secrets"], &["get", "list", "create", "delete"]),
    ];
    if mode == ContainerModeType::Kubernetes {
        rules.push(rule(&["batch"], &["jobs"], &["get", "list", "create", "delete"]));
    }
    let account = ServiceAccount {
        metadata: owner.meta(&name),
        ..Default::default()
    };
    let role = Role {
        metadata: owner.meta(&name),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: owner.meta(&name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(owner.namespace.clone()),
            api_group: None,
        }]),
    };
    Some((account, role, binding))
}

/// The claim of a cache volume shared by the RunnerSet's runners.
pub fn cache_claim(owner: &Owner, volume: &CacheVolume) -> PersistentVolumeClaim {
    let modes = volume
        .access_modes
        .iter()
        .map(|m| {
            match m {
                AccessMode::ReadWriteOnce => "ReadWriteOnce",
                AccessMode::ReadOnlyMany => "ReadOnlyMany",
                AccessMode::ReadWriteMany => "ReadWriteMany",
                AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
            }
            .to_owned()
        })
        .collect();
    PersistentVolumeClaim {
        metadata: owner.meta(&names::cache_claim(&owner.runner_set, &volume.name)),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes),
            storage_class_name: volume.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), volume.size.clone())])),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn owner() -> Owner {
        Owner {
            runner_set: "ci".into(),
            namespace: "runners".into(),
            reference: OwnerReference {
                kind: "RunnerSet".into(),
                name: "ci".into(),
                uid: "u".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_proxy_secret_has_the_keys_the_template_reads() {
        let s = proxy_secret(
            &owner(),
            &ListenerProxy {
                https: Some("http://u:p@proxy:3128".into()),
                no_proxy: vec![".svc".into(), "10.0.0.0/8".into()],
                ..Default::default()
            },
        );
        assert_eq!(s.metadata.name.as_deref(), Some("ci-runner-proxy"));
        let data = s.data.unwrap();
        assert_eq!(data["https_proxy"].0, b"http://u:p@proxy:3128");
        assert_eq!(data["no_proxy"].0, b".svc,10.0.0.0/8");
        assert!(!data.contains_key("http_proxy"));
    }

    #[test]
    fn kube_modes_get_a_role_to_run_job_pods() {
        assert!(kube_mode_rbac(&owner(), ContainerModeType::Dind).is_none());
        let (sa, role, binding) = kube_mode_rbac(&owner(), ContainerModeType::Kubernetes).unwrap();
        assert_eq!(sa.metadata.name.as_deref(), Some("ci-kube-mode"));
        let rules = role.rules.unwrap();
        assert!(rules.iter().any(|r| r.resources.as_ref().unwrap() == &["jobs"]));
        assert_eq!(binding.subjects.unwrap()[0].name, "ci-kube-mode");
        let (_, role, _) = kube_mode_rbac(&owner(), ContainerModeType::KubernetesNovolume).unwrap();
        assert!(
            !role
                .rules
                .unwrap()
                .iter()
                .any(|r| r.resources.as_ref().unwrap() == &["jobs"])
        );
    }

    #[test]
    fn cache_claims_match_the_template_volume() {
        let claim = cache_claim(
            &owner(),
            &CacheVolume {
                name: "tools".into(),
                size: Quantity("5Gi".into()),
                storage_class: Some("nfs".into()),
                mount_path: "/opt/tools".into(),
                access_modes: vec![AccessMode::ReadWriteMany],
            },
        );
        assert_eq!(claim.metadata.name.as_deref(), Some("ci-cache-tools"));
        let spec = claim.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteMany"]);
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "5Gi");
    }
}
