//! The objects that run a RunnerSet's listener: its config Secret, ServiceAccount, a Role that
//! allows exactly what the listener reads and writes, the RoleBinding, and the one-replica
//! Deployment. Pure: owner references come from the RunnerSet as read from the API.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
            Secret, SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
        },
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use rssc_api::{
    consts::{annotations, components, labels},
    listener_config::{CONFIG_DIR, CONFIG_KEY, ListenerConfig},
    names,
    v1alpha1::{ListenerTemplate, RunnerSet},
};

use crate::runner_pod::BuildError;

/// Port of the listener's admin server (`/healthz`, `/readyz`, `/metrics`).
pub const ADMIN_PORT: i32 = 8080;

/// Settings of the controller that shape every listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerDefaults {
    /// Image of the listener.
    pub image: String,
    /// Log filter passed to listeners.
    pub log_level: String,
    /// Log format passed to listeners (`json` or `text`).
    pub log_format: String,
    /// The controller's own `OTEL_*` variables, sorted: listeners export traces where it does
    /// (under their own service name, with the scale set as a resource attribute).
    pub otel_env: Vec<(String, String)>,
}

impl ListenerDefaults {
    /// The `OTEL_*` variables of this process worth passing on to listeners.
    pub fn otel_env_of_this_process() -> Vec<(String, String)> {
        let mut vars: Vec<_> = std::env::vars()
            .filter(|(k, _)| k.starts_with("OTEL_") && k != "OTEL_SERVICE_NAME")
            .collect();
        vars.sort();
        vars
    }
}

/// Every object of one listener.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerObjects {
    /// The config Secret.
    pub config: Secret,
    /// The listener's identity.
    pub service_account: ServiceAccount,
    /// What the listener may do.
    pub role: Role,
    /// Grants the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// Runs the listener.
    pub deployment: Deployment,
}

/// Builds the listener of `runner_set` with `config`.
pub fn build(
    runner_set: &RunnerSet,
    config: &ListenerConfig,
    defaults: &ListenerDefaults,
) -> Result<ListenerObjects, BuildError> {
    let rs_name = runner_set
        .metadata
        .name
        .clone()
        .ok_or(BuildError::Missing("name"))?;
    let namespace = runner_set
        .metadata
        .namespace
        .clone()
        .ok_or(BuildError::Missing("namespace"))?;
    let owner = runner_set
        .controller_owner_ref(&())
        .ok_or(BuildError::Missing("uid"))?;
    let name = names::listener(&rs_name);
    let labels = listener_labels(&rs_name, &runner_set.spec.autoscale_set_ref.name);
    let meta = |component: &str| ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        labels: Some(with_component(&labels, component)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };

    let config_json = serde_json::to_vec(config).expect("the listener config serializes");
    let secret = Secret {
        metadata: meta(components::LISTENER_CONFIG),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), ByteString(config_json))])),
        ..Default::default()
    };
    let service_account = ServiceAccount {
        metadata: meta(components::LISTENER),
        // The token is projected into the listener Pod only.
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(components::LISTENER),
        rules: Some(rules(config, &name)),
    };
    let role_binding = RoleBinding {
        metadata: meta(components::LISTENER),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.clone(),
            namespace: Some(namespace.clone()),
            api_group: None,
        }]),
    };
    let deployment = deployment(
        meta(components::LISTENER),
        &labels,
        config,
        defaults,
        runner_set.spec.listener_template.as_ref(),
    );
    Ok(ListenerObjects {
        config: secret,
        service_account,
        role,
        role_binding,
        deployment,
    })
}

fn listener_labels(runner_set: &str, autoscale_set: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::RUNNER_SET.to_owned(), runner_set.to_owned()),
        (labels::AUTOSCALE_SET.to_owned(), autoscale_set.to_owned()),
        (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
    ])
}

fn with_component(base: &BTreeMap<String, String>, component: &str) -> BTreeMap<String, String> {
    let mut labels = base.clone();
    labels.insert(labels::COMPONENT.to_owned(), component.to_owned());
    labels
}

