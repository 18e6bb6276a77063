//! docs/benchmarks.md from a run: the fixed explanations around tables of the run's medians
//! (pure).

use std::fmt::Write as _;

use crate::{
    figures::{Figures, keys},
    plan::Kind,
    result::{BenchResult, CaseResult},
};

/// The explanations before the figures (how to run, what is measured).
const INTRO: &str = include_str!("page/intro.md");
/// The explanations after the figures (method details, changes made and their before/after).
const METHOD: &str = include_str!("page/method.md");

/// How a figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    /// At most this.
    AtMost(f64),
    /// No target; reported only.
    None,
}

impl Goal {
    fn verdict(self, value: Option<f64>) -> &'static str {
        match (self, value) {
            (_, None) => "not measured",
            (Self::None, Some(_)) => "–",
            (Self::AtMost(t), Some(v)) if v <= t => "met",
            (Self::AtMost(_), Some(_)) => "**missed**",
        }
    }
}

/// The page for `run`, whose JSON is at `json_path` (relative to the page).
pub fn page(run: &BenchResult, json_path: &str) -> String {
    let mut out = String::new();
    out.push_str(INTRO);
    latest(&mut out, run, json_path);
    targets(&mut out, run);
    growth(
        &mut out,
        run,
        Kind::Burst,
        "## Growth with the number of jobs",
        "jobs at once",
    );
    growth(
        &mut out,
        run,
        Kind::ScaleSets,
        "## Growth with the number of scale sets",
        "scale sets",
    );
    drain(&mut out, run);
    steady(&mut out, run);
    where_time_goes(&mut out, run);
    spread(&mut out, run);
    out.push_str(METHOD);
    out
}

fn latest(out: &mut String, run: &BenchResult, json_path: &str) {
    let m = &run.machine;
    let s = &run.settings;
    let _ = writeln!(out, "## Latest run\n");
    let _ = writeln!(
        out,
        "Run at {} in {:.0} s; every figure is the median of the runs listed per scenario \
         ([per-scenario runs](#each-run)); raw data: [`{json_path}`]({json_path}).\n",
        run.started_at, run.duration_s
    );
    let _ = writeln!(out, "| Machine | |\n|---|---|");
    let _ = writeln!(out, "| Cores (available to the bench) | {} |", m.cores);
    let _ = writeln!(out, "| CPU | {} |", m.cpu_model.as_deref().unwrap_or("unknown"));
    let _ = writeln!(
        out,
        "| Memory | {} |",
        m.memory_mib
            .map_or_else(|| "unknown".to_owned(), |x| format!("{x} MiB"))
    );
    let _ = writeln!(out, "| OS | {} |", m.os);
    let _ = writeln!(out, "| Compiler | {} |", m.rustc.as_deref().unwrap_or("unknown"));
    let _ = writeln!(
        out,
        "| Commit | `{}` |",
        m.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "| Binaries | {} profile{}; controller Kubernetes client {}, {} EphemeralRunner \
         reconciles at once{}; fake GitHub long-poll window {} s{}{} |\n",
        s.profile,
        if s.build.is_empty() {
            String::new()
        } else {
            format!(", {}", s.build)
        },
        if s.kube_qps == 0 {
            "without a client-side rate limit".to_owned()
        } else {
            format!("QPS {} / burst {}", s.kube_qps, s.kube_burst)
        },
        s.runner_concurrency,
        // Logging more costs the controller time, so a run that did says so.
        match s.controller_log_level.as_str() {
            "" | "info" => String::new(),
            filter => format!(", controller log filter `{filter}`"),
        },
        s.long_poll_window_s,
        match s.github_latency_ms {
            0 => String::new(),
            ms => format!(", answering every call {ms} ms late"),
        },
        // The simulated pieces share the CPU with the binaries, so their allocator matters.
        match s.bench_allocator.as_str() {
            "" | "system" => String::new(),
            allocator => format!("; bench process (simulated pieces) allocating with {allocator}"),
        },
    );
    let _ = writeln!(
        out,
        "| Scenario | Scale sets × jobs | maxRunners | Job length | Simulated nodes | Runs (done / asked) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for c in &run.cases {
        let _ = writeln!(
            out,
            "| `{}` | {} × {} | {} | {} s | {} | {} / {}{} |",
            c.case.name,
            c.case.scale_sets,
            c.case.jobs_per_scale_set,
            c.case.max_runners,
            c.case.job_ms as f64 / 1000.0,
            c.case.nodes,
            c.runs.len(),
            c.case.runs,
            if c.failures.is_empty() {
                ""
            } else {
                " (see failures below)"
            }
        );
    }
    for c in run.cases.iter().filter(|c| !c.failures.is_empty()) {
        for f in &c.failures {
            let _ = writeln!(out, "\nFailed run of `{}`: {}", c.case.name, f.replace('\n', " "));
        }
    }
    out.push('\n');
}

