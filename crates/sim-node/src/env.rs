//! A container's environment and volumes as a kubelet prepares them, resolved against Secrets
//! and ConfigMaps read beforehand, and the rewriting of in-container paths to local ones. Pure.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod};

/// Secrets and ConfigMaps of the pod's namespace by name; `None` for one that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// Secret data by Secret name.
    pub secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    /// ConfigMap data (`data` and `binaryData`) by ConfigMap name.
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

/// Why a container cannot be configured (the kubelet's `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A referenced object does not exist.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A referenced key does not exist.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Object name.
        name: String,
        /// The key.
        key: String,
    },
    /// A `fieldRef` the simulator does not support.
    #[error("unsupported fieldRef {0}")]
    UnsupportedField(String),
    /// A value is not UTF-8 text.
    #[error("environment variable {0} is not valid UTF-8")]
    NotText(String),
}

/// Secret and ConfigMap names the pod's containers and volumes reference: `(secrets, configmaps)`.
pub fn references(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut secrets, mut maps) = (BTreeSet::new(), BTreeSet::new());
    let Some(spec) = pod.spec.as_ref() else {
        return (secrets, maps);
    };
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        for e in c.env.iter().flatten() {
            if let Some(s) = e.value_from.as_ref() {
                if let Some(r) = &s.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
                if let Some(r) = &s.config_map_key_ref {
                    maps.insert(r.name.clone());
                }
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.secret_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &f.config_map_ref {
                maps.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        if let Some(c) = &v.config_map {
            maps.insert(c.name.clone());
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &p.secret {
                secrets.insert(s.name.clone());
            }
            if let Some(c) = &p.config_map {
                maps.insert(c.name.clone());
            }
        }
    }
    (secrets, maps)
}

fn lookup<'a>(
    src: &'a BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    kind: &'static str,
    name: &str,
) -> Result<Option<&'a BTreeMap<String, Vec<u8>>>, EnvError> {
    match src.get(name) {
        Some(Some(data)) => Ok(Some(data)),
        _ => Err(EnvError::NotFound {
            kind,
            name: name.to_owned(),
        }),
    }
}

fn text(name: &str, bytes: &[u8]) -> Result<String, EnvError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| EnvError::NotText(name.to_owned()))
}

/// Expands `$(VAR)` references to variables defined earlier; `$$` escapes; unknown references
/// stay as written (the kubelet's rules).
pub fn expand(value: &str, defined: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match defined.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn field(pod: &Pod, path: &str) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let label = |map: Option<&BTreeMap<String, String>>, rest: &str| {
        let key = rest.trim_start_matches("['").trim_end_matches("']");
        map.and_then(|m| m.get(key).cloned()).unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        p if p.starts_with("metadata.labels[") => label(meta.labels.as_ref(), &p["metadata.labels".len()..]),
        p if p.starts_with("metadata.annotations[") => {
            label(meta.annotations.as_ref(), &p["metadata.annotations".len()..])
        }
        other => return Err(EnvError::UnsupportedField(other.to_owned())),
    })
}

/// The container's environment in order: `envFrom` first, then `env` (later entries win, as
/// in a process environment), with `valueFrom` resolved and `$(VAR)` expanded.
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    src: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        out.retain(|(x, _)| *x != k);
        out.push((k, v));
    };
    for f in container.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let (data, optional) = if let Some(r) = &f.secret_ref {
            (lookup(&src.secrets, "secret", &r.name), r.optional)
        } else if let Some(r) = &f.config_map_ref {
            (lookup(&src.config_maps, "configmap", &r.name), r.optional)
        } else {
            continue;
        };
        match data {
            Ok(Some(d)) => {
                for (k, v) in d {
                    set(&mut out, format!("{prefix}{k}"), text(k, v)?);
                }
            }
            Ok(None) => {}
            Err(_) if optional == Some(true) => {}
            Err(e) => return Err(e),
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &out)
        } else if let Some(from) = &e.value_from {
            let keyed = |src: &BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
                         kind: &'static str,
                         title: &'static str,
                         name: &str,
                         key: &str,
                         optional: Option<bool>|
             -> Result<Option<String>, EnvError> {
                let data = match lookup(src, kind, name) {
                    Ok(d) => d,
                    Err(_) if optional == Some(true) => return Ok(None),
                    Err(err) => return Err(err),
                };
                match data.and_then(|d| d.get(key)) {
                    Some(v) => text(&e.name, v).map(Some),
                    None if optional == Some(true) => Ok(None),
                    None => Err(EnvError::MissingKey {
                        kind: title,
                        namespace: ns.clone(),
                        name: name.to_owned(),
                        key: key.to_owned(),
                    }),
                }
            };
            let resolved = if let Some(r) = &from.secret_key_ref {
                keyed(&src.secrets, "secret", "Secret", &r.name, &r.key, r.optional)?
            } else if let Some(r) = &from.config_map_key_ref {
                keyed(
                    &src.config_maps,
                    "configmap",
                    "ConfigMap",
                    &r.name,
                    &r.key,
                    r.optional,
                )?
            } else if let Some(r) = &from.field_ref {
                Some(field(pod, &r.field_path)?)
            } else {
                None
            };
            match resolved {
                Some(v) => v,
                None => continue,
            }
        } else {
            String::new()
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

/// A file to write under the pod's scratch directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// Path relative to the scratch directory.
    pub path: PathBuf,
    /// Content.
    pub content: Vec<u8>,
}

