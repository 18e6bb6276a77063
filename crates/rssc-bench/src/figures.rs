//! The figures of one run, computed from what the run recorded, and their medians over runs
//! (pure).

use std::{collections::BTreeMap, time::SystemTime};

use rssc_e2e::otlp::ReceivedSpan;
use rssc_sandbox::{report::Report, stats::percentile};

/// Named figures of one run (or medians over runs); names are the `keys` constants, plus
/// `github.<endpoint>`, `kube.<verb> <resource>` and `span.<name>.*` breakdowns.
pub type Figures = BTreeMap<String, f64>;

/// Names of the figures.
pub mod keys {
    /// Jobs queued.
    pub const JOBS: &str = "jobs";
    /// Jobs completed.
    pub const JOBS_COMPLETED: &str = "jobs_completed";
    /// Jobs a runner ran to success.
    pub const JOBS_SUCCEEDED: &str = "jobs_succeeded";
    /// Jobs that ran on more than one runner (should be 0).
    pub const JOBS_RAN_MORE_THAN_ONCE: &str = "jobs_ran_more_than_once";
    /// EphemeralRunners created.
    pub const RUNNERS: &str = "runners_created";
    /// EphemeralRunners still there when the run ended.
    pub const RUNNERS_LEFT: &str = "runners_left";
    /// 1 when the run hit its time limit before every EphemeralRunner was gone.
    pub const TIMED_OUT: &str = "timed_out";
    /// First job queued → the last of `jobs` runner Pods created, seconds.
    pub const PODS_ALL_CREATED_S: &str = "pods_all_created_s";
    /// Job acquired → its runner's Pod created, median, ms.
    pub const ACQUIRED_TO_POD_P50: &str = "acquired_to_pod_p50_ms";
    /// Job acquired → its runner's Pod created, 99th percentile, ms.
    pub const ACQUIRED_TO_POD_P99: &str = "acquired_to_pod_p99_ms";
    /// The runner finished its job → its EphemeralRunner gone, median, ms.
    pub const EXIT_TO_GONE_P50: &str = "exit_to_gone_p50_ms";
    /// The runner finished its job → its EphemeralRunner gone, 99th percentile, ms.
    pub const EXIT_TO_GONE_P99: &str = "exit_to_gone_p99_ms";
    /// GitHub calls per completed job, one-off setup calls excluded.
    pub const GITHUB_CALLS_PER_JOB: &str = "github_calls_per_job";
    /// Kubernetes writes to runner resources per EphemeralRunner.
    pub const KUBE_WRITES_PER_RUNNER: &str = "kube_writes_per_runner";
    /// Largest listener resident set before any job, MiB.
    pub const LISTENER_IDLE_MIB: &str = "listener_rss_idle_mib";
    /// Largest listener peak resident set over the run, MiB.
    pub const LISTENER_PEAK_MIB: &str = "listener_rss_peak_mib";
    /// Controller peak resident set over the run, MiB.
    pub const CONTROLLER_PEAK_MIB: &str = "controller_rss_peak_mib";
    /// Controller resident set a while after the last EphemeralRunner was gone (largest burst
    /// only), MiB.
    pub const CONTROLLER_SETTLED_MIB: &str = "controller_rss_settled_mib";
    /// Controller CPU time (user + system) per EphemeralRunner, ms.
    pub const CONTROLLER_CPU_MS_PER_RUNNER: &str = "controller_cpu_ms_per_runner";
    /// Jobs completed per second, first job queued → last job finished.
    pub const JOBS_PER_SECOND: &str = "jobs_per_second";
    /// First job queued → everything done and every EphemeralRunner gone, seconds.
    pub const ELAPSED_S: &str = "elapsed_s";
    /// First job queued → last job queued, seconds (0 when they are queued at once).
    pub const QUEUED_OVER_S: &str = "queued_over_s";
    /// Job acquired → its EphemeralRunner created, median, ms.
    pub const ACQUIRED_TO_RUNNER_P50: &str = "acquired_to_runner_p50_ms";
    /// EphemeralRunner → its JIT Secret, median, ms.
    pub const RUNNER_TO_SECRET_P50: &str = "runner_to_secret_p50_ms";
    /// JIT Secret → its Pod, median, ms.
    pub const SECRET_TO_POD_P50: &str = "secret_to_pod_p50_ms";
    /// Pod → the runner took its job, median, ms.
    pub const POD_TO_JOB_STARTED_P50: &str = "pod_to_job_started_p50_ms";
    /// EphemeralRunner created → its first reconcile started, median, ms.
    pub const RECONCILE_QUEUEING_P50: &str = "reconcile_queueing_p50_ms";
    /// EphemeralRunner created → its first reconcile started, 99th percentile, ms.
    pub const RECONCILE_QUEUEING_P99: &str = "reconcile_queueing_p99_ms";
    /// Secret + Pod pairs the test server took per second from a client like the controller's.
    pub const LIMIT_PAIRS_PER_SECOND: &str = "limit_pairs_per_second";
    /// Seconds the test server took for those pairs.
    pub const LIMIT_S: &str = "limit_s";
    /// Our burst's Pods per second as a fraction of the limit's pairs per second.
    pub const BURST_FRACTION_OF_LIMIT: &str = "burst_fraction_of_limit";
    /// Job acquired → Pod, median, had each job's Secret + Pod pair been made at the limit's
    /// rate from its acquisition, one pair after another, and nothing else done: ms.
    pub const ACQUIRED_TO_POD_FLOOR_P50: &str = "acquired_to_pod_floor_p50_ms";
}