/// The largest burst: the headline scenario.
fn headline(run: &BenchResult) -> Option<&CaseResult> {
    run.cases
        .iter()
        .filter(|c| c.case.kind == Kind::Burst)
        .max_by_key(|c| c.case.jobs())
}

fn drain_case(run: &BenchResult) -> Option<&CaseResult> {
    run.cases.iter().find(|c| c.case.kind == Kind::Drain)
}

/// Jobs arriving one after another: the figures of everyday operation.
fn steady_case(run: &BenchResult) -> Option<&CaseResult> {
    run.cases.iter().find(|c| c.case.kind == Kind::Steady)
}

/// How a steady scenario's jobs arrive, for a row's label.
fn arrival(c: &CaseResult) -> String {
    format!(
        "{} jobs, {} queued a second",
        c.case.jobs(),
        c.case.jobs_per_second.unwrap_or_default()
    )
}

fn targets(out: &mut String, run: &BenchResult) {
    let Some(h) = headline(run) else {
        return;
    };
    let f = &h.median;
    let n = h.case.jobs();
    let get = |k: &str| f.get(k).copied();
    let _ = writeln!(out, "## Figures against the targets\n");
    let steady = steady_case(run);
    let _ = writeln!(
        out,
        "From `{}` ({n} jobs queued at once, maxRunners {}), median of {} run(s){}; the ARC column \
         is what is published about actions-runner-controller (our reference notes, arc.md §8), \
         not measured here.\n",
        h.case.name,
        h.case.max_runners,
        h.runs.len(),
        steady.map_or_else(String::new, |st| format!(
            ", and rows marked *steady* from `{}` ({}, maxRunners {}), median of {} run(s)",
            st.case.name,
            arrival(st),
            st.case.max_runners,
            st.runs.len()
        ))
    );
    let _ = writeln!(out, "| Figure | ARC | Target | rssc | |\n|---|---|---|---|---|");
    let mut row = |figure: String, arc: &str, target: &str, value: String, verdict: &str| {
        let _ = writeln!(out, "| {figure} | {arc} | {target} | {value} | {verdict} |");
    };
    let v = get(keys::PODS_ALL_CREATED_S);
    row(
        format!("{n} jobs queued at once → {n} runner Pods created"),
        "client QPS 20 ⇒ ≥ 150 s (1,000)",
        "≤ 10 s (1,000)",
        num(v, " s"),
        Goal::AtMost(10.0 * n as f64 / 1000.0).verdict(v),
    );
    // The two figures measured both in the burst and, where it ran, in the steady scenario.
    let latency = |m: &Figures| {
        let (p50, p99) = (
            m.get(keys::ACQUIRED_TO_POD_P50).copied(),
            m.get(keys::ACQUIRED_TO_POD_P99).copied(),
        );
        (
            format!("{} / {}", num(p50, " ms"), num(p99, " ms")),
            both(Goal::AtMost(100.0).verdict(p50), Goal::AtMost(500.0).verdict(p99)),
        )
    };
    let calls = |m: &Figures| {
        let v = m.get(keys::GITHUB_CALLS_PER_JOB).copied();
        (num(v, ""), Goal::AtMost(1.1).verdict(v))
    };
    let (value, verdict) = latency(f);
    row(
        format!("Job acquired → runner Pod created, p50 / p99 ({n} at once)"),
        "20–30 s reported",
        "≤ 100 ms / ≤ 500 ms",
        value,
        verdict,
    );
    if let Some(st) = steady {
        let (value, verdict) = latency(&st.median);
        row(
            format!(
                "*steady*: Job acquired → runner Pod created, p50 / p99 ({})",
                arrival(st)
            ),
            "20–30 s reported",
            "≤ 100 ms / ≤ 500 ms",
            value,
            verdict,
        );
    }
    let v = get(keys::EXIT_TO_GONE_P50);
    row(
        "Runner exit → its EphemeralRunner gone, p50".into(),
        "10.8 s",
        "≤ 1 s",
        num(v, " ms"),
        Goal::AtMost(1000.0).verdict(v),
    );
    let (value, verdict) = calls(f);
    row(
        format!("GitHub API calls per job ({n} at once)"),
        "2–4",
        "≤ 1.1",
        value,
        verdict,
    );
    if let Some(st) = steady {
        let (value, verdict) = calls(&st.median);
        row(
            format!(
                "*steady*: GitHub API calls per job in steady state ({})",
                arrival(st)
            ),
            "2–4",
            "≤ 1.1",
            value,
            verdict,
        );
    }
    let v = get(keys::KUBE_WRITES_PER_RUNNER);
    row(
        "Kubernetes API writes per runner lifecycle".into(),
        "~10",
        "≤ 6",
        num(v, ""),
        Goal::AtMost(6.0).verdict(v),
    );
    let (idle, peak) = (get(keys::LISTENER_IDLE_MIB), get(keys::LISTENER_PEAK_MIB));
    row(
        format!("Listener resident memory idle / during the {n}-job burst"),
        "256 Mi limits in practice",
        "≤ 8 MiB / ≤ 16 MiB",
        format!("{} / {}", num(idle, " MiB"), num(peak, " MiB")),
        both(Goal::AtMost(8.0).verdict(idle), Goal::AtMost(16.0).verdict(peak)),
    );
    let v = get(keys::CONTROLLER_PEAK_MIB);
    row(
        format!("Controller resident memory with {n} runners (peak)"),
        "–",
        "≤ 64 MiB",
        num(v, " MiB"),
        Goal::AtMost(64.0).verdict(v),
    );
    let v = get(keys::CONTROLLER_SETTLED_MIB);
    row(
        format!(
            "Controller resident memory {} s after the last runner was gone",
            crate::case::SETTLED_AFTER.as_secs()
        ),
        "–",
        "–",
        num(v, " MiB"),
        Goal::None.verdict(v),
    );
    let drain = drain_case(run);
    let v = drain.and_then(|d| d.median.get(keys::JOBS_PER_SECOND).copied());
    row(
        drain.map_or_else(
            || "Jobs drained per second".to_owned(),
            |d| {
                format!(
                    "Jobs drained per second ({} runners, {} s jobs)",
                    d.case.max_runners,
                    d.case.job_ms as f64 / 1000.0
                )
            },
        ),
        "3.26 (PR #4670's workload)",
        "–",
        num(v, " jobs/s"),
        Goal::None.verdict(v),
    );
    let v = get(keys::CONTROLLER_CPU_MS_PER_RUNNER);
    row(
        "Controller CPU time per runner".into(),
        "–",
        "–",
        num(v, " ms"),
        Goal::None.verdict(v),
    );
    let (fraction, limit) = (
        get(keys::BURST_FRACTION_OF_LIMIT),
        get(keys::LIMIT_PAIRS_PER_SECOND),
    );
    row(
        "Our burst as a fraction of the test server's limit".into(),
        "–",
        "–",
        format!(
            "{} (limit {})",
            fraction.map_or_else(|| "not measured".to_owned(), |x| format!("{:.0} %", x * 100.0)),
            num(limit, " Secret+Pod pairs/s")
        ),
        Goal::None.verdict(fraction),
    );
    let floor = get(keys::ACQUIRED_TO_POD_FLOOR_P50);
    row(
        "Acquired → Pod p50 that the test server's limit allows (each job's pair queued at it)".into(),
        "–",
        "–",
        num(floor, " ms"),
        Goal::None.verdict(floor),
    );
    out.push('\n');
}