/// Exactly what the listener does: read and patch its own EphemeralRunnerSet (replicas, its
/// status), record jobs on runners' status, and follow its own config Secret (a watch selected
/// by name). crates/chart-tests/tests/rbac.rs runs the listener binary and checks this is all
/// it uses.
fn rules(config: &ListenerConfig, listener: &str) -> Vec<PolicyRule> {
    let group = rssc_api::consts::GROUP.to_owned();
    let rule = |groups: &[&str], resources: &[&str], names: Option<Vec<String>>, verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        resource_names: names,
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        non_resource_urls: None,
    };
    let ers = Some(vec![config.ephemeral_runner_set.clone()]);
    vec![
        rule(
            &[&group],
            &["ephemeralrunnersets"],
            ers.clone(),
            &["get", "patch"],
        ),
        rule(&[&group], &["ephemeralrunnersets/status"], ers, &["patch"]),
        // Runner names are generated, so this cannot be narrowed by name; status only.
        rule(&[&group], &["ephemeralrunners/status"], None, &["patch"]),
        rule(
            &[""],
            &["secrets"],
            Some(vec![listener.to_owned()]),
            &["list", "watch"],
        ),
    ]
}

fn deployment(
    metadata: ObjectMeta,
    labels: &BTreeMap<String, String>,
    config: &ListenerConfig,
    defaults: &ListenerDefaults,
    overrides: Option<&ListenerTemplate>,
) -> Deployment {
    let name = metadata.name.clone().unwrap_or_default();
    let selector = with_component(
        &BTreeMap::from([(labels::RUNNER_SET.to_owned(), labels[labels::RUNNER_SET].clone())]),
        components::LISTENER,
    );
    let mut pod_labels = with_component(labels, components::LISTENER);
    let mut pod_annotations = BTreeMap::from([(
        annotations::LISTENER_CONFIG_HASH.to_owned(),
        config.restart_hash(),
    )]);
    let overrides = overrides.cloned().unwrap_or_default();
    if let Some(user) = &overrides.metadata {
        for (key, value) in &user.labels {
            pod_labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
        for (key, value) in &user.annotations {
            pod_annotations
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }

    let field = |path: &str| EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut env = vec![
        value_env("RSSC_CONFIG", &format!("{CONFIG_DIR}/{CONFIG_KEY}")),
        value_env("RSSC_ADMIN_ADDR", &format!("0.0.0.0:{ADMIN_PORT}")),
        value_env("RSSC_LOG_LEVEL", &defaults.log_level),
        value_env("RSSC_LOG_FORMAT", &defaults.log_format),
        EnvVar {
            name: "POD_NAME".into(),
            value: None,
            value_from: Some(field("metadata.name")),
        },
        EnvVar {
            name: "POD_NAMESPACE".into(),
            value: None,
            value_from: Some(field("metadata.namespace")),
        },
    ];
    if !defaults.otel_env.is_empty() {
        let mut attributes = format!("rssc.scale_set={}", config.scale_set_name);
        for (name, value) in &defaults.otel_env {
            if name == "OTEL_RESOURCE_ATTRIBUTES" {
                attributes = format!("{attributes},{value}");
            } else {
                env.push(value_env(name, value));
            }
        }
        env.push(value_env("OTEL_RESOURCE_ATTRIBUTES", &attributes));
    }
    for var in overrides.env {
        match env.iter_mut().find(|e| e.name == var.name) {
            Some(existing) => *existing = var,
            None => env.push(var),
        }
    }

    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let container = Container {
        name: "listener".into(),
        image: Some(defaults.image.clone()),
        command: Some(vec!["rssc-listener".into()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("admin".into()),
            container_port: ADMIN_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        // A listener whose session conflicts or whose polls stall reports not ready.
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(overrides.resources.unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(name.clone()),
        automount_service_account_token: Some(true),
        containers: vec![container],
        // Time to finish the message in hand and close the session.
        termination_grace_period_seconds: Some(60),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volumes: Some(vec![Volume {
            name: "config".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        node_selector: Some(overrides.node_selector).filter(|s| !s.is_empty()),
        tolerations: Some(overrides.tolerations).filter(|t| !t.is_empty()),
        affinity: overrides.affinity,
        priority_class_name: overrides.priority_class_name,
        ..Default::default()
    };
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Never two listeners at once: GitHub allows one session per scale set.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            revision_history_limit: Some(2),
            ..Default::default()
        }),
        status: None,
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".into())),
            ("memory".to_owned(), Quantity("32Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("128Mi".into()))])),
        claims: None,
    }
}

#[cfg(test)]
mod tests {
    use rssc_api::{
        listener_config::ListenerAuth,
        v1alpha1::{NamespacedRef, RunnerSetSpec},
    };

    use super::*;

    fn runner_set(template: Option<ListenerTemplate>) -> RunnerSet {
        let mut rs = RunnerSet::new(
            "linux",
            RunnerSetSpec {
                autoscale_set_ref: NamespacedRef {
                    name: "linux-asss".into(),
                    namespace: None,
                },
                runner_group: None,
                runner_template: None,
                listener_template: template,
            },
        );
        rs.metadata.namespace = Some("ci".into());
        rs.metadata.uid = Some("rs-uid".into());
        rs
    }

    fn config() -> ListenerConfig {
        ListenerConfig {
            github_config_url: "https://github.com/org".into(),
            scale_set_id: 7,
            scale_set_name: "linux".into(),
            namespace: "ci".into(),
            ephemeral_runner_set: "linux".into(),
            config_secret: "linux-listener".into(),
            min_runners: 0,
            max_runners: 10,
            session_owner: "ci/linux".into(),
            auth: ListenerAuth::Token {
                token: "ghp_TOKENVALUE".into(),
            },
            proxy: None,
            ca_bundle: None,
        }
    }

    fn defaults() -> ListenerDefaults {
        ListenerDefaults {
            image: "ghcr.io/rssc/listener:0.1.0".into(),
            log_level: "info".into(),
            log_format: "json".into(),
            otel_env: Vec::new(),
        }
    }

    fn pod_spec(objects: &ListenerObjects) -> &PodSpec {
        objects
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    #[test]
    fn everything_is_named_after_the_runner_set_and_owned_by_it() {
        let o = build(&runner_set(None), &config(), &defaults()).unwrap();
        for meta in [
            &o.config.metadata,
            &o.service_account.metadata,
            &o.role.metadata,
            &o.role_binding.metadata,
            &o.deployment.metadata,
        ] {
            assert_eq!(meta.name.as_deref(), Some("linux-listener"));
            assert_eq!(meta.namespace.as_deref(), Some("ci"));
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "rs-uid");
        }
        assert_eq!(
            o.role_binding.subjects.as_ref().unwrap()[0].name,
            "linux-listener"
        );
    }

    #[test]
    fn the_role_allows_only_what_the_listener_writes() {
        let o = build(&runner_set(None), &config(), &defaults()).unwrap();
        let rules = o.role.rules.unwrap();
        let ers = rules
            .iter()
            .find(|r| r.resources.as_ref().unwrap() == &["ephemeralrunnersets"])
            .unwrap();
        assert_eq!(ers.resource_names.as_deref(), Some(&["linux".to_owned()][..]));
        assert!(!ers.verbs.contains(&"delete".to_owned()) && !ers.verbs.contains(&"create".to_owned()));
        let runners = rules
            .iter()
            .find(|r| r.resources.as_ref().unwrap() == &["ephemeralrunners/status"])
            .unwrap();
        assert_eq!(runners.verbs, ["patch"]);
        let secrets = rules
            .iter()
            .find(|r| r.resources.as_ref().unwrap() == &["secrets"])
            .unwrap();
        assert_eq!(
            secrets.resource_names.as_deref(),
            Some(&["linux-listener".to_owned()][..])
        );
        assert!(rules.iter().all(|r| !r.verbs.contains(&"*".to_owned())));
    }

    #[test]
    fn one_listener_at_a_time_with_probes_a_metrics_port_and_no_privileges() {
        let o = build(&runner_set(None), &config(), &defaults()).unwrap();
        let spec = o.deployment.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.strategy.as_ref().unwrap().type_.as_deref(), Some("Recreate"));
        let pod = pod_spec(&o);
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/rssc/listener:0.1.0"));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, ADMIN_PORT);
        assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            (sc.read_only_root_filesystem, sc.allow_privilege_escalation),
            (Some(true), Some(false))
        );
        let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        for (k, v) in spec.selector.match_labels.as_ref().unwrap() {
            assert_eq!(labels.get(k), Some(v), "the selector matches the pod");
        }
    }

    #[test]
    fn listeners_export_traces_where_the_controller_does() {
        let env = |d: &ListenerDefaults| -> Vec<(String, String)> {
            let o = build(&runner_set(None), &config(), d).unwrap();
            pod_spec(&o).containers[0]
                .env
                .iter()
                .flatten()
                .filter(|e| e.name.starts_with("OTEL_"))
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        };
        assert!(env(&defaults()).is_empty(), "no traces, no OTEL_ variables");
        let traced = ListenerDefaults {
            otel_env: vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    "http://collector:4318".into(),
                ),
                (
                    "OTEL_RESOURCE_ATTRIBUTES".into(),
                    "deployment.environment=prod".into(),
                ),
            ],
            ..defaults()
        };
        let vars = env(&traced);
        assert!(vars.contains(&(
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            "http://collector:4318".into()
        )));
        let attributes = &vars
            .iter()
            .find(|(k, _)| k == "OTEL_RESOURCE_ATTRIBUTES")
            .unwrap()
            .1;
        assert!(
            attributes.starts_with("rssc.scale_set=") && attributes.ends_with(",deployment.environment=prod"),
            "{attributes}"
        );
    }

    #[test]
    fn credentials_stay_in_the_secret() {
        let o = build(&runner_set(None), &config(), &defaults()).unwrap();
        let deployment = serde_json::to_string(&o.deployment).unwrap();
        assert!(!deployment.contains("ghp_TOKENVALUE"));
        let data = &o.config.data.as_ref().unwrap()[CONFIG_KEY].0;
        let parsed: ListenerConfig = serde_json::from_slice(data).unwrap();
        assert_eq!(parsed, config());
    }

    #[test]
    fn limits_change_without_a_restart_other_changes_restart() {
        let hash = |c: &ListenerConfig| {
            let o = build(&runner_set(None), c, &defaults()).unwrap();
            o.deployment
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap()[annotations::LISTENER_CONFIG_HASH]
                .clone()
        };
        let mut scaled = config();
        scaled.max_runners = 99;
        assert_eq!(hash(&config()), hash(&scaled));
        let mut moved = config();
        moved.auth = ListenerAuth::Token {
            token: "rotated".into(),
        };
        assert_ne!(
            hash(&config()),
            hash(&moved),
            "a rotated credential restarts the listener"
        );
    }

    #[test]
    fn listener_template_overrides_apply() {
        let template: ListenerTemplate = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"team": "ci"}, "annotations": {"prometheus.io/scrape": "true"}},
            "resources": {"limits": {"memory": "64Mi"}},
            "nodeSelector": {"pool": "system"},
            "tolerations": [{"key": "system", "operator": "Exists"}],
            "priorityClassName": "system-cluster-critical",
            "env": [{"name": "HTTPS_PROXY", "value": "http://p:3128"}, {"name": "RSSC_LOG_LEVEL", "value": "debug"}]
        }))
        .unwrap();
        let o = build(&runner_set(Some(template)), &config(), &defaults()).unwrap();
        let pod = pod_spec(&o);
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "system");
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        let c = &pod.containers[0];
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "64Mi"
        );
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "HTTPS_PROXY"));
        assert_eq!(
            env.iter()
                .find(|e| e.name == "RSSC_LOG_LEVEL")
                .unwrap()
                .value
                .as_deref(),
            Some("debug")
        );
        let meta = o
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap();
        assert_eq!(meta.labels.as_ref().unwrap()["team"], "ci");
        assert!(
            meta.annotations
                .as_ref()
                .unwrap()
                .contains_key("prometheus.io/scrape")
        );
    }
}