/// GitHub endpoints called once per scale set or session rather than per job: tokens, runner
/// groups, the scale set itself and its message session (refreshes included).
pub fn is_setup_call(endpoint: &str) -> bool {
    const SETUP: [&str; 6] = [
        "/access_tokens",
        "/actions/runners/registration-token",
        "/actions/runner-registration",
        "/_apis/runtime/runnergroups",
        "/sessions",
        "/sessions/{id}",
    ];
    let path = endpoint.split_once(' ').map_or(endpoint, |(_, p)| p);
    SETUP.iter().any(|s| path.ends_with(s))
        || path.ends_with("/_apis/runtime/runnerscalesets")
        || path.ends_with("/_apis/runtime/runnerscalesets/{id}")
        || path.starts_with("/_apis/runtime/runnergroups")
}

/// What a run recorded besides the sandbox's report.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// When the first job was queued.
    pub origin: Option<SystemTime>,
    /// When the last job was queued.
    pub last_queued: Option<SystemTime>,
    /// When each runner Pod was first seen (every runner Pod, not only those that ran a job).
    pub pods_seen: Vec<SystemTime>,
    /// When each runner finished its job (the fake GitHub's finish time), by runner name.
    pub finished: BTreeMap<String, SystemTime>,
    /// When each EphemeralRunner was first seen, by name.
    pub runner_seen: BTreeMap<String, SystemTime>,
    /// When each EphemeralRunner's deletion was seen, by name.
    pub gone: BTreeMap<String, SystemTime>,
    /// The last job's finish time.
    pub last_finish: Option<SystemTime>,
    /// Largest listener `VmRSS` before any job, KiB.
    pub listener_idle_kib: Option<u64>,
    /// Largest listener `VmHWM`, KiB.
    pub listener_peak_kib: Option<u64>,
    /// Controller `VmHWM`, KiB.
    pub controller_peak_kib: Option<u64>,
    /// Controller CPU time over the scenario, ms.
    pub controller_cpu_ms: Option<f64>,
    /// Seconds from the first job queued to the end of the scenario.
    pub elapsed_s: f64,
    /// Spans the binaries exported.
    pub spans: Vec<ReceivedSpan>,
}