fn both(a: &'static str, b: &'static str) -> &'static str {
    match (a, b) {
        ("met", "met") => "met",
        ("not measured", "not measured") => "not measured",
        _ if a == "**missed**" || b == "**missed**" => "**missed**",
        _ => "partly measured",
    }
}

/// The figures a growth table shows: (key, label, unit).
const GROWTH_ROWS: [(&str, &str, &str); 18] = [
    (keys::JOBS_SUCCEEDED, "Jobs succeeded", ""),
    (keys::RUNNERS, "EphemeralRunners created", ""),
    (keys::RUNNERS_LEFT, "EphemeralRunners left at the end", ""),
    (keys::TIMED_OUT, "Runs that hit the time limit (1 = yes)", ""),
    (keys::PODS_ALL_CREATED_S, "Queued → last runner Pod created", " s"),
    (keys::ACQUIRED_TO_POD_P50, "Acquired → Pod, p50", " ms"),
    (keys::ACQUIRED_TO_POD_P99, "Acquired → Pod, p99", " ms"),
    (
        keys::EXIT_TO_GONE_P50,
        "Runner exit → EphemeralRunner gone, p50",
        " ms",
    ),
    (
        keys::EXIT_TO_GONE_P99,
        "Runner exit → EphemeralRunner gone, p99",
        " ms",
    ),
    (keys::GITHUB_CALLS_PER_JOB, "GitHub calls per job", ""),
    (keys::KUBE_WRITES_PER_RUNNER, "Kubernetes writes per runner", ""),
    (keys::LISTENER_IDLE_MIB, "Listener RSS idle (largest)", " MiB"),
    (keys::LISTENER_PEAK_MIB, "Listener RSS peak (largest)", " MiB"),
    (keys::CONTROLLER_PEAK_MIB, "Controller RSS peak", " MiB"),
    (
        keys::CONTROLLER_CPU_MS_PER_RUNNER,
        "Controller CPU per runner",
        " ms",
    ),
    (
        keys::RECONCILE_QUEUEING_P50,
        "EphemeralRunner created → first reconcile, p50",
        " ms",
    ),
    (keys::JOBS_PER_SECOND, "Jobs completed per second", ""),
    (keys::ELAPSED_S, "Queued → all done and gone", " s"),
];

