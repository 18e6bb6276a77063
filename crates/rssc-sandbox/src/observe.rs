//! Watches that note when each runner's EphemeralRunner, JIT Secret and Pod first appear.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    Api, Client, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use rssc_api::{
    consts::{components, labels},
    v1alpha1::EphemeralRunner,
};
use tokio::task::JoinHandle;

use crate::report::RunnerObjects;

/// First-seen times of runner objects by name (EphemeralRunner, Secret and Pod share it).
#[derive(Debug, Clone, Default)]
pub struct FirstSeen(Arc<Mutex<BTreeMap<String, RunnerObjects>>>);

impl FirstSeen {
    /// What was seen so far.
    pub fn snapshot(&self) -> BTreeMap<String, RunnerObjects> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn note(&self, name: String, slot: fn(&mut RunnerObjects) -> &mut Option<SystemTime>) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot(map.entry(name).or_default()).get_or_insert_with(SystemTime::now);
    }
}

/// Starts the three watches in `namespace`; abort the handles to stop them.
pub fn watch_runners(client: &Client, namespace: &str) -> (FirstSeen, Vec<JoinHandle<()>>) {
    let seen = FirstSeen::default();
    let by_component =
        |value: &str| watcher::Config::default().labels(&format!("{}={value}", labels::COMPONENT));
    let tasks = vec![
        spawn_watch(
            Api::<EphemeralRunner>::namespaced(client.clone(), namespace),
            watcher::Config::default(),
            seen.clone(),
            |r| &mut r.runner,
        ),
        spawn_watch(
            Api::<Secret>::namespaced(client.clone(), namespace),
            by_component(components::RUNNER_JIT_SECRET),
            seen.clone(),
            |r| &mut r.secret,
        ),
        spawn_watch(
            Api::<Pod>::namespaced(client.clone(), namespace),
            by_component(components::RUNNER),
            seen.clone(),
            |r| &mut r.pod,
        ),
    ];
    (seen, tasks)
}

fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    seen: FirstSeen,
    slot: fn(&mut RunnerObjects) -> &mut Option<SystemTime>,
) -> JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(event) = stream.next().await {
            // Errors are retried by the watcher with backoff; only objects matter here.
            if let Ok(object) = event {
                seen.note(object.name_any(), slot);
            }
        }
    })
}