/// The figures of one run.
pub fn compute(report: &Report, extras: &Extras) -> Figures {
    let mut f = Figures::new();
    let jobs = report.jobs.queued;
    let completed = report.jobs.completed;
    f.insert(keys::JOBS.into(), jobs as f64);
    f.insert(keys::JOBS_COMPLETED.into(), completed as f64);
    f.insert(keys::JOBS_SUCCEEDED.into(), report.jobs.succeeded as f64);
    f.insert(
        keys::JOBS_RAN_MORE_THAN_ONCE.into(),
        report.jobs.ran_more_than_once as f64,
    );
    f.insert(keys::ELAPSED_S.into(), round(extras.elapsed_s, 2));
    let runners = report
        .kubernetes_writes
        .as_ref()
        .map_or(extras.runner_seen.len(), |k| k.runners);
    f.insert(keys::RUNNERS.into(), runners as f64);

    if let Some(origin) = extras.origin {
        if let Some(ms) = extras.last_queued.and_then(|t| ms_between(origin, t)) {
            f.insert(keys::QUEUED_OVER_S.into(), round(ms as f64 / 1000.0, 2));
        }
        let mut pods: Vec<u64> = extras
            .pods_seen
            .iter()
            .filter_map(|t| ms_between(origin, *t))
            .collect();
        pods.sort_unstable();
        if jobs > 0
            && let Some(ms) = pods.get(jobs - 1)
        {
            f.insert(keys::PODS_ALL_CREATED_S.into(), round(*ms as f64 / 1000.0, 2));
        }
        if let Some(last) = extras.last_finish.and_then(|t| ms_between(origin, t))
            && last > 0
        {
            f.insert(
                keys::JOBS_PER_SECOND.into(),
                round(completed as f64 * 1000.0 / last as f64, 2),
            );
        }
    }

    let acquired_to_pod: Vec<u64> = report
        .job_timelines
        .iter()
        .filter_map(|t| {
            let (acquired, runner, pod) = (t.acquired_ms?, t.runner_created_ms?, t.pod_created_ms?);
            // A runner that was there before the job was acquired did not start for it.
            (runner >= acquired).then(|| u64::try_from(pod - acquired).ok())?
        })
        .collect();
    spread_into(
        &mut f,
        &acquired_to_pod,
        keys::ACQUIRED_TO_POD_P50,
        keys::ACQUIRED_TO_POD_P99,
    );
    let exit_to_gone: Vec<u64> = extras
        .finished
        .iter()
        .filter_map(|(runner, finished)| ms_between(*finished, *extras.gone.get(runner)?))
        .collect();
    spread_into(
        &mut f,
        &exit_to_gone,
        keys::EXIT_TO_GONE_P50,
        keys::EXIT_TO_GONE_P99,
    );

    let mut steady = 0;
    for e in &report.github_calls.by_endpoint {
        if !is_setup_call(&e.endpoint) {
            steady += e.calls;
            f.insert(format!("github.{}", e.endpoint), ratio(e.calls, completed));
        }
    }
    f.insert(keys::GITHUB_CALLS_PER_JOB.into(), ratio(steady, completed));
    if let Some(k) = &report.kubernetes_writes {
        f.insert(keys::KUBE_WRITES_PER_RUNNER.into(), k.per_runner);
        for w in &k.by_resource {
            f.insert(format!("kube.{} {}", w.verb, w.resource), w.per_runner);
        }
    }

    let mib = |kib: Option<u64>| kib.map(|k| round(k as f64 / 1024.0, 1));
    for (key, value) in [
        (keys::LISTENER_IDLE_MIB, mib(extras.listener_idle_kib)),
        (keys::LISTENER_PEAK_MIB, mib(extras.listener_peak_kib)),
        (keys::CONTROLLER_PEAK_MIB, mib(extras.controller_peak_kib)),
        (
            keys::CONTROLLER_CPU_MS_PER_RUNNER,
            extras
                .controller_cpu_ms
                .filter(|_| runners > 0)
                .map(|ms| round(ms / runners as f64, 2)),
        ),
    ] {
        if let Some(v) = value {
            f.insert(key.into(), v);
        }
    }

    let p = &report.startup_path;
    for (key, spread) in [
        (keys::ACQUIRED_TO_RUNNER_P50, p.acquired_to_runner),
        (keys::RUNNER_TO_SECRET_P50, p.runner_to_secret),
        (keys::SECRET_TO_POD_P50, p.secret_to_pod),
        (keys::POD_TO_JOB_STARTED_P50, p.pod_to_job_started),
    ] {
        if let Some(s) = spread {
            f.insert(key.into(), s.p50_ms as f64);
        }
    }
    spans_into(&mut f, &extras.spans);
    let queueing = reconcile_queueing(&extras.spans, &extras.runner_seen);
    spread_into(
        &mut f,
        &queueing,
        keys::RECONCILE_QUEUEING_P50,
        keys::RECONCILE_QUEUEING_P99,
    );
    f
}

