//! The final report: built from what the run recorded, rendered as text or JSON (pure).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::{endpoints::endpoint, memory::Peaks, stats::Spread};

/// A job as the fake GitHub recorded it, with the runner that ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// `runnerRequestId`.
    pub id: i64,
    /// Queued.
    pub queued: SystemTime,
    /// First acquired by the listener (from the fake's call record).
    pub acquired: Option<SystemTime>,
    /// A runner took it.
    pub started: Option<SystemTime>,
    /// It finished (or was given up).
    pub completed: bool,
    /// `succeeded`, `failed`, `canceled`.
    pub result: Option<String>,
    /// How many runners ran it.
    pub run_count: u32,
    /// The EphemeralRunner (and Pod) that ran it.
    pub runner: Option<String>,
}

/// When the sandbox first saw a runner's objects (watch events, millisecond precision, unlike
/// `creationTimestamp`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerObjects {
    /// The EphemeralRunner.
    pub runner: Option<SystemTime>,
    /// Its JIT config Secret.
    pub secret: Option<SystemTime>,
    /// Its Pod.
    pub pod: Option<SystemTime>,
}

/// Everything the run recorded.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    /// Scenario name.
    pub scenario: String,
    /// Cargo profile of the controller and listener binaries (memory and speed depend on it).
    pub profile: String,
    /// Jobs the scenario queues.
    pub jobs_planned: usize,
    /// From the first job queued to the end.
    pub elapsed: Duration,
    /// The jobs.
    pub jobs: Vec<JobRecord>,
    /// Runner objects by EphemeralRunner name.
    pub runners: BTreeMap<String, RunnerObjects>,
    /// GitHub calls during the scenario: (method, path).
    pub github_calls: Vec<(String, String)>,
    /// Kubernetes API requests during the scenario by (verb, resource); `None` on a real cluster,
    /// where there is no request log.
    pub kube_requests: Option<BTreeMap<(String, String), usize>>,
    /// Peak memory.
    pub memory: Peaks,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Cargo profile of the controller and listener binaries.
    pub profile: String,
    /// Seconds from the scenario's start to its end.
    pub elapsed_seconds: f64,
    /// Job counts.
    pub jobs: JobCounts,
    /// Queued → a runner took the job.
    pub job_wait: Option<Spread>,
    /// How runners came up.
    pub startup_path: StartupPath,
    /// GitHub API calls by endpoint.
    pub github_calls: GitHubCalls,
    /// Kubernetes API writes; `None` on a real cluster.
    pub kubernetes_writes: Option<KubeWrites>,
    /// Peak resident memory.
    pub peak_memory: Peaks,
    /// Every job's timeline, for your own analysis (JSON only).
    pub job_timelines: Vec<JobTimeline>,
}

/// One job's way, in milliseconds since the first job was queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobTimeline {
    /// `runnerRequestId`.
    pub id: i64,
    /// The EphemeralRunner that ran it.
    pub runner: Option<String>,
    /// Queued.
    pub queued_ms: Option<i64>,
    /// Acquired by the listener.
    pub acquired_ms: Option<i64>,
    /// Its runner's EphemeralRunner seen.
    pub runner_created_ms: Option<i64>,
    /// Its runner's JIT Secret seen.
    pub secret_created_ms: Option<i64>,
    /// Its runner's Pod seen.
    pub pod_created_ms: Option<i64>,
    /// The runner took it.
    pub started_ms: Option<i64>,
}

/// Job counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Jobs the scenario queues.
    pub planned: usize,
    /// Jobs queued.
    pub queued: usize,
    /// Jobs completed (any result).
    pub completed: usize,
    /// Jobs a runner ran to success.
    pub succeeded: usize,
    /// Jobs that ran on more than one runner (should be 0).
    pub ran_more_than_once: usize,
}

/// The stages from a job acquired to its runner's Pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StartupPath {
    /// The listener acquired the job → the EphemeralRunner that ran it appeared (jobs whose
    /// runner appeared later than the acquisition).
    pub acquired_to_runner: Option<Spread>,
    /// Jobs whose runner existed before the job was acquired (idle headroom, or a runner made
    /// for an earlier job that another runner took).
    pub runner_already_there: usize,
    /// EphemeralRunner → its JIT Secret.
    pub runner_to_secret: Option<Spread>,
    /// JIT Secret → its Pod.
    pub secret_to_pod: Option<Spread>,
    /// Pod → the runner took its job (jobs whose runner came after they were acquired).
    pub pod_to_job_started: Option<Spread>,
}

