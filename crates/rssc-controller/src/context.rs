//! What every reconciler shares: the Kubernetes client, the controller's settings, GitHub
//! clients (one per AutoscaleSet, rebuilt only when its credentials or settings change), and
//! per-object backoff.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{Hash, Hasher},
    sync::Mutex,
    time::Duration,
};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client, ResourceExt, runtime::events::Reporter};
use rssc_api::{
    consts::{conditions, reasons},
    listener_config::{ListenerAuth, ListenerProxy},
    v1alpha1::AutoscaleSet,
};
use rssc_github::{
    ActionsClient, ClientOptions, Credentials, GitHubConfig, ProxyConfig, Secret as Sensitive,
};

use crate::{
    credentials::{self, Data},
    problem::Problem,
    runner_template::RunnerDefaults,
};

/// The controller's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Listener image, log level and format.
    pub listener: crate::listener::ListenerDefaults,
    /// Runner pod defaults that come from the cluster and the controller.
    pub runners: RunnerDefaults,
    /// Pending runners younger than this are not removed by scale-down (node provisioning).
    pub pending_grace: Duration,
    /// Runners pending longer than this are replaced.
    pub pending_timeout: Duration,
    /// Options for GitHub clients (timeouts, retries, JIT concurrency).
    pub github: ClientOptions,
    /// Runners' extra User-Agent (`rssc/<version>`).
    pub user_agent: String,
    /// How often a healthy AutoscaleSet checks that its scale set still exists on GitHub.
    pub recheck: Duration,
    /// Watch and manage only this namespace (all namespaces if `None`).
    pub watch_namespace: Option<String>,
    /// Reconciles run at once per kind; EphemeralRunners get `runner_concurrency`.
    pub concurrency: u16,
    /// Reconciles of EphemeralRunners run at once (JIT configs, Secrets and Pods of a burst).
    pub runner_concurrency: u16,
    /// Longest wait before retrying an object after repeated failures.
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listener: crate::listener::ListenerDefaults {
                image: format!("ghcr.io/rssc-dev/rssc-listener:{}", env!("CARGO_PKG_VERSION")),
                log_level: "info".into(),
                log_format: "json".into(),
                otel_env: Vec::new(),
            },
            runners: RunnerDefaults::default(),
            pending_grace: Duration::from_secs(120),
            pending_timeout: Duration::from_secs(15 * 60),
            github: ClientOptions::default(),
            user_agent: format!("rssc/{}", env!("CARGO_PKG_VERSION")),
            recheck: Duration::from_secs(5 * 60),
            watch_namespace: None,
            concurrency: 4,
            runner_concurrency: 32,
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    /// Kubernetes.
    pub client: Client,
    /// Settings.
    pub settings: Settings,
    /// Who emits Events.
    pub reporter: Reporter,
    /// Metrics.
    pub metrics: crate::metrics::ControllerMetrics,
    /// The registry the metrics live in, served on `/metrics`.
    pub registry: std::sync::Arc<prometheus_client::registry::Registry>,
    /// What the RunnerSet reconciler last applied, by RunnerSet.
    pub applied: crate::applied::Applied,
    /// How long each EphemeralRunnerSet's decision has stood.
    pub decisions: crate::decision_clock::DecisionClock,
    /// When each EphemeralRunnerSet's status was last written.
    pub set_status_pace: crate::status_pace::StatusPace,
    /// Runners the runner reconciler removed itself.
    pub self_removed: crate::self_removed::SelfRemoved,
    /// Runners made and registered in this leadership term, whose Secrets need no reading.
    pub fresh_runners: crate::fresh_runners::FreshRunners,
    /// Runners each set created or deleted that its cache of runners does not show yet.
    pub runner_expectations: crate::runner_expectations::RunnerExpectations,
    /// AutoscaleSets that may hold a deprecated-runner-version record.
    pub version_records: crate::version_records::VersionRecords,
    github: Mutex<HashMap<String, (u64, ActionsClient)>>,
    failures: Mutex<HashMap<String, u32>>,
}

