//! One run of one scenario: start everything through the end-to-end harness, apply the scale
//! sets, queue the jobs (at once, or at a steady rate), wait until every job is done and every
//! EphemeralRunner gone, then gather what happened and compute the figures.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use k8s_openapi::{
    api::core::v1::Secret, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::api::{ListParams, Patch, PatchParams};
use rssc_api::v1alpha1::{AutoscaleSet, EphemeralRunner, RunnerSet};
use rssc_e2e::{
    Harness, HarnessOptions, PAT,
    otlp::{OtlpReceiver, Protocol},
};
use rssc_sandbox::{
    manifests, memory, observe, report,
    sandbox::{record_run, runner_of_job},
};
use rssc_sim_github::{Arrival, JobDuration, JobSpec, JobState, Scenario};
use rssc_sim_node::{PodKind, config::SIMULATED_NODE_LABEL};
use serde_json::Value;

use crate::{
    cpu,
    figures::{self, Extras, Figures},
    gone, limit,
    plan::Case,
    scale_sets,
};

/// What every run needs.
#[derive(Debug, Clone)]
pub struct Env {
    /// Directory of the controller and listener binaries.
    pub bin_dir: PathBuf,
    /// The CRDs to install.
    pub crds: Vec<CustomResourceDefinition>,
    /// The sample manifests.
    pub samples: manifests::Samples,
    /// The controller's and the limit client's settings.
    pub client: limit::ClientSettings,
    /// A run that has not finished by then fails.
    pub timeout: Duration,
    /// The controller's log filter.
    pub log_level: String,
    /// How late the fake GitHub answers every call once the listeners are up.
    pub github_latency: Duration,
}

/// How long the scale sets and their listeners may take to come up.
const STARTUP: Duration = Duration::from_secs(180);
/// How long the listeners are left idle before their memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
/// How often the run's progress is checked.
const POLL: Duration = Duration::from_millis(200);
/// How long after the last EphemeralRunner is gone the controller's resident memory is read
/// again in the largest burst: longer than jemalloc's default ten-second decay of freed pages.
pub const SETTLED_AFTER: Duration = Duration::from_secs(15);
/// How long to wait for the last spans (the binaries export every 200 ms).
const SPAN_FLUSH: Duration = Duration::from_secs(10);
/// The field manager of what the bench applies.
const FIELD_MANAGER: &str = "rssc-bench";

/// Runs `case` once and returns its figures.
pub async fn run_once(case: &Case, env: &Env) -> anyhow::Result<Figures> {
    let traces = OtlpReceiver::start().await;
    // The binaries' default encoding, as a deployment that only sets the endpoint exports.
    let mut controller_env = traces.env_for(Protocol::HttpProtobuf);
    controller_env.extend([
        ("RSSC_KUBE_QPS".to_owned(), env.client.qps.to_string()),
        ("RSSC_KUBE_BURST".to_owned(), env.client.burst.to_string()),
        (
            "RSSC_RUNNER_CONCURRENCY".to_owned(),
            env.client.concurrency.to_string(),
        ),
        ("RSSC_LOG_LEVEL".to_owned(), env.log_level.clone()),
    ]);
    let harness = Harness::start_with(
        "bench",
        HarnessOptions {
            bin_dir: Some(env.bin_dir.clone()),
            crds: Some(env.crds.clone()),
            controller_env,
            github_long_poll_window: Some(Duration::from_secs(crate::bench::LONG_POLL_WINDOW_S)),
            nodes: Some(case.nodes),
            ..HarnessOptions::default()
        },
    )
    .await;
    let result = play(&harness, case, env, &traces).await;
    match &result {
        Ok(_) => harness.stop().await,
        // Dropping the harness kills the processes and keeps their logs.
        Err(_) => eprintln!("rssc-bench: the logs stay in {}", harness.logs.display()),
    }
    result
}