fn growth(out: &mut String, run: &BenchResult, kind: Kind, title: &str, unit: &str) {
    let cases: Vec<&CaseResult> = run.cases.iter().filter(|c| c.case.kind == kind).collect();
    if cases.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}\n");
    growth_table(out, cases, kind, unit);
}

/// A table of [`GROWTH_ROWS`] with a column per case, in order of scale sets and jobs.
fn growth_table(out: &mut String, mut cases: Vec<&CaseResult>, kind: Kind, unit: &str) {
    cases.sort_by_key(|c| (c.case.scale_sets, c.case.jobs()));
    let header: Vec<String> = cases
        .iter()
        .map(|c| match kind {
            Kind::ScaleSets => format!(
                "{} {unit} × {} jobs",
                c.case.scale_sets, c.case.jobs_per_scale_set
            ),
            Kind::Steady => arrival(c),
            _ => format!("{} {unit}", c.case.jobs()),
        })
        .collect();
    let _ = writeln!(out, "| Figure (median) | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(cases.len()));
    for (key, label, unit) in GROWTH_ROWS {
        let values: Vec<String> = cases
            .iter()
            .map(|c| num(c.median.get(key).copied(), unit))
            .collect();
        let _ = writeln!(out, "| {label} | {} |", values.join(" | "));
    }
    out.push('\n');
}

fn steady(out: &mut String, run: &BenchResult) {
    let Some(st) = steady_case(run) else {
        return;
    };
    let f = &st.median;
    let _ = writeln!(out, "## Jobs arriving at a steady rate\n");
    let _ = writeln!(
        out,
        "`{}`: {} jobs of {} s queued one after another, {} a second (over {}), on a scale set of \
         at most {} runners, so no job waits for the maximum and none for a burst ahead of it: \
         what a job meets in everyday operation. Median of {} run(s).\n",
        st.case.name,
        st.case.jobs(),
        st.case.job_ms as f64 / 1000.0,
        st.case.jobs_per_second.unwrap_or_default(),
        num(f.get(keys::QUEUED_OVER_S).copied(), " s"),
        st.case.max_runners,
        st.runs.len(),
    );
    growth_table(out, vec![st], Kind::Steady, "");
}

fn drain(out: &mut String, run: &BenchResult) {
    let Some(d) = drain_case(run) else {
        return;
    };
    let f = &d.median;
    let _ = writeln!(out, "## Draining a queue\n");
    let _ = writeln!(
        out,
        "`{}`: {} jobs of {} s queued at once on a scale set of at most {} runners, so each runner \
         slot is reused about {:.0} times. Median of {} run(s): **{}**, first job queued → last job \
         finished; all done and every EphemeralRunner gone after {}. Job acquired → Pod p50 {}, \
         runner exit → EphemeralRunner gone p50 {}, {} GitHub calls per job.\n",
        d.case.name,
        d.case.jobs(),
        d.case.job_ms as f64 / 1000.0,
        d.case.max_runners,
        d.case.jobs() as f64 / d.case.max_runners.max(1) as f64,
        d.runs.len(),
        num(f.get(keys::JOBS_PER_SECOND).copied(), " jobs/s"),
        num(f.get(keys::ELAPSED_S).copied(), " s"),
        num(f.get(keys::ACQUIRED_TO_POD_P50).copied(), " ms"),
        num(f.get(keys::EXIT_TO_GONE_P50).copied(), " ms"),
        num(f.get(keys::GITHUB_CALLS_PER_JOB).copied(), ""),
    );
}

fn where_time_goes(out: &mut String, run: &BenchResult) {
    let Some(h) = headline(run) else {
        return;
    };
    // The steady scenario beside the burst: the same way with nothing queued ahead.
    let columns: Vec<&CaseResult> = std::iter::once(h).chain(steady_case(run)).collect();
    let names: Vec<String> = columns.iter().map(|c| format!("`{}`", c.case.name)).collect();
    let header = |what: &str, unit: &str| {
        let cells: Vec<String> = names.iter().map(|n| format!("{n}{unit}")).collect();
        format!(
            "| {what} | {} |\n|---|{}",
            cells.join(" | "),
            "---|".repeat(cells.len())
        )
    };
    let row = |label: &str, key: &str, unit: &str| {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| num(c.median.get(key).copied(), unit))
            .collect();
        format!("| {label} | {} |", cells.join(" | "))
    };
    let f = &h.median;
    let get = |k: &str| f.get(k).copied();
    let _ = writeln!(out, "## Where the time goes ({})\n", names.join(", "));
    let _ = writeln!(
        out,
        "A runner's way from its job acquired to its Pod, as the bench's watches saw each object \
         appear (medians over runners, then over runs):\n"
    );
    let _ = writeln!(out, "{}", header("Stage", " p50"));
    for (label, key) in [
        (
            "Job acquired → EphemeralRunner created (listener decision, ERS patch, ERS reconcile)",
            keys::ACQUIRED_TO_RUNNER_P50,
        ),
        (
            "EphemeralRunner created → its first reconcile starts (reconcile queueing)",
            keys::RECONCILE_QUEUEING_P50,
        ),
        (
            "EphemeralRunner → JIT Secret (JIT config call, Secret create)",
            keys::RUNNER_TO_SECRET_P50,
        ),
        ("JIT Secret → Pod (Pod create)", keys::SECRET_TO_POD_P50),
        (
            "Pod → the runner took its job (simulated node)",
            keys::POD_TO_JOB_STARTED_P50,
        ),
    ] {
        let _ = writeln!(out, "{}", row(label, key, " ms"));
    }
    let _ = writeln!(
        out,
        "\nThe controller's and the listener's own spans in `{}` (OpenTelemetry, exported to the \
         bench); `pod.create` and `secret.create` include any wait for a client-side rate limit \
         (`--kube-qps`), since it sits inside the client:\n",
        h.case.name
    );
    let _ = writeln!(out, "| Span | count | p50 | p99 | total |\n|---|---|---|---|---|");
    let mut groups: Vec<&str> = f
        .keys()
        .filter_map(|k| k.strip_prefix("span.")?.strip_suffix(".count"))
        .collect();
    groups.sort_by(|a, b| {
        let total = |g: &str| get(&format!("span.{g}.total_s")).unwrap_or(0.0);
        total(b).total_cmp(&total(a))
    });
    for g in groups {
        let at = |s: &str| get(&format!("span.{g}.{s}"));
        let _ = writeln!(
            out,
            "| `{g}` | {} | {} | {} | {} |",
            num(at("count"), ""),
            num(at("p50_ms"), " ms"),
            num(at("p99_ms"), " ms"),
            num(at("total_s"), " s")
        );
    }
    let by_part = |out: &mut String, prefix: &str, what: &str| {
        // The burst's largest first; parts only the steady scenario has come after.
        let mut parts: Vec<&str> = prefixed(f, prefix).into_iter().map(|(k, _)| k).collect();
        for c in &columns[1..] {
            for (k, _) in prefixed(&c.median, prefix) {
                if !parts.contains(&k) {
                    parts.push(k);
                }
            }
        }
        let _ = writeln!(out, "{}", header(what, ""));
        for part in parts {
            let _ = writeln!(
                out,
                "{}",
                row(&format!("`{part}`"), &format!("{prefix}{part}"), "")
            );
        }
    };
    let _ = writeln!(
        out,
        "\nGitHub calls per job by endpoint (setup calls excluded):\n"
    );
    by_part(out, "github.", "Endpoint (per job)");
    let _ = writeln!(out, "\nKubernetes writes per runner by verb and resource:\n");
    by_part(out, "kube.", "Write (per runner)");
    out.push('\n');
}