/// Everything the GitHub side of an AutoscaleSet is built from, read from its Secrets and
/// ConfigMap.
#[derive(Clone, PartialEq, Eq)]
pub struct GitHubInputs {
    /// The config URL.
    pub url: String,
    /// Credentials.
    pub auth: ListenerAuth,
    /// Proxy with credentials.
    pub proxy: Option<ListenerProxy>,
    /// Extra CA bundle.
    pub ca_bundle: Option<String>,
}

impl GitHubInputs {
    fn fingerprint(&self) -> u64 {
        // Credentials take part so a rotated Secret rebuilds the client; the hash stays in memory.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.url.hash(&mut hasher);
        serde_json::to_string(&(&self.auth, &self.proxy, &self.ca_bundle))
            .expect("inputs serialize")
            .hash(&mut hasher);
        hasher.finish()
    }
}

impl Context {
    /// A context for `client` with `settings`.
    pub fn new(client: Client, settings: Settings) -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = crate::metrics::ControllerMetrics::register(&mut registry);
        Self {
            client,
            settings,
            metrics,
            registry: std::sync::Arc::new(registry),
            reporter: Reporter {
                controller: "rssc-controller".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
            applied: crate::applied::Applied::default(),
            decisions: crate::decision_clock::DecisionClock::default(),
            set_status_pace: crate::status_pace::StatusPace::default(),
            self_removed: crate::self_removed::SelfRemoved::default(),
            fresh_runners: crate::fresh_runners::FreshRunners::default(),
            runner_expectations: crate::runner_expectations::RunnerExpectations::default(),
            version_records: crate::version_records::VersionRecords::default(),
            github: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// An API for `K` across the namespaces the controller manages.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        match &self.settings.watch_namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Reads what the GitHub client of `asss` is built from.
    pub async fn github_inputs(&self, asss: &AutoscaleSet) -> Result<GitHubInputs, Problem> {
        let namespace = asss.namespace().unwrap_or_default();
        let spec = &asss.spec;
        GitHubConfig::parse(&spec.github_config_url).map_err(|e| Problem::github("githubConfigURL", &e))?;

        let (reference, _) = credentials::credentials_secret(spec)
            .map_err(|e| Problem::data(conditions::CREDENTIALS_VALID, &e))?;
        let secret_ns = reference.namespace_or(&namespace).to_owned();
        let object = format!("Secret {secret_ns}/{}", reference.name);
        let data = self
            .secret_text(&secret_ns, &reference.name)
            .await?
            .ok_or_else(|| {
                Problem::invalid(
                    conditions::CREDENTIALS_VALID,
                    reasons::SECRET_NOT_FOUND,
                    format!("{object} not found; create it with the GitHub App private key or the token"),
                )
            })?;
        let auth = credentials::credentials(spec, &data, &object)
            .map_err(|e| Problem::data(conditions::CREDENTIALS_VALID, &e))?;

        let proxy = match &spec.proxy {
            None => None,
            Some(config) => {
                let mut secrets = BTreeMap::new();
                for name in [&config.http, &config.https]
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.credential_secret_ref.as_ref())
                {
                    if let Some(data) = self.secret_text(&namespace, name).await? {
                        secrets.insert(name.clone(), data);
                    }
                }
                Some(
                    credentials::proxy(config, &secrets, &namespace)
                        .map_err(|e| Problem::data(conditions::SCALE_SET_REGISTERED, &e))?,
                )
            }
        };
        let ca_bundle = match &spec.github_server_tls {
            None => None,
            Some(tls) => {
                let reference = &tls.certificate_from.config_map_key_ref;
                let object = format!("ConfigMap {namespace}/{}", reference.name);
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
                let config_map = api
                    .get_opt(&reference.name)
                    .await
                    .map_err(|e| Problem::kube("reading the CA bundle", &e))?;
                let data: Data = config_map
                    .and_then(|c| c.data)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let bundle = credentials::ca_bundle(&data, &reference.key, &object).map_err(|e| Problem {
                    reason: reasons::CONFIG_MAP_NOT_FOUND,
                    ..Problem::data(conditions::SCALE_SET_REGISTERED, &e)
                })?;
                Some(bundle)
            }
        };
        Ok(GitHubInputs {
            url: spec.github_config_url.clone(),
            auth,
            proxy,
            ca_bundle,
        })
    }

    async fn secret_text(&self, namespace: &str, name: &str) -> Result<Option<Data>, Problem> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| Problem::kube("reading a Secret", &e))?;
        Ok(secret.map(|s| credentials::secret_text(s.data.as_ref())))
    }

    /// The GitHub client of `asss`, built again only when its inputs changed.
    pub async fn github(&self, asss: &AutoscaleSet) -> Result<(ActionsClient, GitHubInputs), Problem> {
        let key = format!("{}/{}", asss.namespace().unwrap_or_default(), asss.name_any());
        let built = self.github_inputs(asss).await.and_then(|inputs| {
            let fingerprint = inputs.fingerprint();
            if let Some((known, client)) = self.lock_github().get(&key)
                && *known == fingerprint
            {
                return Ok((client.clone(), inputs));
            }
            let client = self.build_github(&inputs)?;
            self.lock_github()
                .insert(key.clone(), (fingerprint, client.clone()));
            Ok((client, inputs))
        });
        if built.is_err() {
            // Credentials removed or broken: runners must not go on with the old ones.
            self.lock_github().remove(&key);
        }
        built
    }

    fn build_github(&self, inputs: &GitHubInputs) -> Result<ActionsClient, Problem> {
        let config = GitHubConfig::parse(&inputs.url).map_err(|e| Problem::github("githubConfigURL", &e))?;
        let credentials = match &inputs.auth {
            ListenerAuth::GithubApp {
                client_id,
                installation_id,
                private_key,
            } => Credentials::app(
                client_id.clone(),
                *installation_id,
                Sensitive::new(private_key.clone()),
            ),
            ListenerAuth::Token { token } => Credentials::token(Sensitive::new(token.clone())),
        }
        .map_err(|e| Problem::github("reading the credentials", &e))?;
        let options = ClientOptions {
            user_agent_suffix: Some("controller".into()),
            proxy: inputs.proxy.as_ref().map(|p| ProxyConfig {
                http_url: p.http.clone(),
                https_url: p.https.clone(),
                no_proxy: Some(p.no_proxy.join(",")).filter(|s| !s.is_empty()),
                ..ProxyConfig::default()
            }),
            root_ca_pem: inputs.ca_bundle.iter().cloned().collect(),
            ..self.settings.github.clone()
        };
        ActionsClient::with_metrics(config, credentials, options, self.metrics.github())
            .map_err(|e| Problem::github("setting up the GitHub client", &e))
    }

    /// The GitHub client last built for the AutoscaleSet `namespace/name`, without reading its
    /// inputs again. Runners ask for it once each in a burst; the AutoscaleSet reconciler, which
    /// runs on every change of the AutoscaleSet or its Secrets, keeps it current.
    pub fn known_github(&self, namespace: &str, name: &str) -> Option<ActionsClient> {
        self.lock_github()
            .get(&format!("{namespace}/{name}"))
            .map(|(_, client)| client.clone())
    }

    /// Forgets the GitHub client of a deleted AutoscaleSet.
    pub fn forget_github(&self, namespace: &str, name: &str) {
        self.lock_github().remove(&format!("{namespace}/{name}"));
    }

    fn lock_github(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, ActionsClient)>> {
        self.github
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The delay before retrying `key` after another failure: 1 s doubling to `max_backoff`
    /// (5 min by default), jittered.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        let step = Duration::from_secs(1u64 << (*n - 1).min(8)).min(self.settings.max_backoff);
        step.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}