async fn play(h: &Harness, case: &Case, env: &Env, traces: &OtlpReceiver) -> anyhow::Result<Figures> {
    let target = manifests::Target {
        github_base_url: h.github.base_url(),
        token: PAT.to_owned(),
        ca: ("github-ca".to_owned(), "ca.pem".to_owned()),
        node_label: SIMULATED_NODE_LABEL.to_owned(),
    };
    let m = manifests::point_at(&env.samples, &target)?;
    apply::<Secret>(h, &m.token_secret).await?;
    let names = scale_sets::names(case.scale_sets);
    for name in &names {
        let (asset, runner_set) = scale_sets::pair(&m, name, case.max_runners)?;
        apply::<AutoscaleSet>(h, &asset).await?;
        apply::<RunnerSet>(h, &runner_set).await?;
    }
    let labels = wait_for_listeners(h, &names).await?;
    // A measurement window, not a wait for a condition: the listeners' memory at rest.
    tokio::time::sleep(IDLE_SETTLE).await;
    let listener_idle_kib = listener_pids(h)
        .into_iter()
        .filter_map(memory::read)
        .map(|u| u.rss_kib)
        .max();

    // Set up at full speed; measured with GitHub's latency, if asked for.
    h.github.set_latency(env.github_latency);
    h.github.clear_calls();
    if let Some(faults) = h.kube_faults() {
        faults.clear_log();
    }
    let (seen, mut watches) = observe::watch_runners(&h.client, &h.namespace);
    let (gone, gone_watch) = gone::watch(h.api::<EphemeralRunner>());
    watches.push(gone_watch);
    let cpu_before = h.controller_pid().and_then(cpu::ticks);
    let started = Instant::now();
    let duration = Duration::from_millis(case.job_ms);
    let queueing: Vec<tokio::task::JoinHandle<Vec<i64>>> = match case.jobs_per_second {
        None => {
            for set_labels in &labels {
                for _ in 0..case.jobs_per_scale_set {
                    h.github
                        .queue_job(JobSpec::for_labels(set_labels.iter().cloned()).with_duration(duration));
                }
            }
            Vec::new()
        }
        Some(rate) => labels
            .iter()
            .map(|set_labels| {
                h.github.run_scenario(Scenario {
                    arrival: Arrival::Steady {
                        count: case.jobs_per_scale_set,
                        interval: Duration::from_secs(1) / rate.max(1),
                    },
                    duration: JobDuration::Fixed(duration),
                    labels: set_labels.clone(),
                })
            })
            .collect(),
    };
    let total = case.jobs();
    let deadline = started + env.timeout;
    let mut timed_out = false;
    loop {
        let done = h
            .github
            .with_state(|s| s.jobs.len() == total && s.jobs.values().all(|j| j.state == JobState::Completed));
        let created = seen.snapshot().values().filter(|r| r.runner.is_some()).count();
        if done
            && gone.count() >= created
            && h.api::<EphemeralRunner>()
                .list(&ListParams::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
        {
            break;
        }
        if Instant::now() >= deadline {
            // Figures are still worth having: the run says what was left over.
            eprintln!(
                "rssc-bench: {}: not finished after {:?} ({} of {created} EphemeralRunners gone); \
                 computing the figures of what happened",
                case.name,
                env.timeout,
                gone.count()
            );
            timed_out = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let elapsed = started.elapsed();
    let finished_at = Instant::now();
    queueing.iter().for_each(tokio::task::JoinHandle::abort);
    let cpu_ms = match (cpu_before, h.controller_pid().and_then(cpu::ticks)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 * 1000.0 / cpu::ticks_per_second() as f64),
        _ => None,
    };
    let controller_peak_kib = h.controller_pid().and_then(memory::read).map(|u| u.peak_kib);
    let listener_peak_kib = listener_pids(h)
        .into_iter()
        .filter_map(memory::read)
        .map(|u| u.peak_kib)
        .max();
    let runners_left = h
        .api::<EphemeralRunner>()
        .list(&ListParams::default())
        .await
        .map_or(0, |l| l.items.len());
    let spans = flushed_spans(h, traces).await;
    watches.iter().for_each(tokio::task::JoinHandle::abort);

    let data = record_run(h, &case.name, case.jobs(), elapsed, seen.snapshot());
    let report = report::build(&data);
    let summary = h
        .nodes
        .as_ref()
        .map(rssc_sim_node::NodeSim::summary)
        .unwrap_or_default();
    let runner_of_job = runner_of_job(&summary);
    let (finished, origin, last_queued, last_finish) = h.github.with_state(|s| {
        let finished: BTreeMap<String, SystemTime> = s
            .jobs
            .values()
            .filter_map(|j| Some((runner_of_job.get(&j.id)?.clone(), j.finish_time()?)))
            .collect();
        (
            finished,
            s.jobs.values().map(|j| j.queue_time()).min(),
            s.jobs.values().map(|j| j.queue_time()).max(),
            s.jobs.values().filter_map(|j| j.finish_time()).max(),
        )
    });
    let objects = seen.snapshot();
    let extras = Extras {
        origin,
        last_queued,
        pods_seen: objects.values().filter_map(|r| r.pod).collect(),
        finished,
        runner_seen: objects
            .iter()
            .filter_map(|(name, r)| Some((name.clone(), r.runner?)))
            .collect(),
        gone: gone.snapshot(),
        last_finish,
        listener_idle_kib,
        listener_peak_kib,
        controller_peak_kib,
        controller_cpu_ms: cpu_ms,
        elapsed_s: elapsed.as_secs_f64(),
        spans,
    };
    let mut f = figures::compute(&report, &extras);
    f.insert(figures::keys::RUNNERS_LEFT.into(), runners_left as f64);
    f.insert(figures::keys::TIMED_OUT.into(), f64::from(u8::from(timed_out)));
    if case.measure_limit {
        // A failed limit measurement leaves the limit out rather than the run's figures.
        match limit::measure(&h.cluster().kubeconfig, total, env.client).await {
            Ok(seconds) => {
                let acquired: Vec<i64> = report
                    .job_timelines
                    .iter()
                    .filter_map(|t| t.acquired_ms)
                    .collect();
                figures::add_limit(&mut f, total, seconds, &acquired);
            }
            Err(err) => eprintln!("rssc-bench: {}: the limit measurement failed: {err:#}", case.name),
        }
        if !timed_out {
            // A measurement window, not a wait for a condition: what the controller keeps
            // once a burst has passed.
            tokio::time::sleep_until((finished_at + SETTLED_AFTER).into()).await;
            if let Some(usage) = h.controller_pid().and_then(memory::read) {
                f.insert(
                    figures::keys::CONTROLLER_SETTLED_MIB.into(),
                    figures::round(usage.rss_kib as f64 / 1024.0, 1),
                );
            }
        }
    }
    Ok(f)
}

/// The spans received once every completed job's span arrived, or after [`SPAN_FLUSH`].
async fn flushed_spans(h: &Harness, traces: &OtlpReceiver) -> Vec<rssc_e2e::otlp::ReceivedSpan> {
    let completed = h.github.with_state(|s| s.jobs.len());
    let finished_jobs = || {
        traces
            .spans()
            .iter()
            .filter(|s| s.name == "job" && s.attributes.contains_key("result"))
            .count()
    };
    let deadline = Instant::now() + SPAN_FLUSH;
    while finished_jobs() < completed && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    traces.spans()
}

fn listener_pids(h: &Harness) -> Vec<u32> {
    h.nodes
        .as_ref()
        .map(rssc_sim_node::NodeSim::summary)
        .unwrap_or_default()
        .pods
        .values()
        .filter(|p| p.kind == PodKind::Listener && !p.deleted)
        .filter_map(|p| p.pid)
        .collect()
}

/// Waits until the fake GitHub has every scale set and every RunnerSet's listener is ready;
/// returns each scale set's labels, in the order of `names`.
async fn wait_for_listeners(h: &Harness, names: &[String]) -> anyhow::Result<Vec<Vec<String>>> {
    let deadline = Instant::now() + STARTUP;
    loop {
        let labels: Option<Vec<Vec<String>>> = h.github.with_state(|s| {
            names
                .iter()
                .map(|n| {
                    s.scale_sets
                        .values()
                        .find(|ss| &ss.name == n)
                        .map(|ss| ss.labels.clone())
                })
                .collect()
        });
        let ready = h
            .api::<RunnerSet>()
            .list(&ListParams::default())
            .await
            .ok()
            .map_or(0, |l| {
                l.items
                    .iter()
                    .filter(|rs| {
                        rs.status
                            .as_ref()
                            .and_then(|s| s.listener.as_ref())
                            .is_some_and(|l| l.ready)
                    })
                    .count()
            });
        if let (Some(labels), true) = (labels, ready == names.len()) {
            return Ok(labels);
        }
        if Instant::now() >= deadline {
            bail!(
                "{ready} of {} listeners came up within {STARTUP:?}; see the logs in {}",
                names.len(),
                h.logs.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn apply<K>(h: &Harness, manifest: &Value) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .context("a manifest has no metadata.name")?
        .to_owned();
    h.api::<K>()
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(manifest),
        )
        .await
        .with_context(|| format!("applying {} {name}", K::kind(&())))?;
    Ok(())
}