/// GitHub API calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GitHubCalls {
    /// All calls.
    pub total: usize,
    /// All calls per completed job.
    pub per_job: f64,
    /// By endpoint, most called first.
    pub by_endpoint: Vec<EndpointCalls>,
}

/// Calls of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointCalls {
    /// `METHOD /path` with ids as `{id}`.
    pub endpoint: String,
    /// Calls.
    pub calls: usize,
    /// Calls per completed job.
    pub per_job: f64,
}

/// Kubernetes API writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubeWrites {
    /// EphemeralRunners created.
    pub runners: usize,
    /// Writes by rssc to runner-related resources.
    pub total: usize,
    /// `total` per runner.
    pub per_runner: f64,
    /// Those writes by verb and resource, most first.
    pub by_resource: Vec<ResourceWrites>,
    /// Other writes (the node simulator's kubelet and scheduler writes, leader election and
    /// node leases), not charged to runners.
    pub other: Vec<ResourceWrites>,
}

/// Writes of one verb on one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceWrites {
    /// `create`, `patch`, `update`, `delete`.
    pub verb: String,
    /// Plural resource, with `/status` for the subresource.
    pub resource: String,
    /// Writes.
    pub writes: usize,
    /// Writes per runner.
    pub per_runner: f64,
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
/// What rssc writes for its runners; anything else is not charged to them.
const RUNNER_RESOURCES: [&str; 7] = [
    "ephemeralrunners",
    "ephemeralrunners/status",
    "ephemeralrunnersets",
    "ephemeralrunnersets/status",
    "secrets",
    "pods",
    "events",
];

/// Builds the report.
pub fn build(data: &RunData) -> Report {
    let completed = data.jobs.iter().filter(|j| j.completed).count();
    let jobs = JobCounts {
        planned: data.jobs_planned,
        queued: data.jobs.len(),
        completed,
        succeeded: data
            .jobs
            .iter()
            .filter(|j| j.completed && j.result.as_deref() == Some("succeeded"))
            .count(),
        ran_more_than_once: data.jobs.iter().filter(|j| j.run_count > 1).count(),
    };
    let job_wait: Vec<u64> = data
        .jobs
        .iter()
        .filter_map(|j| between(j.queued, j.started?))
        .collect();
    Report {
        scenario: data.scenario.clone(),
        profile: data.profile.clone(),
        elapsed_seconds: round(data.elapsed.as_secs_f64(), 1),
        jobs,
        job_wait: Spread::of(&job_wait),
        startup_path: startup_path(data),
        github_calls: github_calls(&data.github_calls, completed),
        kubernetes_writes: data.kube_requests.as_ref().map(|counts| {
            kube_writes(
                counts,
                data.runners.values().filter(|r| r.runner.is_some()).count(),
            )
        }),
        peak_memory: data.memory,
        job_timelines: timelines(data),
    }
}

fn timelines(data: &RunData) -> Vec<JobTimeline> {
    let Some(origin) = data.jobs.iter().map(|j| j.queued).min() else {
        return Vec::new();
    };
    let at = |t: Option<SystemTime>| {
        t.map(|t| match t.duration_since(origin) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        })
    };
    data.jobs
        .iter()
        .map(|j| {
            let seen = j
                .runner
                .as_ref()
                .and_then(|r| data.runners.get(r))
                .copied()
                .unwrap_or_default();
            JobTimeline {
                id: j.id,
                runner: j.runner.clone(),
                queued_ms: at(Some(j.queued)),
                acquired_ms: at(j.acquired),
                runner_created_ms: at(seen.runner),
                secret_created_ms: at(seen.secret),
                pod_created_ms: at(seen.pod),
                started_ms: at(j.started),
            }
        })
        .collect()
}