/// Adds the limit measurement: `pairs` Secret + Pod pairs took `seconds` from a client like the
/// controller's, our burst (Pods per second until the last Pod) as a fraction of that rate, and
/// the acquired → Pod median that rate allows for jobs acquired at `acquired_ms`.
pub fn add_limit(f: &mut Figures, pairs: usize, seconds: f64, acquired_ms: &[i64]) {
    if seconds <= 0.0 || pairs == 0 {
        return;
    }
    let limit_rate = pairs as f64 / seconds;
    f.insert(keys::LIMIT_S.into(), round(seconds, 2));
    f.insert(keys::LIMIT_PAIRS_PER_SECOND.into(), round(limit_rate, 1));
    if let Some(burst_s) = f.get(keys::PODS_ALL_CREATED_S).copied()
        && burst_s > 0.0
    {
        let our_rate = f.get(keys::JOBS).copied().unwrap_or(0.0) / burst_s;
        f.insert(
            keys::BURST_FRACTION_OF_LIMIT.into(),
            round(our_rate / limit_rate, 3),
        );
    }
    if let Some(floor) = floor_p50(acquired_ms, limit_rate) {
        f.insert(keys::ACQUIRED_TO_POD_FLOOR_P50.into(), round(floor, 0));
    }
}

/// The median wait, in ms, from each acquisition in `acquired_ms` to its pair, were pairs made
/// one after another at `pairs_per_second`, each as soon as its job was acquired and the pair
/// before it made: the queue a server at that rate alone would impose, whatever a controller
/// did. None without acquisitions.
fn floor_p50(acquired_ms: &[i64], pairs_per_second: f64) -> Option<f64> {
    if pairs_per_second <= 0.0 {
        return None;
    }
    let mut acquired = acquired_ms.to_vec();
    acquired.sort_unstable();
    let per_pair = 1000.0 / pairs_per_second;
    let mut done = f64::MIN;
    let mut waits: Vec<u64> = acquired
        .iter()
        .map(|&at| {
            let at = at as f64;
            done = done.max(at) + per_pair;
            (done - at).round() as u64
        })
        .collect();
    waits.sort_unstable();
    percentile(&waits, 50).map(|w| w as f64)
}

/// The name spans are grouped under: reconciles by the kind they reconcile.
fn span_group(span: &ReceivedSpan) -> String {
    match (span.name.as_str(), span.attributes.get("kind")) {
        ("reconcile", Some(kind)) => format!("reconcile {kind}"),
        (name, _) => name.to_owned(),
    }
}

/// `span.<group>.count`, `.p50_ms`, `.p99_ms` and `.total_s` for each span group.
fn spans_into(f: &mut Figures, spans: &[ReceivedSpan]) {
    let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in spans {
        let ms = s.end_ns.saturating_sub(s.start_ns) / 1_000_000;
        groups.entry(span_group(s)).or_default().push(ms);
    }
    for (group, mut samples) in groups {
        samples.sort_unstable();
        let total: u64 = samples.iter().sum();
        f.insert(format!("span.{group}.count"), samples.len() as f64);
        f.insert(format!("span.{group}.total_s"), round(total as f64 / 1000.0, 2));
        if let Some(p) = percentile(&samples, 50) {
            f.insert(format!("span.{group}.p50_ms"), p as f64);
        }
        if let Some(p) = percentile(&samples, 99) {
            f.insert(format!("span.{group}.p99_ms"), p as f64);
        }
    }
}

