//! Placement of pending pods on the simulated nodes by capacity (max pods). Pure.

/// One node's capacity and current use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    /// Node name.
    pub name: String,
    /// Most pods at once.
    pub max_pods: u32,
    /// Non-terminal pods bound to it.
    pub used: u32,
}

/// The node for the next pod: the least used one with a free slot among those `fits` allows
/// (first by order on ties).
pub fn pick_node(nodes: &[NodeUsage], fits: impl Fn(&NodeUsage) -> bool) -> Option<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.used < n.max_pods && fits(n))
        .min_by_key(|(i, n)| (n.used, *i))
        .map(|(i, _)| i)
}

/// Whether a node with `node_labels` satisfies the pod's `nodeSelector`.
pub fn selector_fits(
    node_selector: Option<&std::collections::BTreeMap<String, String>>,
    node_labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    node_selector
        .into_iter()
        .flatten()
        .all(|(k, v)| node_labels.get(k) == Some(v))
}

/// The scheduler's message for a pod that no node selected by its `nodeSelector` exists for.
pub fn no_matching_node_message(total: usize) -> String {
    format!(
        "0/{total} nodes are available: {total} node(s) didn't match Pod's node affinity/selector. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    )
}

/// The scheduler's message for a pod no node has room for.
pub fn unschedulable_message(nodes: &[NodeUsage]) -> String {
    let n = nodes.len();
    let full = nodes.iter().filter(|x| x.used >= x.max_pods).count();
    format!(
        "0/{n} nodes are available: {full} Too many pods. preemption: 0/{n} nodes are available: {n} No preemption victims found for incoming pod."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, max_pods: u32, used: u32) -> NodeUsage {
        NodeUsage {
            name: name.into(),
            max_pods,
            used,
        }
    }

    #[test]
    fn least_used_node_with_room_wins() {
        let nodes = [node("a", 2, 1), node("b", 2, 0), node("c", 1, 0)];
        assert_eq!(pick_node(&nodes, |_| true), Some(1));
        assert_eq!(pick_node(&[node("a", 1, 1), node("b", 3, 2)], |_| true), Some(1));
        assert_eq!(pick_node(&nodes, |n| n.name == "c"), Some(2));
    }

    #[test]
    fn full_nodes_leave_pods_pending_with_the_schedulers_message() {
        let nodes = [node("a", 1, 1), node("b", 2, 2)];
        assert_eq!(pick_node(&nodes, |_| true), None);
        assert!(unschedulable_message(&nodes).starts_with("0/2 nodes are available: 2 Too many pods."));
        assert_eq!(pick_node(&[], |_| true), None);
        assert!(no_matching_node_message(2).contains("didn't match"));
    }

    #[test]
    fn node_selectors_must_match_node_labels() {
        use std::collections::BTreeMap;
        let labels = BTreeMap::from([("pool".to_owned(), "sim".to_owned())]);
        assert!(selector_fits(None, &labels));
        let want = BTreeMap::from([("pool".to_owned(), "sim".to_owned())]);
        assert!(selector_fits(Some(&want), &labels));
        let other = BTreeMap::from([("pool".to_owned(), "system".to_owned())]);
        assert!(!selector_fits(Some(&other), &labels));
    }
}