fn startup_path(data: &RunData) -> StartupPath {
    let mut acquired_to_runner = Vec::new();
    let mut runner_already_there = 0;
    let mut pod_to_job_started = Vec::new();
    for job in &data.jobs {
        let Some(seen) = job.runner.as_ref().and_then(|r| data.runners.get(r)) else {
            continue;
        };
        let (Some(acquired), Some(runner)) = (job.acquired, seen.runner) else {
            continue;
        };
        match between(acquired, runner) {
            Some(ms) => acquired_to_runner.push(ms),
            None => {
                // Its wait was idle time, not startup.
                runner_already_there += 1;
                continue;
            }
        }
        if let (Some(pod), Some(started)) = (seen.pod, job.started) {
            pod_to_job_started.extend(between(pod, started));
        }
    }
    let stage = |from: fn(&RunnerObjects) -> Option<SystemTime>,
                 to: fn(&RunnerObjects) -> Option<SystemTime>| {
        let samples: Vec<u64> = data
            .runners
            .values()
            .filter_map(|r| between(from(r)?, to(r)?))
            .collect();
        Spread::of(&samples)
    };
    StartupPath {
        acquired_to_runner: Spread::of(&acquired_to_runner),
        runner_already_there,
        runner_to_secret: stage(|r| r.runner, |r| r.secret),
        secret_to_pod: stage(|r| r.secret, |r| r.pod),
        pod_to_job_started: Spread::of(&pod_to_job_started),
    }
}

fn github_calls(calls: &[(String, String)], jobs: usize) -> GitHubCalls {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for (method, path) in calls {
        *by.entry(endpoint(method, path)).or_default() += 1;
    }
    let mut by_endpoint: Vec<EndpointCalls> = by
        .into_iter()
        .map(|(endpoint, calls)| EndpointCalls {
            endpoint,
            calls,
            per_job: ratio(calls, jobs),
        })
        .collect();
    by_endpoint.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.endpoint.cmp(&b.endpoint)));
    GitHubCalls {
        total: calls.len(),
        per_job: ratio(calls.len(), jobs),
        by_endpoint,
    }
}

fn kube_writes(counts: &BTreeMap<(String, String), usize>, runners: usize) -> KubeWrites {
    let (mut by_resource, mut other): (Vec<ResourceWrites>, Vec<ResourceWrites>) = counts
        .iter()
        .filter(|((verb, _), n)| WRITE_VERBS.contains(&verb.as_str()) && **n > 0)
        .map(|((verb, resource), writes)| ResourceWrites {
            verb: verb.clone(),
            resource: resource.clone(),
            writes: *writes,
            per_runner: ratio(*writes, runners),
        })
        .partition(|w| RUNNER_RESOURCES.contains(&w.resource.as_str()));
    for list in [&mut by_resource, &mut other] {
        list.sort_by(|a, b| b.writes.cmp(&a.writes).then_with(|| a.resource.cmp(&b.resource)));
    }
    let total = by_resource.iter().map(|w| w.writes).sum();
    KubeWrites {
        runners,
        total,
        per_runner: ratio(total, runners),
        by_resource,
        other,
    }
}

