//! End-to-end scenarios with faults: processes killed with SIGKILL, GitHub and Kubernetes API
//! failures, and runner Pod failures — each ending with the same invariants as the happy paths
//! (`rssc_e2e::invariants`).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use rssc_api::v1alpha1::{EphemeralRunner, RunnerSet};
use rssc_e2e::{
    Harness, HarnessOptions, WAIT, eventually,
    invariants::{Expect, teardown_and_check},
    peaks::{PeakSampler, Peaks},
    scenario::{
        JOB, RUNNER_SET, apply_sets_and_wait_for_listener, listener_ready, live_runners, queue_jobs,
        runner_set, scale_set_id, wait_jobs, wait_jobs_done,
    },
};
use rssc_sim_github::{FaultKind, JobState};
use rssc_sim_node::PodKind;
use rssc_test_support::FaultConfig;
use serde_json::json;

/// How many of `jobs` completed.
fn completed(h: &Harness, jobs: &[i64]) -> usize {
    h.github.with_state(|s| {
        jobs.iter()
            .filter(|j| s.jobs[*j].state == JobState::Completed)
            .count()
    })
}

/// Longest wait of any of `jobs` between its assignment to the scale set and a runner
/// taking it.
fn longest_wait_for_a_runner(h: &Harness, jobs: &[i64]) -> Duration {
    h.github.with_state(|s| {
        jobs.iter()
            .filter_map(|j| {
                let job = &s.jobs[j];
                job.runner_assign_time()?
                    .duration_since(job.scale_set_assign_time()?)
                    .ok()
            })
            .max()
            .unwrap_or_default()
    })
}

/// Bound on a job's wait for a runner around a controller restart: the controller's settle
/// time (10 s) and room for a slow machine, well short of GitHub's re-offer after 60 s.
const RESTARTED_REFILL: Duration = Duration::from_secs(20);

/// Checks a run around a killed listener or controller: never more runners or registrations
/// than the set's maximum (10), and no job left waiting long for a runner afterwards.
fn no_duplicates_and_a_prompt_refill(h: &Harness, jobs: &[i64], peaks: &Peaks) {
    assert!(
        peaks.runners <= 10 && peaks.registrations <= 10,
        "no duplicate runners: {peaks:?}"
    );
    // Runners that finished while a process was down must not hold back runners for the jobs
    // still waiting. On the node simulator a runner starts within a second, so a longer wait
    // is rssc's; a real cluster may pull images for longer.
    if h.nodes.is_some() {
        let slowest = longest_wait_for_a_runner(h, jobs);
        assert!(
            slowest < RESTARTED_REFILL,
            "a job waited {slowest:?} for a runner; after a restart rssc refills within the \
             controller's settle time (10 s)"
        );
    }
}

/// Waits until at least `n` of `jobs` completed.
async fn until_completed(h: &Harness, jobs: &[i64], n: usize) {
    let ok = h
        .github
        .wait_until(WAIT, |s| {
            jobs.iter()
                .filter(|j| s.jobs[*j].state == JobState::Completed)
                .count()
                >= n
        })
        .await;
    assert!(ok, "{n} jobs completed in time (got {})", completed(h, jobs));
}

/// Runner pods running a job right now: (pod name, job).
fn busy_runner_pods(h: &Harness) -> Vec<(String, i64)> {
    h.nodes
        .as_ref()
        .unwrap()
        .summary()
        .pods
        .into_iter()
        .filter(|(_, p)| p.kind == PodKind::Runner && !p.deleted && p.phase == "Running")
        .filter_map(|(k, p)| {
            let r = p.runner?;
            let job = r.job_id.filter(|_| !r.finished)?;
            Some((k.rsplit('/').next().unwrap().to_owned(), job))
        })
        .collect()
}

/// Registered runner pods without a job: pod names.
fn idle_runner_pods(h: &Harness) -> Vec<String> {
    h.nodes
        .as_ref()
        .unwrap()
        .summary()
        .pods
        .into_iter()
        .filter(|(_, p)| p.kind == PodKind::Runner && !p.deleted && p.phase == "Running")
        .filter(|(_, p)| {
            p.runner
                .as_ref()
                .is_some_and(|r| r.runner_id.is_some() && r.job_id.is_none())
        })
        .map(|(k, _)| k.rsplit('/').next().unwrap().to_owned())
        .collect()
}

