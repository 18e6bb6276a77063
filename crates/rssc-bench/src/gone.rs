//! A watch that notes when each EphemeralRunner leaves the API (its deletion event).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use futures::StreamExt as _;
use kube::{
    Api, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use rssc_api::v1alpha1::EphemeralRunner;
use tokio::task::JoinHandle;

/// When each EphemeralRunner's deletion was seen, by name.
#[derive(Debug, Clone, Default)]
pub struct Gone(Arc<Mutex<BTreeMap<String, SystemTime>>>);

impl Gone {
    /// What was seen so far.
    pub fn snapshot(&self) -> BTreeMap<String, SystemTime> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many EphemeralRunners are gone.
    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Starts the watch; abort the handle to stop it.
pub fn watch(api: Api<EphemeralRunner>) -> (Gone, JoinHandle<()>) {
    let gone = Gone::default();
    let task = tokio::spawn({
        let gone = gone.clone();
        async move {
            let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = stream.next().await {
                // The watcher retries errors with backoff; only deletions matter here.
                if let Ok(watcher::Event::Delete(runner)) = event {
                    gone.0
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(runner.name_any())
                        .or_insert_with(SystemTime::now);
                }
            }
        }
    });
    (gone, task)
}
