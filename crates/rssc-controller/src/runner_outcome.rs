//! What a runner's Pod says about the runner, and what to do about it. Pure: the reconciler
//! reads the Pod and the EphemeralRunner, asks [`classify`], and acts.
//!
//! - Runner exit 0: the job is done and the runner deregistered itself; delete the
//!   EphemeralRunner without asking GitHub again.
//! - Exit 7: the runner version is deprecated; fail it and tell the scale set's owner.
//! - Failure with a job: the JIT configuration is spent; deregister and replace.
//! - Evicted, OOM-killed or vanished while registered: deregister and replace.
//! - Other failures before a job: retry the Pod with the same JIT configuration after
//!   0, 5, 10, 20, 40, 80 s, and replace the runner after [`MAX_POD_FAILURES`].
//! - Pending past the timeout (no node, image never pulled): replace.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};

use crate::{runner_template::RUNNER_CONTAINER, scale::Timestamp};

/// Pod failures after which a runner is replaced rather than retried.
pub const MAX_POD_FAILURES: usize = 5;
/// Exit code the runner uses for a deprecated version (with
/// `ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1`).
pub const EXIT_VERSION_DEPRECATED: i32 = 7;

const BACKOFF_SECS: [u64; 6] = [0, 5, 10, 20, 40, 80];

/// Delay before the Pod is recreated after `failures` failures: at once after the first,
/// then 5, 10, 20, 40 and 80 s.
pub fn retry_backoff(failures: usize) -> Duration {
    Duration::from_secs(BACKOFF_SECS[failures.saturating_sub(1).min(BACKOFF_SECS.len() - 1)])
}

/// What the EphemeralRunner knows about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunnerFacts {
    /// GitHub knows the runner (a JIT configuration was issued).
    pub registered: bool,
    /// GitHub reported that the runner started a job.
    pub has_job: bool,
    /// The runner's Pod was seen running before.
    pub was_running: bool,
    /// Pod failures recorded so far.
    pub failures: usize,
    /// When the last failure was recorded.
    pub last_failure: Option<Timestamp>,
}

/// What to do with a runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No Pod yet: create it.
    CreatePod,
    /// No Pod, and the retry backoff has not elapsed.
    WaitBeforeRetry(Duration),
    /// The Pod is on its way (scheduled, pulling, starting) or being deleted.
    Pending,
    /// The runner process runs.
    Running {
        /// The runner container is ready.
        ready: bool,
    },
    /// The runner finished and deregistered itself: delete it without calling GitHub.
    Succeeded,
    /// The runner version is deprecated: fail the runner, deregister it, raise an Event.
    VersionDeprecated,
    /// Record the failure, delete the Pod, recreate it after the backoff.
    RetryPod(Failure),
    /// Delete the runner (deregistering it first if registered); a new one replaces it.
    Replace(Failure),
}

/// Why a Pod failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Short machine-readable reason, e.g. `OOMKilled`, `Evicted`, `PendingTimeout`.
    pub reason: String,
    /// Exit code of the runner container, if it terminated.
    pub exit_code: Option<i32>,
    /// Whether GitHub must be asked to remove the runner.
    pub deregister: bool,
}

/// Classifies a runner from its Pod (if any) and its own record.
pub fn classify(pod: Option<&Pod>, facts: RunnerFacts, now: Timestamp, pending_timeout: Duration) -> Outcome {
    let Some(pod) = pod else {
        if facts.was_running && facts.registered {
            return replace(&facts, "PodVanished", None);
        }
        if facts.failures > 0 {
            let wait = retry_backoff(facts.failures);
            let since = facts
                .last_failure
                .map(|t| (now - t).to_std().unwrap_or(Duration::ZERO));
            if let Some(since) = since.filter(|since| *since < wait) {
                return Outcome::WaitBeforeRetry(wait - since);
            }
        }
        return Outcome::CreatePod;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Outcome::Pending;
    }
    let status = pod.status.clone().unwrap_or_default();
    let runner = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == RUNNER_CONTAINER);

    // An evicted Pod's containers are terminated too (exit 137, reason `Error`): the eviction,
    // not the exit, says what happened.
    if status.phase.as_deref() == Some("Failed") && status.reason.as_deref() == Some("Evicted") {
        return replace(
            &facts,
            "Evicted",
            runner.and_then(terminated).map(|(code, _)| code),
        );
    }
    if let Some((code, reason)) = runner.and_then(terminated) {
        return match code {
            0 => Outcome::Succeeded,
            EXIT_VERSION_DEPRECATED => Outcome::VersionDeprecated,
            _ if reason == "OOMKilled" => replace(&facts, "OOMKilled", Some(code)),
            _ => failed(
                &facts,
                if reason.is_empty() {
                    "RunnerExited"
                } else {
                    &reason
                },
                Some(code),
            ),
        };
    }
    match status.phase.as_deref() {
        Some("Succeeded") => return Outcome::Succeeded,
        Some("Failed") => {
            let reason = status.reason.clone().unwrap_or_else(|| "PodFailed".to_owned());
            return if reason == "Evicted" {
                replace(&facts, &reason, None)
            } else {
                failed(&facts, &reason, None)
            };
        }
        _ => {}
    }
    // A regular init container that failed keeps the Pod pending forever with `restartPolicy: Never`.
    let failed_init = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| !is_sidecar(pod, &c.name))
        .find_map(|c| terminated(c).filter(|(code, _)| *code != 0));
    if let Some((code, _)) = failed_init {
        return failed(&facts, "InitContainerFailed", Some(code));
    }
    match status.phase.as_deref() {
        Some("Running") => Outcome::Running {
            ready: runner.is_some_and(|c| c.ready),
        },
        _ => {
            let created = pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            if (now - created).to_std().unwrap_or(Duration::ZERO) > pending_timeout {
                replace(&facts, "PendingTimeout", None)
            } else {
                Outcome::Pending
            }
        }
    }
}