/// Where an in-container path lives locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Mount path in the container.
    pub mount_path: String,
    /// Local directory (or file, for `subPath` mounts).
    pub local: PathBuf,
}

fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    dir: &Path,
    out: &mut Vec<VolumeFile>,
) {
    match items {
        Some(items) => {
            for item in items {
                if let Some(v) = data.get(&item.key) {
                    out.push(VolumeFile {
                        path: dir.join(&item.path),
                        content: v.clone(),
                    });
                }
            }
        }
        None => {
            for (k, v) in data {
                out.push(VolumeFile {
                    path: dir.join(k),
                    content: v.clone(),
                });
            }
        }
    }
}

/// The files of the volumes `container` mounts (Secret, ConfigMap, projected Secret/ConfigMap
/// sources; `emptyDir` and others become empty directories) under `volumes/<name>/` of the
/// scratch directory `root`, and where each mount path maps to.
pub fn plan_volumes(
    pod: &Pod,
    container: &Container,
    src: &Sources,
    root: &Path,
) -> Result<(Vec<VolumeFile>, Vec<Mapping>), EnvError> {
    let mut files = Vec::new();
    let mut mappings = Vec::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for m in container.volume_mounts.iter().flatten() {
        let Some(v) = volumes.into_iter().flatten().find(|v| v.name == m.name) else {
            continue;
        };
        let dir = PathBuf::from("volumes").join(&v.name);
        let mut keyed = |data: Option<&BTreeMap<String, Vec<u8>>>, items: Option<&Vec<KeyToPath>>| {
            if let Some(d) = data {
                project(d, items, &dir, &mut files);
            }
        };
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            match lookup(&src.secrets, "secret", &name) {
                Ok(d) => keyed(d, s.items.as_ref()),
                Err(_) if s.optional == Some(true) => {}
                Err(e) => return Err(e),
            }
        } else if let Some(c) = &v.config_map {
            match lookup(&src.config_maps, "configmap", &c.name) {
                Ok(d) => keyed(d, c.items.as_ref()),
                Err(_) if c.optional == Some(true) => {}
                Err(e) => return Err(e),
            }
        } else if let Some(p) = &v.projected {
            for s in p.sources.iter().flatten() {
                if let Some(s) = &s.secret {
                    match lookup(&src.secrets, "secret", &s.name) {
                        Ok(d) => keyed(d, s.items.as_ref()),
                        Err(_) if s.optional == Some(true) => {}
                        Err(e) => return Err(e),
                    }
                } else if let Some(c) = &s.config_map {
                    // kube-root-ca.crt and the like: optional for the simulator.
                    if let Ok(d) = lookup(&src.config_maps, "configmap", &c.name) {
                        keyed(d, c.items.as_ref());
                    }
                }
            }
        }
        let local = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => root.join(&dir).join(sub),
            None => root.join(&dir),
        };
        mappings.push(Mapping {
            mount_path: m.mount_path.trim_end_matches('/').to_owned(),
            local,
        });
    }
    // Longest mount path first, so nested mounts win.
    mappings.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    Ok((files, mappings))
}