/// Figures whose key starts with `prefix`, largest first, with the prefix removed.
fn prefixed<'a>(f: &'a Figures, prefix: &str) -> Vec<(&'a str, f64)> {
    let mut v: Vec<(&str, f64)> = f
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, *v)))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v
}

fn spread(out: &mut String, run: &BenchResult) {
    let _ = writeln!(out, "## Each run\n");
    let _ = writeln!(
        out,
        "The headline figures of every run, so the spread behind each median shows.\n"
    );
    let _ = writeln!(
        out,
        "| Scenario | Run | Jobs succeeded / queued | Runners created / left | Pods created | Acquired → Pod p50 / p99 | Exit → gone p50 | GitHub calls/job | Kube writes/runner | Jobs/s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for c in &run.cases {
        for (i, f) in c.runs.iter().enumerate() {
            let g = |k: &str| f.get(k).copied();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} / {} | {} / {} | {} | {} / {} | {} | {} | {} | {} |",
                c.case.name,
                i + 1,
                num(g(keys::JOBS_SUCCEEDED), ""),
                num(g(keys::JOBS), ""),
                num(g(keys::RUNNERS), ""),
                num(g(keys::RUNNERS_LEFT), ""),
                num(g(keys::PODS_ALL_CREATED_S), " s"),
                num(g(keys::ACQUIRED_TO_POD_P50), " ms"),
                num(g(keys::ACQUIRED_TO_POD_P99), " ms"),
                num(g(keys::EXIT_TO_GONE_P50), " ms"),
                num(g(keys::GITHUB_CALLS_PER_JOB), ""),
                num(g(keys::KUBE_WRITES_PER_RUNNER), ""),
                num(g(keys::JOBS_PER_SECOND), ""),
            );
        }
    }
    out.push('\n');
}