/// Milliseconds from `from` to `to`, `None` if `to` is earlier.
fn between(from: SystemTime, to: SystemTime) -> Option<u64> {
    to.duration_since(from)
        .ok()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        round(n as f64 / d as f64, 2)
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The report as text for the terminal.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let j = &r.jobs;
    let _ = writeln!(
        out,
        "rssc sandbox report: scenario {}, {:.1} s, {} binaries\n",
        r.scenario, r.elapsed_seconds, r.profile
    );
    let _ = writeln!(
        out,
        "Jobs completed: {} of {} ({} succeeded, {} ran more than once)",
        j.completed, j.planned, j.succeeded, j.ran_more_than_once
    );
    let _ = writeln!(out, "\n{:<40}{:>9}{:>9}{:>9}{:>7}", "", "p50", "p95", "max", "n");
    spread_line(&mut out, "Job wait (queued → runner started)", r.job_wait);
    let _ = writeln!(out, "Runner startup path:");
    let p = &r.startup_path;
    spread_line(&mut out, "  job acquired → EphemeralRunner", p.acquired_to_runner);
    spread_line(&mut out, "  EphemeralRunner → JIT Secret", p.runner_to_secret);
    spread_line(&mut out, "  JIT Secret → Pod", p.secret_to_pod);
    spread_line(&mut out, "  Pod → job started", p.pod_to_job_started);
    if p.runner_already_there > 0 {
        let _ = writeln!(
            out,
            "  ({} jobs found their runner already there before they were acquired)",
            p.runner_already_there
        );
    }
    let g = &r.github_calls;
    let _ = writeln!(out, "\nGitHub API calls: {} ({} per job)", g.total, g.per_job);
    for e in &g.by_endpoint {
        let _ = writeln!(out, "  {:>6} {:>8.2}/job  {}", e.calls, e.per_job, e.endpoint);
    }
    match &r.kubernetes_writes {
        Some(k) => {
            let _ = writeln!(
                out,
                "\nKubernetes API writes for runners: {} for {} runners ({} per runner)",
                k.total, k.runners, k.per_runner
            );
            for w in &k.by_resource {
                let _ = writeln!(
                    out,
                    "  {:>6} {:>8.2}/runner  {} {}",
                    w.writes, w.per_runner, w.verb, w.resource
                );
            }
            let other: Vec<String> = k
                .other
                .iter()
                .map(|w| format!("{} {} {}", w.writes, w.verb, w.resource))
                .collect();
            if !other.is_empty() {
                let _ = writeln!(out, "  not charged to runners: {}", other.join(", "));
            }
        }
        None => {
            let _ = writeln!(out, "\nKubernetes API writes: not counted on a real cluster");
        }
    }
    let mib = |k: Option<u64>| {
        k.map_or_else(
            || "not measured".to_owned(),
            |k| format!("{:.1} MiB", k as f64 / 1024.0),
        )
    };
    let _ = writeln!(
        out,
        "\nPeak memory (VmHWM): controller {}, listener {}",
        mib(r.peak_memory.controller_kib),
        mib(r.peak_memory.listener_kib)
    );
    out
}