/// `value` with a leading in-container path under a mount replaced by its local path; other
/// values unchanged.
pub fn rewrite_path(value: &str, mappings: &[Mapping]) -> String {
    for m in mappings {
        if value == m.mount_path {
            return m.local.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(&m.mount_path)
            && let Some(rest) = rest.strip_prefix('/')
        {
            return m.local.join(rest).display().to_string();
        }
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "l-abc", "namespace": "ci", "labels": {"app": "x"}},
            "spec": {
                "serviceAccountName": "l",
                "containers": [{
                    "name": "listener",
                    "image": "img",
                    "envFrom": [{"configMapRef": {"name": "extra"}, "prefix": "X_"}],
                    "env": [
                        {"name": "RSSC_CONFIG", "value": "/etc/rssc-listener/config.json"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
                        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "extra", "key": "level"}}},
                        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                        {"name": "GREETING", "value": "$(POD_NAME) in $(POD_NAMESPACE) $$(POD_NAME) $(NOPE)"}
                    ],
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/rssc-listener", "readOnly": true},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "one", "mountPath": "/etc/one.txt", "subPath": "one.txt"}
                    ]
                }],
                "volumes": [
                    {"name": "config", "secret": {"secretName": "s"}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "one", "configMap": {"name": "extra", "items": [{"key": "level", "path": "one.txt"}]}}
                ]
            }
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        Sources {
            secrets: BTreeMap::from([
                (
                    "s".to_owned(),
                    Some(BTreeMap::from([
                        ("token".to_owned(), b"t0k".to_vec()),
                        ("config.json".to_owned(), b"{}".to_vec()),
                    ])),
                ),
                ("gone".to_owned(), None),
            ]),
            config_maps: BTreeMap::from([(
                "extra".to_owned(),
                Some(BTreeMap::from([("level".to_owned(), b"debug".to_vec())])),
            )]),
        }
    }

    fn env_map(pod: &Pod, src: &Sources) -> BTreeMap<String, String> {
        let c = &pod.spec.as_ref().unwrap().containers[0];
        resolve_env(pod, c, src).unwrap().into_iter().collect()
    }

    #[test]
    fn values_references_and_fields_resolve() {
        let env = env_map(&pod(), &sources());
        assert_eq!(env["POD_NAME"], "l-abc");
        assert_eq!(env["POD_NAMESPACE"], "ci");
        assert_eq!(env["APP"], "x");
        assert_eq!(env["TOKEN"], "t0k");
        assert_eq!(env["LEVEL"], "debug");
        assert_eq!(env["X_level"], "debug");
        assert!(!env.contains_key("OPT"), "an optional missing Secret is skipped");
        assert_eq!(env["GREETING"], "l-abc in ci $(POD_NAME) $(NOPE)");
    }

    #[test]
    fn missing_secret_or_key_is_a_config_error() {
        let mut src = sources();
        src.secrets.insert("s".into(), None);
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            resolve_env(&p, c, &src).unwrap_err().to_string(),
            "secret \"s\" not found"
        );
        let mut src = sources();
        src.secrets.insert("s".into(), Some(BTreeMap::new()));
        assert_eq!(
            resolve_env(&p, c, &src).unwrap_err().to_string(),
            "couldn't find key token in Secret ci/s"
        );
    }

    #[test]
    fn references_cover_env_and_volumes() {
        let (s, c) = references(&pod());
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["gone", "s"]);
        assert_eq!(c.into_iter().collect::<Vec<_>>(), ["extra"]);
    }

    #[test]
    fn volumes_materialise_and_paths_rewrite() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let root = Path::new("/scratch/p");
        let (files, mappings) = plan_volumes(&p, c, &sources(), root).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "volumes/config/config.json",
                "volumes/config/token",
                "volumes/one/one.txt"
            ]
        );
        assert_eq!(
            rewrite_path("/etc/rssc-listener/config.json", &mappings),
            "/scratch/p/volumes/config/config.json"
        );
        assert_eq!(
            rewrite_path("/etc/rssc-listener", &mappings),
            "/scratch/p/volumes/config"
        );
        assert_eq!(
            rewrite_path("/etc/one.txt", &mappings),
            "/scratch/p/volumes/one/one.txt"
        );
        assert_eq!(rewrite_path("/tmp/x", &mappings), "/scratch/p/volumes/tmp/x");
        assert_eq!(
            rewrite_path("/etc/rssc-listener2", &mappings),
            "/etc/rssc-listener2"
        );
        assert_eq!(rewrite_path("info", &mappings), "info");
    }
}