/// Per EphemeralRunner: first seen → the start of its first reconcile, ms.
fn reconcile_queueing(spans: &[ReceivedSpan], seen: &BTreeMap<String, SystemTime>) -> Vec<u64> {
    let mut first: BTreeMap<&str, u64> = BTreeMap::new();
    for s in spans {
        if s.name == "reconcile"
            && s.attributes.get("kind").map(String::as_str) == Some("EphemeralRunner")
            && let Some(object) = s.attributes.get("object")
        {
            let at = first.entry(object.as_str()).or_insert(s.start_ns);
            *at = (*at).min(s.start_ns);
        }
    }
    first
        .iter()
        .filter_map(|(object, start_ns)| {
            let seen_ns = seen
                .get(*object)?
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?
                .as_nanos();
            // The watch may see the object a little after the reconcile started: count that as 0.
            Some(u64::try_from(u128::from(*start_ns).saturating_sub(seen_ns) / 1_000_000).unwrap_or(u64::MAX))
        })
        .collect()
}

fn spread_into(f: &mut Figures, samples: &[u64], p50: &str, p99: &str) {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if let (Some(a), Some(b)) = (percentile(&sorted, 50), percentile(&sorted, 99)) {
        f.insert(p50.into(), a as f64);
        f.insert(p99.into(), b as f64);
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    })
}

/// Each figure's median over the runs that have it.
pub fn medians(runs: &[Figures]) -> Figures {
    let mut all: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (k, v) in run {
            all.entry(k.as_str()).or_default().push(*v);
        }
    }
    all.into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), round(median(&v)?, 2))))
        .collect()
}

/// Milliseconds from `from` to `to`; `None` when `to` is earlier.
fn ms_between(from: SystemTime, to: SystemTime) -> Option<u64> {
    to.duration_since(from)
        .ok()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        round(n as f64 / d as f64, 3)
    }
}