fn spread_line(out: &mut String, label: &str, spread: Option<Spread>) {
    let s = |ms: u64| format!("{:.2} s", ms as f64 / 1000.0);
    let _ = match spread {
        Some(x) => writeln!(
            out,
            "{label:<40}{:>9}{:>9}{:>9}{:>7}",
            s(x.p50_ms),
            s(x.p95_ms),
            s(x.max_ms),
            x.count
        ),
        None => writeln!(out, "{label:<40}{:>9}", "-"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms)
    }

    fn job(id: i64, runner: &str, acquired: u64, started: u64) -> JobRecord {
        JobRecord {
            id,
            queued: t(0),
            acquired: Some(t(acquired)),
            started: Some(t(started)),
            completed: true,
            result: Some("succeeded".into()),
            run_count: 1,
            runner: Some(runner.into()),
        }
    }

    fn data() -> RunData {
        let seen = |er, secret, pod| RunnerObjects {
            runner: Some(t(er)),
            secret: Some(t(secret)),
            pod: Some(t(pod)),
        };
        RunData {
            scenario: "burst".into(),
            profile: "release".into(),
            jobs_planned: 3,
            elapsed: Duration::from_millis(12_345),
            jobs: vec![
                job(1, "r-a", 100, 1_000),
                job(2, "r-b", 100, 2_000),
                JobRecord {
                    completed: false,
                    started: None,
                    result: None,
                    run_count: 0,
                    runner: None,
                    ..job(3, "", 100, 0)
                },
            ],
            runners: [
                ("r-a".to_owned(), seen(300, 350, 400)),
                ("r-b".to_owned(), seen(50, 60, 80)),
                (
                    "r-c".to_owned(),
                    RunnerObjects {
                        runner: Some(t(900)),
                        ..Default::default()
                    },
                ),
            ]
            .into(),
            github_calls: vec![
                ("GET".into(), "/broker/scalesets/message".into()),
                ("GET".into(), "/broker/scalesets/message".into()),
                (
                    "POST".into(),
                    "/_services/pipelines/_apis/runtime/runnerscalesets/5/acquirejobs".into(),
                ),
            ],
            kube_requests: Some(
                [
                    (("create".to_owned(), "ephemeralrunners".to_owned()), 3),
                    (("create".to_owned(), "secrets".to_owned()), 2),
                    (("patch".to_owned(), "pods/status".to_owned()), 9),
                    (("list".to_owned(), "pods".to_owned()), 50),
                ]
                .into(),
            ),
            memory: Peaks {
                controller_kib: Some(20_480),
                listener_kib: Some(8_192),
            },
        }
    }

    #[test]
    fn jobs_and_wait_times() {
        let r = build(&data());
        assert_eq!(
            r.jobs,
            JobCounts {
                planned: 3,
                queued: 3,
                completed: 2,
                succeeded: 2,
                ran_more_than_once: 0
            }
        );
        let wait = r.job_wait.unwrap();
        assert_eq!((wait.count, wait.p50_ms, wait.max_ms), (2, 1_000, 2_000));
        assert_eq!(r.elapsed_seconds, 12.3);
    }

    #[test]
    fn the_startup_path_follows_each_job_to_its_runner() {
        let p = build(&data()).startup_path;
        assert_eq!(
            p.acquired_to_runner.unwrap().max_ms,
            200,
            "job 1: acquired 100, runner 300"
        );
        assert_eq!(
            p.runner_already_there, 1,
            "job 2's runner came before it was acquired"
        );
        assert_eq!(p.runner_to_secret.unwrap().count, 2, "r-c has no Secret yet");
        assert_eq!(p.secret_to_pod.unwrap().max_ms, 50);
        let pod = p.pod_to_job_started.unwrap();
        assert_eq!(
            (pod.count, pod.max_ms),
            (1, 600),
            "job 2's runner was there already"
        );
    }

    #[test]
    fn github_calls_group_by_endpoint_per_completed_job() {
        let g = build(&data()).github_calls;
        assert_eq!((g.total, g.per_job), (3, 1.5));
        assert_eq!(g.by_endpoint[0].endpoint, "GET /broker/scalesets/message");
        assert_eq!((g.by_endpoint[0].calls, g.by_endpoint[0].per_job), (2, 1.0));
        assert_eq!(
            g.by_endpoint[1].endpoint,
            "POST /_apis/runtime/runnerscalesets/{id}/acquirejobs"
        );
    }

    #[test]
    fn only_rssc_runner_writes_are_charged_to_runners() {
        let k = build(&data()).kubernetes_writes.unwrap();
        assert_eq!((k.runners, k.total, k.per_runner), (3, 5, 1.67));
        assert_eq!(k.by_resource.len(), 2);
        assert_eq!(k.other.len(), 1);
        assert_eq!(k.other[0].resource, "pods/status");
        let mut real_cluster = data();
        real_cluster.kube_requests = None;
        assert_eq!(build(&real_cluster).kubernetes_writes, None);
    }

    #[test]
    fn the_text_has_every_section() {
        let text = render(&build(&data()));
        for needle in [
            "scenario burst, 12.3 s, release binaries",
            "Jobs completed: 2 of 3",
            "Job wait (queued → runner started)",
            "JIT Secret → Pod",
            "1 jobs found their runner already there",
            "GitHub API calls: 3 (1.5 per job)",
            "for 3 runners (1.67 per runner)",
            "not charged to runners: 9 patch pods/status",
            "controller 20.0 MiB, listener 8.0 MiB",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn the_json_has_the_figures() {
        let json = serde_json::to_value(build(&data())).unwrap();
        assert_eq!(json["jobs"]["completed"], 2);
        assert_eq!(json["job_wait"]["p95_ms"], 2_000);
        assert_eq!(json["peak_memory"]["listener_kib"], 8_192);
        assert_eq!(
            json["kubernetes_writes"]["by_resource"][0]["resource"],
            "ephemeralrunners"
        );
        let first = &json["job_timelines"][0];
        assert_eq!(first["runner"], "r-a");
        assert_eq!(
            [
                &first["queued_ms"],
                &first["acquired_ms"],
                &first["pod_created_ms"],
                &first["started_ms"]
            ],
            [0, 100, 400, 1_000]
        );
        assert_eq!(json["job_timelines"][2]["started_ms"], serde_json::Value::Null);
    }
}
