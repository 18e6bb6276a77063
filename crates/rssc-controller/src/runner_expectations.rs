//! What a set's reconcile expects its cache of runners to show soon: the runners it created
//! and deleted whose watch events have not reached the cache yet. A set reads its runners from
//! the cache (a list of a thousand runners on every reconcile was the largest cost left in a
//! burst); a runner it made a moment ago and the cache does not hold yet is counted all the
//! same, as the ReplicaSet controller counts its expectations, or the set would make it twice.
//! An expectation the cache leaves unmet longer than its patience means the cache is behind:
//! the set then reads its runners from the API server, as it did before it had a cache.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, chrono::Utc};
use kube::ResourceExt;
use rssc_api::v1alpha1::EphemeralRunner;

/// How long the cache may lag behind a set's own create or delete before the set stops
/// trusting it and lists its runners (a watch event normally follows its write within
/// milliseconds; a watch that is re-listing takes longer).
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Creates and deletes made by each set (keyed as [`crate::fresh_runners::set_key`]) that its
/// cache has not shown yet.
#[derive(Debug, Default)]
pub struct RunnerExpectations {
    sets: Mutex<HashMap<String, Pending>>,
}

/// One set's writes not yet seen in its cache.
#[derive(Debug, Default)]
struct Pending {
    /// Runners created, by name: when, and the runner as the create answered it.
    created: HashMap<String, (Instant, Arc<EphemeralRunner>)>,
    /// Runners deleted, by name, and when.
    deleted: HashMap<String, Instant>,
}

impl RunnerExpectations {
    /// Notes that `set` created `runner` (as the API server answered it) at `now`.
    pub fn created(&self, set: &str, runner: EphemeralRunner, now: Instant) {
        let mut sets = self.lock();
        let pending = sets.entry(set.to_owned()).or_default();
        pending.created.insert(runner.name_any(), (now, Arc::new(runner)));
    }

    /// Notes that `set` deleted its runner `name` (or found it gone) at `now`.
    pub fn deleted(&self, set: &str, name: &str, now: Instant) {
        let mut sets = self.lock();
        let pending = sets.entry(set.to_owned()).or_default();
        pending.deleted.insert(name.to_owned(), now);
    }

    /// Forgets `set` (it is being deleted).
    pub fn forget(&self, set: &str) {
        self.lock().remove(set);
    }

