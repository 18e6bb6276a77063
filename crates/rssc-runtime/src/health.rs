//! Named health checks behind `/readyz`: each part of a binary reports whether it is ready, or
//! beats a heartbeat that goes stale when it stops.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Shared readiness state; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<&'static str, Check>>>,
}

#[derive(Clone, Debug)]
enum Check {
    Status { ok: bool, detail: String },
    Heartbeat { last: Instant, max_age: Duration },
}

/// The outcome of all checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Every check passes (and there is at least one).
    pub ready: bool,
    /// One line per check, `name: ok` or `name: <why not>`.
    pub report: String,
}

impl Health {
    /// Sets a check to passing or failing with a reason a person can act on.
    pub fn set(&self, name: &'static str, result: Result<(), String>) {
        let check = match result {
            Ok(()) => Check::Status {
                ok: true,
                detail: String::new(),
            },
            Err(detail) => Check::Status { ok: false, detail },
        };
        self.lock().insert(name, check);
    }

    /// Records that `name` made progress now; it fails once `max_age` passes without another.
    pub fn heartbeat(&self, name: &'static str, max_age: Duration) {
        self.lock().insert(
            name,
            Check::Heartbeat {
                last: Instant::now(),
                max_age,
            },
        );
    }

    /// Evaluates every check at `now`.
    pub fn readiness_at(&self, now: Instant) -> Readiness {
        let checks = self.lock();
        let mut ready = !checks.is_empty();
        let mut report = String::new();
        if checks.is_empty() {
            report.push_str("starting: no check has reported yet\n");
        }
        for (name, check) in checks.iter() {
            let line = match check {
                Check::Status { ok: true, .. } => "ok".to_owned(),
                Check::Status { ok: false, detail } => detail.clone(),
                Check::Heartbeat { last, max_age } => {
                    let age = now.saturating_duration_since(*last);
                    if age <= *max_age {
                        "ok".to_owned()
                    } else {
                        format!(
                            "no progress for {}s (limit {}s)",
                            age.as_secs(),
                            max_age.as_secs()
                        )
                    }
                }
            };
            ready &= line == "ok";
            report.push_str(&format!("{name}: {line}\n"));
        }
        Readiness { ready, report }
    }

    /// Evaluates every check now.
    pub fn readiness(&self) -> Readiness {
        self.readiness_at(Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Check>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_until_something_reports() {
        assert!(!Health::default().readiness().ready);
    }

    #[test]
    fn every_check_must_pass() {
        let health = Health::default();
        health.set("session", Ok(()));
        assert!(health.readiness().ready);
        health.set("kube", Err("cannot reach the API server".into()));
        let r = health.readiness();
        assert!(!r.ready);
        assert!(
            r.report.contains("kube: cannot reach the API server"),
            "{}",
            r.report
        );
        assert!(r.report.contains("session: ok"));
    }

    #[test]
    fn heartbeats_go_stale() {
        let health = Health::default();
        health.heartbeat("poll", Duration::from_secs(90));
        let now = Instant::now();
        assert!(health.readiness_at(now).ready);
        let later = health.readiness_at(now + Duration::from_secs(200));
        assert!(!later.ready);
        assert!(later.report.contains("poll: no progress for"), "{}", later.report);
    }
}