/// A digest of what the reconcile acts on in a Pod's [`classify`] outcome: its deletion, phase
/// and reason, and which containers exited how. Pod changes with the same digest (the
/// kubelet's other status writes: containers created, started, ready) cannot change what the
/// reconcile does, so they need none.
pub fn pod_digest(pod: &Pod) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pod.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    if let Some(status) = &pod.status {
        status.phase.hash(&mut hasher);
        status.reason.hash(&mut hasher);
        for exit in exits(status) {
            exit.hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Whether a Pod is as its creator left it: not deleted, not yet running, no container exited.
/// Its creating reconcile already scheduled the pending timeout, so seeing it needs no
/// reconcile.
pub fn just_created(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_none_or(|s| {
            s.phase.as_deref().is_none_or(|phase| phase == "Pending")
                && s.reason.is_none()
                && exits(s).next().is_none()
        })
}

/// The containers (init containers too) that exited, by name, with how.
fn exits(status: &PodStatus) -> impl Iterator<Item = (&String, (i32, String))> {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .filter_map(|c| Some((&c.name, terminated(c)?)))
}

fn terminated(container: &ContainerStatus) -> Option<(i32, String)> {
    let state = container.state.as_ref()?.terminated.as_ref()?;
    Some((state.exit_code, state.reason.clone().unwrap_or_default()))
}

fn is_sidecar(pod: &Pod, name: &str) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .and_then(|inits| inits.iter().find(|c| c.name == name))
        .is_some_and(|c| c.restart_policy.as_deref() == Some("Always"))
}

fn replace(facts: &RunnerFacts, reason: &str, exit_code: Option<i32>) -> Outcome {
    Outcome::Replace(Failure {
        reason: reason.to_owned(),
        exit_code,
        deregister: facts.registered,
    })
}

/// A failure before a job is retried; after a job started the JIT configuration is spent.
fn failed(facts: &RunnerFacts, reason: &str, exit_code: Option<i32>) -> Outcome {
    if facts.has_job || facts.failures + 1 >= MAX_POD_FAILURES {
        replace(facts, reason, exit_code)
    } else {
        Outcome::RetryPod(Failure {
            reason: reason.to_owned(),
            exit_code,
            deregister: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus},
        apimachinery::pkg::apis::meta::v1::Time,
        chrono::TimeDelta,
    };
    use serde_json::json;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(600);

    fn now() -> Timestamp {
        "2026-11-22T12:00:00Z".parse().unwrap()
    }

    fn facts() -> RunnerFacts {
        RunnerFacts {
            registered: true,
            has_job: false,
            was_running: false,
            failures: 0,
            last_failure: None,
        }
    }

    fn pod(phase: &str, age_secs: i64) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.creation_timestamp = Some(Time(now() - TimeDelta::seconds(age_secs)));
        pod.status = Some(PodStatus {
            phase: Some(phase.to_owned()),
            ..Default::default()
        });
        pod
    }

    fn runner_exited(code: i32, reason: &str) -> Pod {
        let mut pod = pod("Failed", 60);
        pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: RUNNER_CONTAINER.to_owned(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: Some(reason.to_owned()).filter(|r| !r.is_empty()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        pod
    }

    #[test]
    fn the_first_retry_is_immediate_then_the_backoff_doubles() {
        let delays: Vec<u64> = (1..=7).map(|n| retry_backoff(n).as_secs()).collect();
        assert_eq!(delays, [0, 5, 10, 20, 40, 80, 80]);
    }

    #[test]
    fn no_pod_means_create_it_after_any_backoff() {
        assert_eq!(classify(None, facts(), now(), TIMEOUT), Outcome::CreatePod);
        let recent = RunnerFacts {
            failures: 3,
            last_failure: Some(now() - TimeDelta::seconds(5)),
            ..facts()
        };
        assert_eq!(
            classify(None, recent, now(), TIMEOUT),
            Outcome::WaitBeforeRetry(Duration::from_secs(5)),
            "the third failure waits 10 s, 5 s of which have passed"
        );
        let old = RunnerFacts {
            failures: 3,
            last_failure: Some(now() - TimeDelta::seconds(60)),
            ..facts()
        };
        assert_eq!(classify(None, old, now(), TIMEOUT), Outcome::CreatePod);
    }

    #[test]
    fn a_vanished_pod_of_a_registered_runner_is_replaced_and_deregistered() {
        let gone = RunnerFacts {
            was_running: true,
            ..facts()
        };
        match classify(None, gone, now(), TIMEOUT) {
            Outcome::Replace(f) => assert!(f.deregister && f.reason == "PodVanished"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_zero_is_success_even_if_a_sidecar_failed_the_pod() {
        assert_eq!(
            classify(Some(&runner_exited(0, "Completed")), facts(), now(), TIMEOUT),
            Outcome::Succeeded
        );
    }

    #[test]
    fn exit_seven_means_the_runner_version_is_deprecated() {
        assert_eq!(
            classify(Some(&runner_exited(7, "Error")), facts(), now(), TIMEOUT),
            Outcome::VersionDeprecated
        );
    }

    #[test]
    fn failures_before_a_job_are_retried_then_replaced() {
        let p = runner_exited(1, "Error");
        assert!(
            matches!(classify(Some(&p), facts(), now(), TIMEOUT), Outcome::RetryPod(f) if f.exit_code == Some(1))
        );
        let last = RunnerFacts {
            failures: MAX_POD_FAILURES - 1,
            ..facts()
        };
        assert!(matches!(classify(Some(&p), last, now(), TIMEOUT), Outcome::Replace(f) if f.deregister));
    }

    #[test]
    fn a_failure_with_a_job_replaces_the_runner_the_jit_config_is_spent() {
        let busy = RunnerFacts {
            has_job: true,
            ..facts()
        };
        let outcome = classify(Some(&runner_exited(2, "Error")), busy, now(), TIMEOUT);
        assert!(matches!(outcome, Outcome::Replace(f) if f.deregister && f.exit_code == Some(2)));
    }

    #[test]
    fn oom_kills_and_evictions_replace_the_runner() {
        let outcome = classify(Some(&runner_exited(137, "OOMKilled")), facts(), now(), TIMEOUT);
        assert!(matches!(outcome, Outcome::Replace(f) if f.reason == "OOMKilled" && f.deregister));
        let mut evicted = pod("Failed", 60);
        evicted.status.as_mut().unwrap().reason = Some("Evicted".to_owned());
        let outcome = classify(Some(&evicted), facts(), now(), TIMEOUT);
        assert!(matches!(outcome, Outcome::Replace(f) if f.reason == "Evicted"));
        // As a kubelet reports it: the runner container killed as well.
        let mut evicted = runner_exited(137, "Error");
        evicted.status.as_mut().unwrap().reason = Some("Evicted".to_owned());
        let outcome = classify(Some(&evicted), facts(), now(), TIMEOUT);
        assert!(
            matches!(outcome, Outcome::Replace(f) if f.reason == "Evicted" && f.exit_code == Some(137)),
            "an eviction is not retried like a crash"
        );
    }

    #[test]
    fn pending_pods_wait_until_the_timeout() {
        assert_eq!(
            classify(Some(&pod("Pending", 30)), facts(), now(), TIMEOUT),
            Outcome::Pending
        );
        let outcome = classify(Some(&pod("Pending", 601)), facts(), now(), TIMEOUT);
        assert!(matches!(outcome, Outcome::Replace(f) if f.reason == "PendingTimeout"));
    }

    #[test]
    fn running_reports_readiness_of_the_runner_container() {
        let mut p = pod("Running", 30);
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: RUNNER_CONTAINER.to_owned(),
            ready: true,
            ..Default::default()
        }]);
        assert_eq!(
            classify(Some(&p), facts(), now(), TIMEOUT),
            Outcome::Running { ready: true }
        );
    }

    #[test]
    fn a_failed_init_container_fails_the_runner_but_a_sidecar_does_not() {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"creationTimestamp": "2026-11-22T11:59:00Z"},
            "spec": {"containers": [{"name": "runner"}],
                     "initContainers": [{"name": "init"}, {"name": "dind", "restartPolicy": "Always"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "dind", "image": "", "imageID": "", "ready": false, "restartCount": 1,
                 "state": {"terminated": {"exitCode": 1}}}
            ]}
        }))
        .unwrap();
        assert_eq!(
            classify(Some(&p), facts(), now(), TIMEOUT),
            Outcome::Pending,
            "sidecars restart"
        );
        p.status
            .as_mut()
            .unwrap()
            .init_container_statuses
            .as_mut()
            .unwrap()[0]
            .name = "init".to_owned();
        assert!(
            matches!(classify(Some(&p), facts(), now(), TIMEOUT), Outcome::RetryPod(f) if f.reason == "InitContainerFailed")
        );
    }
}