    /// Forgets every set: a new leadership term starts with new caches.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// `set`'s runners as its plan should see them, from `cached` (its runners in the cache):
    /// runners it created that the cache does not hold yet are added as created, and runners
    /// it deleted that the cache still shows alive are marked deleting. Expectations the cache
    /// meets are dropped. `None` when one has waited longer than `patience`: the cache is
    /// behind, and the runners are to be read from the API server instead.
    pub fn apply(
        &self,
        set: &str,
        mut cached: Vec<Arc<EphemeralRunner>>,
        now: Instant,
        patience: Duration,
    ) -> Option<Vec<Arc<EphemeralRunner>>> {
        let mut sets = self.lock();
        let Some(pending) = sets.get_mut(set) else {
            return Some(cached);
        };
        // Once per reconcile of a busy set: borrowed names, no copies.
        let by_name: HashMap<&str, &EphemeralRunner> = cached
            .iter()
            .filter_map(|r| Some((r.metadata.name.as_deref()?, r.as_ref())))
            .collect();
        // Created and deleted before the cache saw either: nothing to count. Its events may
        // still come; until they do the runner is not counted twice, and after its deletion
        // event it is not counted at all.
        let gone_unseen: Vec<String> = pending
            .created
            .keys()
            .filter(|name| pending.deleted.contains_key(*name) && !by_name.contains_key(name.as_str()))
            .cloned()
            .collect();
        for name in &gone_unseen {
            pending.created.remove(name);
            pending.deleted.remove(name);
        }
        pending
            .created
            .retain(|name, _| !by_name.contains_key(name.as_str()));
        pending.deleted.retain(|name, _| {
            by_name
                .get(name.as_str())
                .is_some_and(|r| r.metadata.deletion_timestamp.is_none())
        });
        let overdue = |at: &Instant| now.saturating_duration_since(*at) > patience;
        if pending.created.values().any(|(at, _)| overdue(at)) || pending.deleted.values().any(overdue) {
            return None;
        }
        if !pending.deleted.is_empty() {
            for runner in &mut cached {
                let deleted = runner
                    .metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| pending.deleted.contains_key(name));
                if deleted {
                    Arc::make_mut(runner).metadata.deletion_timestamp = Some(Time(Utc::now()));
                }
            }
        }
        cached.extend(pending.created.values().map(|(_, runner)| runner.clone()));
        if pending.created.is_empty() && pending.deleted.is_empty() {
            sets.remove(set);
        }
        Some(cached)
    }

    /// Drops `set`'s expectations that `listed` (its runners as the API server listed them)
    /// settles for good: runners created and gone since, and runners deleted and gone or
    /// being deleted. The cache may still be behind on the others, which are kept.
    pub fn settle_listed(&self, set: &str, listed: &[Arc<EphemeralRunner>]) {
        let mut sets = self.lock();
        let Some(pending) = sets.get_mut(set) else {
            return;
        };
        let stored = |name: &String| listed.iter().find(|r| r.metadata.name.as_ref() == Some(name));
        pending.created.retain(|name, _| stored(name).is_some());
        pending
            .deleted
            .retain(|name, _| stored(name).is_some_and(|r| r.metadata.deletion_timestamp.is_none()));
        if pending.created.is_empty() && pending.deleted.is_empty() {
            sets.remove(set);
        }
    }

    /// How many of `set`'s creates and deletes its cache has not shown yet.
    pub fn unmet(&self, set: &str) -> usize {
        self.lock()
            .get(set)
            .map_or(0, |pending| pending.created.len() + pending.deleted.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(name: &str) -> Arc<EphemeralRunner> {
        Arc::new(plain(name))
    }

    fn plain(name: &str) -> EphemeralRunner {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "scaleset.actions.github.com/v1alpha1", "kind": "EphemeralRunner",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"runnerTemplate": {"spec": {"containers": []}},
                     "runnerConfig": {"autoscaleSetRef": {"name": "a"}, "githubConfigURL": "https://github.com/o",
                                      "scaleSetID": 1, "scaleSetName": "s"}}
        }))
        .unwrap()
    }

    fn deleting(name: &str) -> Arc<EphemeralRunner> {
        let mut r = plain(name);
        r.metadata.deletion_timestamp = Some(Time(Utc::now()));
        Arc::new(r)
    }

    fn names(runners: &[Arc<EphemeralRunner>]) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = runners
            .iter()
            .map(|r| (r.name_any(), r.metadata.deletion_timestamp.is_some()))
            .collect();
        out.sort();
        out
    }

    const SET: &str = "ns/ci";

    #[test]
    fn a_runner_created_but_not_cached_yet_is_counted_until_the_cache_shows_it() {
        let e = RunnerExpectations::default();
        let t0 = Instant::now();
        e.created(SET, plain("b"), t0);
        let seen = e.apply(SET, vec![runner("a")], t0, PATIENCE).unwrap();
        assert_eq!(names(&seen), [("a".into(), false), ("b".into(), false)]);
        // The cache caught up: counted once, and nothing is expected any more.
        let seen = e
            .apply(SET, vec![runner("a"), runner("b")], t0, PATIENCE)
            .unwrap();
        assert_eq!(names(&seen), [("a".into(), false), ("b".into(), false)]);
        assert!(e.lock().is_empty());
        // Another set's expectations are its own.
        e.created("ns/other", plain("c"), t0);
        assert_eq!(names(&e.apply(SET, vec![], t0, PATIENCE).unwrap()), []);
    }

    #[test]
    fn a_runner_deleted_but_cached_alive_counts_as_deleting_until_the_cache_shows_it() {
        let e = RunnerExpectations::default();
        let t0 = Instant::now();
        e.deleted(SET, "a", t0);
        let seen = e
            .apply(SET, vec![runner("a"), runner("b")], t0, PATIENCE)
            .unwrap();
        assert_eq!(names(&seen), [("a".into(), true), ("b".into(), false)]);
        let seen = e
            .apply(SET, vec![deleting("a"), runner("b")], t0, PATIENCE)
            .unwrap();
        assert_eq!(names(&seen), [("a".into(), true), ("b".into(), false)]);
        assert!(e.lock().is_empty(), "met once the cache shows the deletion");
        e.deleted(SET, "b", t0);
        assert_eq!(names(&e.apply(SET, vec![], t0, PATIENCE).unwrap()), []);
        assert!(e.lock().is_empty(), "met once the cache no longer holds it");
    }

    #[test]
    fn a_runner_created_and_deleted_before_the_cache_saw_it_is_not_counted() {
        let e = RunnerExpectations::default();
        let t0 = Instant::now();
        e.created(SET, plain("a"), t0);
        e.deleted(SET, "a", t0);
        assert_eq!(names(&e.apply(SET, vec![], t0, PATIENCE).unwrap()), []);
        assert!(e.lock().is_empty());
    }

    #[test]
    fn a_cache_behind_for_longer_than_the_patience_is_not_read() {
        let e = RunnerExpectations::default();
        let t0 = Instant::now();
        e.created(SET, plain("a"), t0);
        let later = t0 + PATIENCE + Duration::from_millis(1);
        assert!(e.apply(SET, vec![], later, PATIENCE).is_none());
        // Still expected: the next reconcile lists again until the cache holds it.
        assert!(e.apply(SET, vec![], later, PATIENCE).is_none());
        assert!(e.apply(SET, vec![runner("a")], later, PATIENCE).is_some());

        e.deleted(SET, "b", t0);
        assert!(e.apply(SET, vec![runner("b")], later, PATIENCE).is_none());
    }

    #[test]
    fn a_list_settles_what_is_gone_for_good_and_keeps_what_the_cache_still_owes() {
        let e = RunnerExpectations::default();
        let t0 = Instant::now();
        let late = t0 + PATIENCE * 2;
        // Created and gone since (its events were missed, say, while the watch re-listed).
        e.created(SET, plain("gone"), t0);
        // Created and stored, the cache still behind.
        e.created(SET, plain("stored"), t0);
        // Deleted, and the list shows it deleting or gone.
        e.deleted(SET, "deleting", t0);
        e.deleted(SET, "removed", t0);
        e.settle_listed(SET, &[runner("stored"), deleting("deleting")]);
        assert!(
            e.apply(SET, vec![], late, PATIENCE).is_none(),
            "the cache still owes `stored`"
        );
        e.settle_listed(SET, &[]);
        assert!(e.lock().is_empty());
    }

    #[test]
    fn forgetting_a_set_drops_its_expectations() {
        let e = RunnerExpectations::default();
        e.created(SET, plain("a"), Instant::now());
        e.forget(SET);
        assert!(e.lock().is_empty());
    }
}