/// A figure for a table: up to two decimals, trailing zeros dropped.
fn num(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "–".to_owned(),
        Some(x) => {
            let s = format!("{x:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{s}{unit}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        machine::Machine,
        plan::Case,
        result::{CaseResult, Settings},
    };

    fn case(name: &str, kind: Kind, sets: usize, jobs: usize, figures: &[(&str, f64)]) -> CaseResult {
        let f: Figures = figures.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        CaseResult {
            case: Case {
                name: name.into(),
                kind,
                scale_sets: sets,
                jobs_per_scale_set: jobs,
                jobs_per_second: (kind == Kind::Steady).then_some(10),
                max_runners: jobs,
                job_ms: 3000,
                runs: 1,
                measure_limit: false,
                nodes: crate::plan::nodes_for(sets, jobs),
            },
            runs: vec![f.clone()],
            failures: Vec::new(),
            median: f,
        }
    }

    fn run() -> BenchResult {
        BenchResult {
            started_at: "2026-11-22T21:04:05Z".into(),
            duration_s: 100.0,
            machine: Machine {
                cores: 2,
                ..Machine::default()
            },
            settings: Settings {
                profile: "release".into(),
                build: "x86_64-unknown-linux-musl, statically linked".into(),
                kube_qps: 500,
                kube_burst: 1000,
                runner_concurrency: 32,
                long_poll_window_s: 2,
                controller_log_level: "info".into(),
                bench_allocator: "system".into(),
                github_latency_ms: 0,
            },
            cases: vec![
                case("burst-10", Kind::Burst, 1, 10, &[(keys::PODS_ALL_CREATED_S, 0.5)]),
                case(
                    "burst-1000",
                    Kind::Burst,
                    1,
                    1000,
                    &[
                        (keys::PODS_ALL_CREATED_S, 12.25),
                        (keys::ACQUIRED_TO_POD_P50, 80.0),
                        (keys::ACQUIRED_TO_POD_P99, 900.0),
                        (keys::KUBE_WRITES_PER_RUNNER, 5.5),
                        (keys::CONTROLLER_PEAK_MIB, 40.5),
                        (keys::CONTROLLER_SETTLED_MIB, 20.25),
                        ("span.pod.create.count", 1000.0),
                        ("span.pod.create.p50_ms", 4.0),
                        ("github.POST /x/generatejitconfig", 1.0),
                    ],
                ),
                case(
                    "scale-sets-5",
                    Kind::ScaleSets,
                    5,
                    20,
                    &[(keys::GITHUB_CALLS_PER_JOB, 1.5)],
                ),
                case(
                    "steady-10-per-s",
                    Kind::Steady,
                    1,
                    200,
                    &[
                        (keys::ACQUIRED_TO_POD_P50, 40.0),
                        (keys::ACQUIRED_TO_POD_P99, 90.0),
                        (keys::GITHUB_CALLS_PER_JOB, 2.5),
                        (keys::QUEUED_OVER_S, 19.9),
                    ],
                ),
            ],
        }
    }

    #[test]
    fn the_targets_table_says_which_targets_are_met() {
        let page = page(&run(), "benchmarks/runs/x.json");
        assert!(page.contains("| 1000 jobs queued at once → 1000 runner Pods created | client QPS 20 ⇒ ≥ 150 s (1,000) | ≤ 10 s (1,000) | 12.25 s | **missed** |"), "{page}");
        assert!(page.contains("| 80 ms / 900 ms | **missed** |"), "{page}");
        assert!(
            page.contains(
                "| *steady*: Job acquired → runner Pod created, p50 / p99 (200 jobs, 10 queued a \
                 second) | 20–30 s reported | ≤ 100 ms / ≤ 500 ms | 40 ms / 90 ms | met |"
            ),
            "{page}"
        );
        assert!(
            page.contains(
                "in steady state (200 jobs, 10 queued a second) | 2–4 | ≤ 1.1 | 2.5 | **missed** |"
            ),
            "{page}"
        );
        assert!(
            page.contains("rows marked *steady* from `steady-10-per-s`"),
            "{page}"
        );
        assert!(page.contains("| ≤ 6 | 5.5 | met |"), "{page}");
        assert!(
            page.contains(
                "| Controller resident memory with 1000 runners (peak) | – | ≤ 64 MiB | 40.5 MiB | met |\n\
                 | Controller resident memory 15 s after the last runner was gone | – | – | 20.25 MiB | – |"
            ),
            "{page}"
        );
        assert!(page.contains("| ≤ 1 s | – | not measured |"), "{page}");
    }

    #[test]
    fn the_page_says_which_build_it_measured() {
        let now = page(&run(), "x.json");
        assert!(
            now.contains(
                "| Binaries | release profile, x86_64-unknown-linux-musl, statically linked; controller"
            ),
            "{now}"
        );
        let mut older = run();
        older.settings.build.clear();
        let before = page(&older, "x.json");
        assert!(
            before.contains("| Binaries | release profile; controller"),
            "{before}"
        );
        assert!(!now.contains("controller log filter `"), "{now}");
        assert!(!now.contains("allocating with"), "{now}");
        let mut jemalloc = run();
        jemalloc.settings.bench_allocator = "jemalloc".into();
        let page_jemalloc = page(&jemalloc, "x.json");
        assert!(
            page_jemalloc.contains("window 2 s; bench process (simulated pieces) allocating with jemalloc |"),
            "{page_jemalloc}"
        );
        assert!(
            now.contains("client QPS 500 / burst 1000, 32 EphemeralRunner"),
            "{now}"
        );
        let mut unlimited = run();
        unlimited.settings.kube_qps = 0;
        let page_unlimited = page(&unlimited, "x.json");
        assert!(
            page_unlimited.contains("client without a client-side rate limit, 32 EphemeralRunner"),
            "{page_unlimited}"
        );
        let mut logged = run();
        logged.settings.controller_log_level = "info,rssc_controller=debug".into();
        let page = page(&logged, "x.json");
        assert!(
            page.contains("reconciles at once, controller log filter `info,rssc_controller=debug`;"),
            "{page}"
        );
        assert!(
            !page.contains("answering every call"),
            "a fake GitHub answering at once goes unsaid: {page}"
        );
        let mut late = run();
        late.settings.github_latency_ms = 250;
        let page_late = super::page(&late, "x.json");
        assert!(
            page_late.contains("long-poll window 2 s, answering every call 250 ms late"),
            "{page_late}"
        );
    }

    #[test]
    fn the_scenario_table_says_how_many_nodes_ran_the_pods() {
        let page = page(&run(), "x.json");
        assert!(
            page.contains("| Scenario | Scale sets × jobs | maxRunners | Job length | Simulated nodes |"),
            "{page}"
        );
        assert!(
            page.contains("| `burst-1000` | 1 × 1000 | 1000 | 3 s | 10 | 1 / 1 |"),
            "{page}"
        );
        assert!(
            page.contains("| `burst-10` | 1 × 10 | 10 | 3 s | 1 | 1 / 1 |"),
            "{page}"
        );
    }

    #[test]
    fn growth_tables_have_a_column_per_scenario() {
        let page = page(&run(), "x.json");
        assert!(
            page.contains("| Figure (median) | 10 jobs at once | 1000 jobs at once |"),
            "{page}"
        );
        assert!(
            page.contains("| Queued → last runner Pod created | 0.5 s | 12.25 s |"),
            "{page}"
        );
        assert!(
            page.contains("| Figure (median) | 5 scale sets × 20 jobs |"),
            "{page}"
        );
        assert!(
            page.contains("10 a second (over 19.9 s), on a scale set of at most 200 runners"),
            "{page}"
        );
        assert!(
            page.contains("| Figure (median) | 200 jobs, 10 queued a second |"),
            "{page}"
        );
        assert!(page.contains("| `pod.create` | 1000 | 4 ms | – | – |"), "{page}");
        assert!(
            page.contains("| Endpoint (per job) | `burst-1000` | `steady-10-per-s` |"),
            "{page}"
        );
        assert!(page.contains("| `POST /x/generatejitconfig` | 1 | – |"), "{page}");
        assert!(
            page.contains("| Stage | `burst-1000` p50 | `steady-10-per-s` p50 |"),
            "{page}"
        );
    }

    #[test]
    fn numbers_drop_trailing_zeros() {
        assert_eq!(num(Some(2.0), " s"), "2 s");
        assert_eq!(num(Some(2.50), ""), "2.5");
        assert_eq!(num(Some(0.126), ""), "0.13");
        assert_eq!(num(None, " s"), "–");
    }
}
