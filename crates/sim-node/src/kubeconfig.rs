//! Kubeconfigs for listener processes on a real cluster: the cluster of an existing kubeconfig
//! and a ServiceAccount token from the TokenRequest API. Pure.

use std::path::Path;

use kube::config::Kubeconfig;

/// The cluster part of a kubeconfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// API server URL.
    pub server: String,
    /// Base64 CA bundle (`certificate-authority-data`).
    pub ca_data: Option<String>,
    /// CA bundle file (`certificate-authority`).
    pub ca_file: Option<String>,
    /// `insecure-skip-tls-verify`.
    pub insecure: bool,
}

/// Error reading a kubeconfig's cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// The file cannot be read or parsed.
    #[error("cannot read kubeconfig {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The current context has no cluster with a server.
    #[error("kubeconfig {0}: the current context names no cluster with a server")]
    NoCluster(String),
}

/// The cluster the current context of `kubeconfig` points at.
pub fn cluster_of(kubeconfig: &Kubeconfig, path: &str) -> Result<ClusterInfo, KubeconfigError> {
    let context = kubeconfig
        .current_context
        .as_deref()
        .and_then(|name| kubeconfig.contexts.iter().find(|c| c.name == name))
        .or_else(|| kubeconfig.contexts.first())
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| KubeconfigError::NoCluster(path.to_owned()))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| KubeconfigError::NoCluster(path.to_owned()))?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| KubeconfigError::NoCluster(path.to_owned()))?;
    Ok(ClusterInfo {
        server,
        ca_data: cluster.certificate_authority_data.clone(),
        ca_file: cluster.certificate_authority.clone(),
        insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
    })
}

/// Reads the cluster of the kubeconfig file at `path`.
pub fn read_cluster(path: &Path) -> Result<ClusterInfo, KubeconfigError> {
    let shown = path.display().to_string();
    let k = Kubeconfig::read_from(path).map_err(|e| KubeconfigError::Read {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    cluster_of(&k, &shown)
}

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A kubeconfig for `cluster` that authenticates with `token` and defaults to `namespace`.
pub fn with_token(cluster: &ClusterInfo, token: &str, namespace: &str) -> String {
    let mut c = format!("    server: {}\n", q(&cluster.server));
    if let Some(d) = &cluster.ca_data {
        c.push_str(&format!("    certificate-authority-data: {}\n", q(d)));
    }
    if let Some(f) = &cluster.ca_file {
        c.push_str(&format!("    certificate-authority: {}\n", q(f)));
    }
    if cluster.insecure {
        c.push_str("    insecure-skip-tls-verify: true\n");
    }
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n{c}users:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context:\n    cluster: cluster\n    user: sa\n    namespace: {}\ncurrent-context: sa\n",
        q(token),
        q(namespace)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_kubeconfig_keeps_the_cluster_and_parses() {
        let source = Kubeconfig::from_yaml(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443\n    certificate-authority-data: Q0E=\nusers:\n- name: admin\n  user:\n    token: admin\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: admin\ncurrent-context: ctx\n",
        )
        .unwrap();
        let cluster = cluster_of(&source, "k").unwrap();
        assert_eq!(cluster.server, "https://10.0.0.1:6443");
        let text = with_token(&cluster, "tok\"en", "ci");
        let parsed = Kubeconfig::from_yaml(&text).unwrap();
        let back = cluster_of(&parsed, "k").unwrap();
        assert_eq!(back, cluster);
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
        assert_eq!(
            parsed.contexts[0].context.as_ref().unwrap().namespace.as_deref(),
            Some("ci")
        );
    }

    #[test]
    fn a_kubeconfig_without_cluster_is_rejected() {
        let k = Kubeconfig::from_yaml("apiVersion: v1\nkind: Config\n").unwrap();
        assert!(cluster_of(&k, "k").is_err());
    }
}
