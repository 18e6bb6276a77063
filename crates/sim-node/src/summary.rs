//! What the simulator has done, for tests to inspect and wait on.

use std::{collections::BTreeMap, path::PathBuf};

/// What kind of workload a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodKind {
    /// Has a `runner` container with `ACTIONS_RUNNER_INPUT_JITCONFIG`.
    Runner,
    /// Has a `listener` container and the simulator runs listeners.
    Listener,
    /// Anything else: its containers run until the pod is deleted.
    Other,
}

/// A runner's progress with the fake GitHub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerRecord {
    /// Runner id once registered.
    pub runner_id: Option<i64>,
    /// Runner name once registered.
    pub runner_name: Option<String>,
    /// The job taken.
    pub job_id: Option<i64>,
    /// Whether the job was finished.
    pub finished: bool,
    /// Why the runner could not start or run.
    pub error: Option<String>,
}

/// One pod the simulator placed or ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    /// Its UID.
    pub uid: String,
    /// Kind.
    pub kind: PodKind,
    /// Node it runs on, once bound.
    pub node: Option<String>,
    /// Last phase written (`Pending`, `Running`, `Succeeded`, `Failed`).
    pub phase: String,
    /// Pod `Ready` condition as last written.
    pub ready: bool,
    /// Pod-level reason (`Evicted`) or `Unschedulable` while it cannot be placed.
    pub reason: Option<String>,
    /// Exit code of the main container's last run.
    pub exit_code: Option<i32>,
    /// Reason of that exit (`Completed`, `Error`, `OOMKilled`).
    pub exit_reason: Option<String>,
    /// Main container restarts.
    pub restarts: i32,
    /// The pod was deleted from the API (by us after termination, or by someone else).
    pub deleted: bool,
    /// Runner progress, for runner pods.
    pub runner: Option<RunnerRecord>,
    /// Process log file, for listener pods.
    pub log_file: Option<PathBuf>,
    /// Process id of the running listener process (`None` while it is not running), so a test
    /// can kill it the way a crash would.
    pub pid: Option<u32>,
    /// Loopback port of the running listener process's admin server (`/metrics`, `/healthz`,
    /// `/readyz`): the simulator's stand-in for the Pod IP and its `admin` container port.
    pub admin_port: Option<u16>,
}

impl PodRecord {
    /// A record for a pod just seen.
    pub fn new(uid: &str, kind: PodKind) -> Self {
        Self {
            uid: uid.to_owned(),
            kind,
            node: None,
            phase: "Pending".into(),
            ready: false,
            reason: None,
            exit_code: None,
            exit_reason: None,
            restarts: 0,
            deleted: false,
            runner: (kind == PodKind::Runner).then(RunnerRecord::default),
            log_file: None,
            pid: None,
            admin_port: None,
        }
    }
}

/// Everything the simulator knows, by `namespace/name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Pods by `namespace/name` (the latest pod of that name).
    pub pods: BTreeMap<String, PodRecord>,
    /// Nodes registered as Node objects.
    pub nodes_registered: Vec<String>,
    /// Lease renewals so far.
    pub lease_renewals: u64,
    /// The API server does not serve `nodes` (Node objects could not be registered).
    pub nodes_api_missing: bool,
    /// The API server does not serve `pods/binding` (pods were run without `spec.nodeName`).
    pub binding_api_missing: bool,
    /// Errors the simulator hit talking to the API (last 20).
    pub errors: Vec<String>,
}

impl Summary {
    /// Pods per phase (deleted pods excluded).
    pub fn phases(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for p in self.pods.values().filter(|p| !p.deleted) {
            *out.entry(p.phase.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodRecord> {
        self.pods.get(&crate::util::key(namespace, name))
    }

    /// Runners that finished their job.
    pub fn runners_finished(&self) -> usize {
        self.pods
            .values()
            .filter(|p| p.runner.as_ref().is_some_and(|r| r.finished))
            .count()
    }

    /// Runners that could not start or run.
    pub fn runners_failed(&self) -> usize {
        self.pods
            .values()
            .filter(|p| p.runner.as_ref().is_some_and(|r| r.error.is_some()))
            .count()
    }

    pub(crate) fn error(&mut self, e: String) {
        if self.errors.len() >= 20 {
            self.errors.remove(0);
        }
        self.errors.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_runner_outcomes_are_counted() {
        let mut s = Summary::default();
        let mut a = PodRecord::new("1", PodKind::Runner);
        a.phase = "Succeeded".into();
        a.runner.as_mut().unwrap().finished = true;
        let mut b = PodRecord::new("2", PodKind::Runner);
        b.phase = "Failed".into();
        b.runner.as_mut().unwrap().error = Some("bad".into());
        let mut c = PodRecord::new("3", PodKind::Other);
        c.deleted = true;
        s.pods.insert("ns/a".into(), a);
        s.pods.insert("ns/b".into(), b);
        s.pods.insert("ns/c".into(), c);
        assert_eq!(
            s.phases(),
            BTreeMap::from([("Failed".to_owned(), 1), ("Succeeded".to_owned(), 1)])
        );
        assert_eq!((s.runners_finished(), s.runners_failed()), (1, 1));
        assert!(s.pod("ns", "a").is_some());
    }
}