/// `x` rounded to `digits` decimals.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rssc_sandbox::report::{self, JobRecord, RunData, RunnerObjects};

    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn medians_take_the_middle_and_average_an_even_pair() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn medians_over_runs_use_only_the_runs_that_have_a_figure() {
        let runs: Vec<Figures> = vec![
            [("a".to_owned(), 1.0), ("b".to_owned(), 10.0)].into(),
            [("a".to_owned(), 3.0)].into(),
            [("a".to_owned(), 2.0), ("b".to_owned(), 20.0)].into(),
        ];
        let m = medians(&runs);
        assert_eq!(m["a"], 2.0);
        assert_eq!(m["b"], 15.0);
    }

    #[test]
    fn setup_calls_are_told_from_per_job_calls() {
        for setup in [
            "POST /api/v3/app/installations/{id}/access_tokens",
            "POST /api/v3/orgs/o/actions/runners/registration-token",
            "POST /api/v3/actions/runner-registration",
            "GET /_apis/runtime/runnergroups/",
            "GET /_apis/runtime/runnerscalesets",
            "PATCH /_apis/runtime/runnerscalesets/{id}",
            "POST /_apis/runtime/runnerscalesets/{id}/sessions",
            "PATCH /_apis/runtime/runnerscalesets/{id}/sessions/{id}",
        ] {
            assert!(is_setup_call(setup), "{setup}");
        }
        for per_job in [
            "GET /broker/scalesets/message",
            "DELETE /broker/scalesets/message/{id}",
            "POST /_apis/runtime/runnerscalesets/{id}/acquirejobs",
            "POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig",
            "DELETE /_apis/distributedtask/pools/{id}/agents/{id}",
        ] {
            assert!(!is_setup_call(per_job), "{per_job}");
        }
    }

    fn two_job_run() -> (Report, Extras) {
        let job = |id: i64, runner: &str, acquired: u64, started: u64| JobRecord {
            id,
            queued: at(0),
            acquired: Some(at(acquired)),
            started: Some(at(started)),
            completed: true,
            result: Some("succeeded".into()),
            run_count: 1,
            runner: Some(runner.into()),
        };
        let objects = |runner: u64, secret: u64, pod: u64| RunnerObjects {
            runner: Some(at(runner)),
            secret: Some(at(secret)),
            pod: Some(at(pod)),
        };
        let data = RunData {
            jobs_planned: 2,
            jobs: vec![job(1, "r1", 100, 900), job(2, "r2", 100, 1200)],
            runners: [
                ("r1".to_owned(), objects(150, 180, 200)),
                ("r2".to_owned(), objects(160, 300, 400)),
            ]
            .into(),
            github_calls: vec![
                ("POST".into(), "/_apis/runtime/runnerscalesets/1/sessions".into()),
                (
                    "POST".into(),
                    "/_apis/runtime/runnerscalesets/1/acquirejobs".into(),
                ),
                ("GET".into(), "/broker/scalesets/message".into()),
                (
                    "POST".into(),
                    "/_apis/runtime/runnerscalesets/1/generatejitconfig".into(),
                ),
                (
                    "POST".into(),
                    "/_apis/runtime/runnerscalesets/1/generatejitconfig".into(),
                ),
            ],
            kube_requests: Some(
                [
                    (("create".to_owned(), "pods".to_owned()), 2),
                    (("create".to_owned(), "secrets".to_owned()), 2),
                    (("get".to_owned(), "pods".to_owned()), 9),
                ]
                .into(),
            ),
            ..RunData::default()
        };
        let extras = Extras {
            origin: Some(at(0)),
            last_queued: Some(at(0)),
            pods_seen: vec![at(400), at(200)],
            finished: [("r1".to_owned(), at(2000)), ("r2".to_owned(), at(2500))].into(),
            runner_seen: [("r1".to_owned(), at(150)), ("r2".to_owned(), at(160))].into(),
            gone: [("r1".to_owned(), at(2300)), ("r2".to_owned(), at(3000))].into(),
            last_finish: Some(at(2500)),
            listener_idle_kib: Some(5 * 1024),
            listener_peak_kib: Some(7 * 1024),
            controller_peak_kib: Some(30 * 1024),
            controller_cpu_ms: Some(50.0),
            elapsed_s: 3.0,
            spans: vec![
                span("reconcile", "EphemeralRunner", "r1", 170, 190),
                span("pod.create", "", "", 190, 200),
            ],
        };
        (report::build(&data), extras)
    }

    fn span(name: &str, kind: &str, object: &str, start_ms: u64, end_ms: u64) -> ReceivedSpan {
        let ns = |t: SystemTime| {
            u64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos()).unwrap()
        };
        let mut attributes = BTreeMap::new();
        if !kind.is_empty() {
            attributes.insert("kind".to_owned(), kind.to_owned());
            attributes.insert("object".to_owned(), object.to_owned());
        }
        ReceivedSpan {
            service: "rssc-controller".into(),
            trace_id: String::new(),
            span_id: String::new(),
            parent_span_id: String::new(),
            name: name.into(),
            attributes,
            start_ns: ns(at(start_ms)),
            end_ns: ns(at(end_ms)),
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn a_run_gives_every_headline_figure() {
        let (report, extras) = two_job_run();
        let f = compute(&report, &extras);
        assert_eq!(f[keys::JOBS], 2.0);
        assert_eq!(f[keys::RUNNERS], 2.0);
        assert_eq!(f[keys::PODS_ALL_CREATED_S], 0.4, "the second Pod came 400 ms in");
        assert_eq!(f[keys::QUEUED_OVER_S], 0.0, "both jobs were queued at once");
        assert_eq!(f[keys::ACQUIRED_TO_POD_P50], 100.0);
        assert_eq!(f[keys::ACQUIRED_TO_POD_P99], 300.0);
        assert_eq!(f[keys::EXIT_TO_GONE_P50], 300.0);
        assert_eq!(f[keys::EXIT_TO_GONE_P99], 500.0);
        assert_eq!(
            f[keys::GITHUB_CALLS_PER_JOB],
            2.0,
            "the session call is setup; acquire, message and two JIT calls are not"
        );
        assert_eq!(
            f["github.POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig"],
            1.0
        );
        assert_eq!(f[keys::KUBE_WRITES_PER_RUNNER], 2.0, "reads are not writes");
        assert_eq!(f["kube.create pods"], 1.0);
        assert_eq!(f[keys::LISTENER_IDLE_MIB], 5.0);
        assert_eq!(f[keys::LISTENER_PEAK_MIB], 7.0);
        assert_eq!(f[keys::CONTROLLER_PEAK_MIB], 30.0);
        assert_eq!(f[keys::CONTROLLER_CPU_MS_PER_RUNNER], 25.0);
        assert_eq!(f[keys::JOBS_PER_SECOND], 0.8);
        assert_eq!(f[keys::RUNNER_TO_SECRET_P50], 30.0);
        assert_eq!(f["span.reconcile EphemeralRunner.p50_ms"], 20.0);
        assert_eq!(f["span.pod.create.count"], 1.0);
        assert_eq!(
            f[keys::RECONCILE_QUEUEING_P50],
            20.0,
            "r1 seen at 150, reconciled at 170"
        );
    }

    #[test]
    fn too_few_pods_leave_the_burst_figure_out() {
        let (report, mut extras) = two_job_run();
        extras.pods_seen.pop();
        assert!(!compute(&report, &extras).contains_key(keys::PODS_ALL_CREATED_S));
    }

    #[test]
    fn a_runner_there_before_its_job_was_acquired_is_not_startup_latency() {
        let (mut report, extras) = two_job_run();
        report.job_timelines[1].runner_created_ms = Some(50);
        let f = compute(&report, &extras);
        assert_eq!(f[keys::ACQUIRED_TO_POD_P99], 100.0);
    }

    #[test]
    fn the_burst_is_a_fraction_of_the_limit() {
        let mut f: Figures = [
            (keys::JOBS.to_owned(), 1000.0),
            (keys::PODS_ALL_CREATED_S.to_owned(), 20.0),
        ]
        .into();
        add_limit(&mut f, 1000, 5.0, &[]);
        assert_eq!(f[keys::LIMIT_PAIRS_PER_SECOND], 200.0);
        assert_eq!(
            f[keys::BURST_FRACTION_OF_LIMIT],
            0.25,
            "50 Pods/s against 200 pairs/s"
        );
        let mut none = Figures::new();
        add_limit(&mut none, 1000, 0.0, &[]);
        assert!(none.is_empty());
    }

    #[test]
    fn the_floor_is_the_queue_at_the_limit_from_each_acquisition() {
        let at_once = vec![0; 1000];
        assert_eq!(
            floor_p50(&at_once, 1000.0),
            Some(500.0),
            "the 500th of 1,000 pairs at 1,000 a second"
        );
        let one_a_second: Vec<i64> = (0..10).map(|i| i * 1000).collect();
        assert_eq!(
            floor_p50(&one_a_second, 1000.0),
            Some(1.0),
            "jobs slower than the server wait one pair each"
        );
        let two_waves: Vec<i64> = [vec![0; 10], vec![5_000; 10]].concat();
        assert_eq!(
            floor_p50(&two_waves, 100.0),
            Some(50.0),
            "a wave's queue does not carry into the next once it drained"
        );
        assert_eq!(floor_p50(&[], 100.0), None);
        assert_eq!(floor_p50(&at_once, 0.0), None);
    }
}