/// The listener process: (pod UID, pid, restarts).
fn listener_process(h: &Harness) -> Option<(String, u32, i32)> {
    h.nodes
        .as_ref()
        .unwrap()
        .summary()
        .pods
        .values()
        .filter(|p| p.kind == PodKind::Listener && !p.deleted)
        .find_map(|p| Some((p.uid.clone(), p.pid?, p.restarts)))
}

fn sigkill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -9 {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_killed_mid_burst() {
    let h = Harness::start("kill-listener").await;
    apply_sets_and_wait_for_listener(&h, 0, 10).await;
    let sampler = PeakSampler::start(h.api::<EphemeralRunner>(), h.github.clone());
    let jobs = queue_jobs(&h, 30, Duration::from_secs(2));
    until_completed(&h, &jobs, 5).await;

    let (uid, pid, restarts) = listener_process(&h).expect("the listener process runs");
    let sessions_before = h
        .github
        .with_state(|s| s.sessions.keys().cloned().collect::<Vec<_>>());
    assert_eq!(sessions_before.len(), 1, "one session");
    sigkill(pid);
    eventually(
        "the listener process was restarted and holds a new session",
        || async {
            let restarted =
                listener_process(&h).is_some_and(|(u, p, r)| u == uid && p != pid && r > restarts);
            let new_session = h
                .github
                .with_state(|s| s.sessions.len() == 1 && !s.sessions.contains_key(&sessions_before[0]));
            restarted && new_session && listener_ready(&h, RUNNER_SET).await
        },
    )
    .await;
    // The dead session was closed by its successor, or refused it with 409 until it was gone.
    let calls = h.github.calls();
    let closed = calls
        .iter()
        .any(|c| c.method == "DELETE" && c.path.ends_with(&format!("/sessions/{}", sessions_before[0])));
    let conflicts = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/sessions") && c.status == 409)
        .count();
    assert!(
        closed || conflicts > 0,
        "the new listener dealt with the dead session (closed it or survived its 409)"
    );
    wait_jobs(&h, &jobs).await;
    let peaks = sampler.stop().await;
    no_duplicates_and_a_prompt_refill(&h, &jobs, &peaks);
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_mid_burst() {
    let mut h = Harness::start("kill-controller").await;
    apply_sets_and_wait_for_listener(&h, 0, 10).await;
    let sampler = PeakSampler::start(h.api::<EphemeralRunner>(), h.github.clone());
    let jobs = queue_jobs(&h, 30, Duration::from_secs(2));
    until_completed(&h, &jobs, 5).await;

    h.kill_controller().await;
    // Runners keep running their jobs while the controller is down.
    let done = completed(&h, &jobs);
    until_completed(&h, &jobs, done + 1).await;
    h.restart_controller();

    wait_jobs(&h, &jobs).await;
    let peaks = sampler.stop().await;
    no_duplicates_and_a_prompt_refill(&h, &jobs, &peaks);
    eventually("back to zero runners", || async {
        live_runners(&h).await.is_empty()
    })
    .await;
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_faults_during_a_burst() {
    let h = Harness::start("github-faults").await;
    apply_sets_and_wait_for_listener(&h, 0, 10).await;
    let mut all_jobs = Vec::new();

    // 5xx on a fifth of all calls while jobs run.
    let jobs = queue_jobs(&h, 20, JOB);
    all_jobs.extend(&jobs);
    h.github.set_server_error_rate(0.2);
    until_completed(&h, &jobs, 8).await;
    h.github.set_server_error_rate(0.0);

    // 429 with Retry-After on the message queue, then truncated bodies anywhere.
    let rate_limited_at = Instant::now();
    h.github.inject(
        FaultKind::RateLimit { retry_after_secs: 2 },
        2,
        Some("/broker/scalesets/message"),
    );
    h.github.inject(FaultKind::Truncate, 3, None);
    until_completed(&h, &jobs, 14).await;

    // Tokens expire and the session is evicted mid-burst.
    h.github.expire_admin_tokens();
    h.github.expire_message_queue_tokens();
    until_completed(&h, &jobs, 17).await;
    let session = h.github.with_state(|s| s.sessions.keys().next().cloned());
    h.github.evict_sessions(None);
    wait_jobs(&h, &jobs).await;
    eventually("the listener holds a new session after the eviction", || async {
        let now = h.github.with_state(|s| s.sessions.keys().next().cloned());
        now.is_some() && now != session && listener_ready(&h, RUNNER_SET).await
    })
    .await;

    // Each fault was met and survived.
    let calls = h.github.calls();
    assert!(calls.iter().any(|c| c.status == 500), "5xx answers were sent");
    let queue_calls: Vec<_> = calls
        .iter()
        .filter(|c| c.path.starts_with("/broker/scalesets/message"))
        .filter(|c| c.at >= std::time::SystemTime::now() - rate_limited_at.elapsed())
        .collect();
    let first_429 = queue_calls
        .iter()
        .position(|c| c.status == 429)
        .unwrap_or_else(|| {
            let statuses: Vec<(u16, &str)> = calls.iter().map(|c| (c.status, c.path.as_str())).collect();
            panic!("a message-queue call was rate limited; calls: {statuses:?}")
        });
    let next = queue_calls[first_429 + 1..]
        .first()
        .expect("the listener called the message queue again after the 429");
    let waited = next
        .at
        .duration_since(queue_calls[first_429].at)
        .unwrap_or_default();
    assert!(
        waited >= Duration::from_millis(1900),
        "the listener honoured Retry-After: 2 (waited {waited:?})"
    );

    // The scale set is deleted on GitHub while idle (as the dormant-set cleanup does); the
    // controller registers it again and jobs run on the new one.
    eventually("no runner is busy", || async { busy_runner_pods(&h).is_empty() }).await;
    let old = scale_set_id(&h).expect("registered");
    h.github
        .delete_scale_set_server_side(old)
        .expect("an idle scale set can be deleted");
    eventually(
        "the scale set is registered again and the listener holds its session",
        || async {
            let new = scale_set_id(&h).filter(|id| *id != old);
            new.is_some_and(|id| {
                h.github
                    .with_state(|s| s.sessions.values().any(|x| x.scale_set_id == id))
            }) && listener_ready(&h, RUNNER_SET).await
        },
    )
    .await;
    let jobs = queue_jobs(&h, 5, JOB);
    all_jobs.extend(&jobs);
    wait_jobs(&h, &jobs).await;
    teardown_and_check(h, Expect::jobs(&all_jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_faults_during_a_burst() {
    // Through the proxy, so the faults reach the binaries on a real cluster too.
    let h = Harness::start_with(
        "kube-faults",
        HarnessOptions {
            kube_fault_proxy: true,
            ..HarnessOptions::default()
        },
    )
    .await;
    let faults = h.kube_faults().cloned().expect("the proxy injects faults");
    apply_sets_and_wait_for_listener(&h, 0, 10).await;
    let jobs = queue_jobs(&h, 30, JOB);
    faults.set(FaultConfig {
        write_conflict_rate: 0.1,
        write_error_rate: 0.05,
        ..FaultConfig::default()
    });
    // Watches drop every few completed jobs while writes fail.
    for n in [5, 10, 15, 20] {
        until_completed(&h, &jobs, n).await;
        faults.drop_watches();
    }
    wait_jobs_done(&h, &jobs, Duration::from_secs(240)).await;
    let failed_writes = faults
        .requests()
        .iter()
        .filter(|r| matches!(r.code, 409 | 500))
        .count();
    faults.set(FaultConfig::default());
    assert!(failed_writes > 10, "writes were refused ({failed_writes})");
    eventually("back to zero runners", || async {
        live_runners(&h).await.is_empty()
    })
    .await;
    teardown_and_check(h, Expect::jobs(&jobs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_pod_failures() {
    let h =
        Harness::start_with_controller_env("pod-failures", &[("RSSC_PENDING_TIMEOUT_SECONDS", "10")]).await;
    let nodes = || h.nodes.as_ref().unwrap();
    apply_sets_and_wait_for_listener(&h, 2, 6).await;
    eventually("two idle registered runners", || async {
        idle_runner_pods(&h).len() == 2
    })
    .await;

    // Crash before the job: the Pod is retried (same runner, same JIT configuration), the
    // second time after the backoff.
    let idle = idle_runner_pods(&h);
    let victim = idle[0].clone();
    for attempt in 1..=2 {
        let crashed_at = Instant::now();
        nodes().crash(&h.namespace, &victim).await.unwrap();
        eventually(
            "the crashed runner's Pod is retried and registers again",
            || async {
                runner_failures(&h, &victim).await == attempt && idle_runner_pods(&h).contains(&victim)
            },
        )
        .await;
        if attempt == 2 {
            assert!(
                crashed_at.elapsed() >= Duration::from_secs(4),
                "the second retry waited for the backoff (took {:?})",
                crashed_at.elapsed()
            );
        }
    }

    // OOM kill and eviction of idle runners: replaced by new runners.
    let idle = idle_runner_pods(&h);
    nodes().oom_kill(&h.namespace, &idle[0]).await.unwrap();
    nodes().evict(&h.namespace, &idle[1]).await.unwrap();
    eventually("the killed and evicted runners are replaced", || async {
        let now = idle_runner_pods(&h);
        now.len() == 2 && !now.contains(&idle[0]) && !now.contains(&idle[1])
    })
    .await;

    // Crash, OOM kill and eviction after the job started: each job fails (GitHub does not run
    // it again) and its runner is replaced.
    let long = queue_jobs(&h, 3, Duration::from_secs(120));
    eventually("three runners run the long jobs", || async {
        busy_runner_pods(&h).len() == 3
    })
    .await;
    let busy = busy_runner_pods(&h);
    nodes().crash(&h.namespace, &busy[0].0).await.unwrap();
    nodes().oom_kill(&h.namespace, &busy[1].0).await.unwrap();
    nodes().evict(&h.namespace, &busy[2].0).await.unwrap();
    wait_jobs_done(&h, &long, WAIT).await;
    eventually("the runners that lost their jobs are gone", || async {
        let names: Vec<String> = live_runners(&h)
            .await
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect();
        busy.iter().all(|(pod, _)| !names.contains(pod))
    })
    .await;
    let mut jobs = queue_jobs(&h, 3, JOB);
    wait_jobs(&h, &jobs).await;

    // A Pod stuck Pending (no node matches) is replaced after the pending timeout.
    let stuck = json!({"nodeSelector": {"sim.rssc.dev/node": "true", "sim.rssc.dev/pool": "none"}});
    h.apply::<RunnerSet>(runner_set(RUNNER_SET, stuck)).await;
    eventually(
        "the idle runners are replaced by Pods that stay Pending",
        || async {
            let runners = live_runners(&h).await;
            runners.len() == 2
                && runners
                    .iter()
                    .all(|r| r.status.as_ref().and_then(|s| s.job.as_ref()).is_none())
                && pending_runner_pods(&h).await.len() == 2
        },
    )
    .await;
    let pending = pending_runner_pods(&h).await;
    eventually(
        "the Pending runners are replaced after the pending timeout",
        || async {
            let names: Vec<String> = live_runners(&h)
                .await
                .into_iter()
                .filter_map(|r| r.metadata.name)
                .collect();
            !names.is_empty() && pending.iter().all(|p| !names.contains(p))
        },
    )
    .await;
    h.apply::<RunnerSet>(runner_set(RUNNER_SET, json!({}))).await;
    let more = queue_jobs(&h, 2, JOB);
    wait_jobs(&h, &more).await;
    jobs.extend(more);

    let mut expect = Expect::jobs(&jobs);
    expect.failed_jobs = long;
    teardown_and_check(h, expect).await;
}

/// Pod failures recorded on the runner `name`.
async fn runner_failures(h: &Harness, name: &str) -> usize {
    h.api::<EphemeralRunner>()
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|r| r.status)
        .map_or(0, |s| s.failures.len())
}

/// Runner Pods in phase Pending.
async fn pending_runner_pods(h: &Harness) -> Vec<String> {
    h.api::<Pod>()
        .list(&ListParams::default().labels("scaleset.actions.github.com/component=runner"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
        .filter_map(|p| p.metadata.name)
        .collect()
}
