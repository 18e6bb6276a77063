//! The Node and Lease objects of a simulated kubelet. Pure.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::{
    api::{
        coordination::v1::{Lease, LeaseSpec},
        core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time},
    },
};

use crate::config::SIMULATED_NODE_LABEL;

/// Namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration the kubelet uses.
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// The node's internal IP: `10.0.0.<10+index>`.
pub fn host_ip(index: usize) -> String {
    format!("10.0.{}.{}", index / 200, 10 + index % 200)
}

/// The `n`-th pod IP on node `index`: `10.244.<index>.<2+n>` (wrapping within the /24).
pub fn pod_ip(index: usize, n: u32) -> String {
    format!("10.244.{}.{}", index % 256, 2 + n % 250)
}

/// The Node object, labelled and tainted as simulated.
pub fn node(name: &str, index: usize) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([
                (SIMULATED_NODE_LABEL.to_owned(), "true".to_owned()),
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
                ("type".to_owned(), "rssc-sim".to_owned()),
            ])),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_owned(),
                "0".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: SIMULATED_NODE_LABEL.to_owned(),
                value: Some("true".to_owned()),
                effect: "NoSchedule".to_owned(),
                time_added: None,
            }]),
            pod_cidr: Some(format!("10.244.{}.0/24", index % 256)),
            ..Default::default()
        }),
        status: None,
    }
}

/// The node's status: Ready, no pressure, capacity with `max_pods`.
pub fn node_status(
    name: &str,
    index: usize,
    max_pods: u32,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
) -> NodeStatus {
    let capacity = BTreeMap::from([
        ("cpu".to_owned(), Quantity("32".into())),
        ("memory".to_owned(), Quantity("256Gi".into())),
        ("ephemeral-storage".to_owned(), Quantity("1Ti".into())),
        ("pods".to_owned(), Quantity(max_pods.to_string())),
    ]);
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    };
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(vec![
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: host_ip(index),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.to_owned(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: format!("{:016x}", crate::util::fnv64(name)),
            container_runtime_version: "rssc-sim://0.1.0".into(),
            kernel_version: "6.0.0-rssc-sim".into(),
            kube_proxy_version: String::new(),
            kubelet_version: "v1.30.0-rssc-sim".into(),
            machine_id: format!("{:016x}", crate::util::fnv64(&format!("machine/{name}"))),
            operating_system: "linux".into(),
            os_image: "rssc node simulator".into(),
            system_uuid: format!("{:016x}", crate::util::fnv64(&format!("uuid/{name}"))),
        }),
        phase: None,
        ..Default::default()
    }
}

/// The node's heartbeat Lease, owned by the Node when its UID is known.
pub fn lease(name: &str, node_uid: Option<&str>, now: DateTime<Utc>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.to_owned(),
                    uid: uid.to_owned(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_marked_tainted_and_sized() {
        let n = node("sim-0", 0);
        assert_eq!(n.metadata.labels.as_ref().unwrap()[SIMULATED_NODE_LABEL], "true");
        let taint = &n.spec.as_ref().unwrap().taints.as_ref().unwrap()[0];
        assert_eq!(
            (taint.key.as_str(), taint.effect.as_str()),
            (SIMULATED_NODE_LABEL, "NoSchedule")
        );
        let now = Utc::now();
        let s = node_status("sim-0", 0, 3, now, now);
        assert_eq!(s.capacity.as_ref().unwrap()["pods"].0, "3");
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn leases_name_their_holder() {
        let l = lease("sim-0", Some("uid"), Utc::now());
        assert_eq!(l.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        assert_eq!(l.spec.unwrap().holder_identity.as_deref(), Some("sim-0"));
        assert_eq!(l.metadata.owner_references.unwrap()[0].kind, "Node");
    }

    #[test]
    fn addresses_are_distinct() {
        assert_ne!(host_ip(0), host_ip(1));
        assert_ne!(pod_ip(0, 1), pod_ip(0, 2));
    }
}
