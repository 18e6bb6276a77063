//! One sandbox run: start everything (through the end-to-end harness), apply the samples, play
//! the scenario under the live display, report, then stop or keep running.

use std::{
    collections::BTreeMap,
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use rssc_api::v1alpha1::{AutoscaleSet, EphemeralRunnerSet, RunnerSet};
use rssc_e2e::{Harness, HarnessOptions, PAT, otlp::OtlpReceiver};
use rssc_sim_github::{FakeGitHub, JobState};
use rssc_sim_node::{PodKind, Summary, config::SIMULATED_NODE_LABEL};
use serde_json::Value;

use crate::{
    binaries, charts,
    cli::Args,
    cli::InstallFrom,
    decisions::{Decision, LineReader},
    display::{self, Display, Snapshot},
    endpoints, manifests, memory, observe,
    plan::{self, Step},
    report::{self, JobRecord, RunData},
};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every job of the scenario completed.
    AllJobsDone,
    /// The time limit passed first.
    Incomplete,
    /// Ctrl-C.
    Interrupted,
}

/// How long the scale set and its listener may take to come up.
const STARTUP: Duration = Duration::from_secs(120);
/// Display refresh period.
const REFRESH: Duration = Duration::from_millis(250);
/// The field manager of what the sandbox applies.
const FIELD_MANAGER: &str = "rssc-sandbox";

/// Runs the sandbox.
pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let deploy = args
        .deploy_dir
        .clone()
        .unwrap_or_else(|| binaries::workspace_root().join("deploy"));
    let root = binaries::workspace_root();
    let helm = match args.install {
        InstallFrom::Manifests => None,
        InstallFrom::Charts => Some(charts::helm(&root)?),
    };
    let crds = match &helm {
        None => manifests::load_crds(&deploy)?,
        Some(helm) => charts::controller_chart_crds(helm, &root)?,
    };
    let samples = manifests::load_samples(&deploy)?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => {
            binaries::check(dir)?;
            // Processes start in their own working directories.
            std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?
        }
        None => binaries::build()?,
    };
    let mut display = Display::new(args.plain);
    display.message(&format!(
        "rssc-sandbox: starting the Kubernetes API test server, the fake GitHub, the node simulator \
         and rssc-controller; installing the CRDs from {}",
        match args.install {
            InstallFrom::Manifests => "deploy/crds/",
            InstallFrom::Charts => "charts/rssc-controller (helm template)",
        }
    ));
    // Traces go to a receiver here; the controller passes the variables on to the listener.
    let traces = match &args.traces {
        Some(_) => Some(OtlpReceiver::start().await),
        None => None,
    };
    let harness = Harness::start_with(
        "sandbox",
        HarnessOptions {
            bin_dir: Some(bin_dir.clone()),
            crds: Some(crds),
            controller_env: traces.as_ref().map(OtlpReceiver::env).unwrap_or_default(),
            ..HarnessOptions::default()
        },
    )
    .await;
    let profile = match &args.bin_dir {
        Some(_) => format!("prebuilt ({})", bin_dir.display()),
        None => binaries::profile_of(&bin_dir).unwrap_or_else(|| "unknown".to_owned()),
    };
    let install = Install { helm, root, samples };
    let result = play(&harness, &args, &profile, &install, &mut display).await;
    if let (Some(receiver), Some(path), Ok(_)) = (&traces, &args.traces, &result) {
        write_traces(&harness, receiver, path, &mut display).await?;
    }
    match &result {
        Ok(outcome) => {
            if args.keep && *outcome != Outcome::Interrupted {
                keep(&harness, &mut display).await;
            }
            display.message("rssc-sandbox: stopping");
            harness.stop().await;
        }
        Err(_) => {
            // Dropping the harness kills the processes but, unlike stopping it, keeps the logs.
            display.message(&format!(
                "rssc-sandbox: stopping; the logs stay in {}",
                harness.logs.display()
            ));
        }
    }
    result
}

/// Writes the traces received to `path` once every completed job's trace arrived (or after a
/// bounded wait), and shows the slowest jobs' waterfalls.
async fn write_traces(
    h: &Harness,
    receiver: &OtlpReceiver,
    path: &Path,
    display: &mut Display,
) -> anyhow::Result<()> {
    let completed = h.github.with_state(|s| {
        s.jobs
            .values()
            .filter(|j| j.state == rssc_sim_github::JobState::Completed)
            .count()
    });
    let finished_job_traces = || {
        receiver
            .spans()
            .iter()
            .filter(|s| s.name == "job" && s.attributes.contains_key("result"))
            .count()
    };
    // Spans leave the processes in batches every 200 ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while finished_job_traces() < completed && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let json = serde_json::to_string(&receiver.as_otlp_json()).context("serializing the traces")?;
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    display.message(&format!(
        "\nWhere the slowest jobs' time went (from their traces):\n\n{}",
        rssc_e2e::waterfall::waterfalls(&receiver.spans(), 3, 40)
    ));
    display.message(&format!(
        "rssc-sandbox: {} spans written to {} (OTLP JSON)",
        receiver.spans().len(),
        path.display()
    ));
    Ok(())
}

/// What to install the scale set from.
struct Install {
    /// `helm`, when installing through the charts.
    helm: Option<std::path::PathBuf>,
    /// The repository.
    root: std::path::PathBuf,
    /// The sample manifests.
    samples: manifests::Samples,
}

/// What the scenario driver tells the display.
#[derive(Debug)]
struct Progress {
    phase: String,
    all_queued: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            phase: "starting".to_owned(),
            all_queued: false,
        }
    }
}

async fn play(
    h: &Harness,
    args: &Args,
    profile: &str,
    install: &Install,
    display: &mut Display,
) -> anyhow::Result<Outcome> {
    let target = manifests::Target {
        github_base_url: h.github.base_url(),
        token: PAT.to_owned(),
        ca: ("github-ca".to_owned(), "ca.pem".to_owned()),
        node_label: SIMULATED_NODE_LABEL.to_owned(),
    };
    let m = manifests::point_at(&install.samples, &target)?;
    let (m, source) = match &install.helm {
        None => (
            m,
            format!(
                "{}, {} and {}",
                manifests::TOKEN_SECRET_SAMPLE,
                manifests::AUTOSCALE_SET_SAMPLE,
                manifests::RUNNER_SET_SAMPLE
            ),
        ),
        Some(helm) => {
            let values = charts::scale_set_values(&m, PAT, &h.namespace)?;
            let chart = install.root.join("charts/rssc-scale-set");
            let objects = charts::render(helm, &chart, &h.namespace, &values)?;
            (
                charts::scale_set_objects(&objects)?,
                "the Secret, AutoscaleSet and RunnerSet rendered from charts/rssc-scale-set".to_owned(),
            )
        }
    };
    apply::<Secret>(h, &m.token_secret).await?;
    apply::<AutoscaleSet>(h, &m.autoscale_set).await?;
    apply::<RunnerSet>(h, &m.runner_set).await?;
    let runner_set = name_of(&m.runner_set)?;
    display.message(&format!(
        "rssc-sandbox: applied {source} in namespace {}; waiting for the scale set and its listener",
        h.namespace
    ));
    let labels = wait_for_listener(h, &runner_set).await?;

    let steps = plan::plan(args.scenario, args.jobs as usize, &labels);
    let planned = plan::total_jobs(&steps);
    display.message(&format!(
        "rssc-sandbox: playing {} ({planned} jobs, runs-on {})",
        args.scenario.as_str(),
        labels.join(", ")
    ));
    // Count only what the scenario causes, not the setup.
    h.github.clear_calls();
    if let Some(faults) = h.kube_faults() {
        faults.clear_log();
    }
    let (seen, watches) = observe::watch_runners(&h.client, &h.namespace);
    let progress = Arc::new(Mutex::new(Progress::default()));
    let driver = tokio::spawn(drive(h.github.clone(), steps, progress.clone()));
    let mut sampler = Sampler::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_seconds);
    let mut ticker = tokio::time::interval(REFRESH);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut ctrl_c => {
                driver.abort();
                watches.iter().for_each(tokio::task::JoinHandle::abort);
                return Ok(Outcome::Interrupted);
            }
        }
        let (phase, all_queued) = {
            let p = progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (p.phase.clone(), p.all_queued)
        };
        let snapshot = Snapshot {
            elapsed: started.elapsed(),
            phase,
            jobs: job_tally(&h.github, planned),
            runners: runners(h, &runner_set).await,
            decisions: Vec::new(),
            rss_kib: (None, None),
        };
        let snapshot = sampler.sample(h, snapshot);
        display.show(&snapshot);
        if all_queued && snapshot.jobs.done >= planned {
            break Outcome::AllJobsDone;
        }
        if Instant::now() >= deadline {
            display.message(&format!(
                "rssc-sandbox: the scenario did not finish within {} s",
                args.timeout_seconds
            ));
            break Outcome::Incomplete;
        }
    };
    let elapsed = started.elapsed();
    driver.abort();
    watches.iter().for_each(tokio::task::JoinHandle::abort);

    let data = run_data(h, args, profile, planned, elapsed, seen.snapshot(), &sampler);
    let report = report::build(&data);
    display.message(&format!("\n{}", report::render(&report)));
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report).context("serializing the report")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        display.message(&format!("rssc-sandbox: report written to {}", path.display()));
    }
    Ok(outcome)
}

/// Plays the steps on the fake GitHub.
async fn drive(github: Arc<FakeGitHub>, steps: Vec<Step>, progress: Arc<Mutex<Progress>>) {
    let set_phase = |phase: &str| {
        progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .phase = phase.to_owned();
    };
    for step in steps {
        match step {
            Step::Queue { phase, scenario } => {
                set_phase(phase);
                // The handle ends when the last job is queued.
                let _ = github.run_scenario(scenario).await;
            }
            Step::WaitForJobs => {
                set_phase("burst: running");
                github
                    .wait_until(Duration::from_secs(24 * 3600), |s| {
                        s.jobs.values().all(|j| j.state == JobState::Completed)
                    })
                    .await;
            }
            Step::Quiet(duration) => {
                set_phase("quiet");
                // A scenario timer, not a wait for a condition.
                tokio::time::sleep(duration).await;
            }
        }
    }
    let mut p = progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    p.phase = "last jobs running".to_owned();
    p.all_queued = true;
}

async fn apply<K>(h: &Harness, manifest: &Value) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let name = name_of(manifest)?;
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

fn name_of(manifest: &Value) -> anyhow::Result<String> {
    manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("a sample has no metadata.name")
}

/// Waits until the fake GitHub has the scale set and the RunnerSet's listener is ready;
/// returns the scale set's labels.
async fn wait_for_listener(h: &Harness, runner_set: &str) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + STARTUP;
    loop {
        let labels = h
            .github
            .with_state(|s| s.scale_sets.values().next().map(|ss| ss.labels.clone()));
        let ready = h
            .api::<RunnerSet>()
            .get_opt(runner_set)
            .await
            .ok()
            .flatten()
            .and_then(|rs| rs.status)
            .and_then(|s| s.listener)
            .is_some_and(|l| l.ready);
        if let (Some(labels), true) = (labels, ready) {
            return Ok(labels);
        }
        if Instant::now() >= deadline {
            bail!(
                "the scale set or its listener did not come up within {STARTUP:?}; see the logs in {}",
                h.logs.display()
            );
        }
        tokio::time::sleep(REFRESH).await;
    }
}

fn job_tally(github: &FakeGitHub, planned: usize) -> display::Jobs {
    github.with_state(|s| {
        let mut jobs = display::Jobs {
            planned,
            ..display::Jobs::default()
        };
        for j in s.jobs.values() {
            match j.state {
                JobState::Completed => jobs.done += 1,
                JobState::Running => jobs.running += 1,
                JobState::Queued | JobState::Available | JobState::Acquired | JobState::Assigned => {
                    jobs.waiting += 1;
                }
            }
        }
        jobs
    })
}

async fn runners(h: &Harness, runner_set: &str) -> Option<display::Runners> {
    let ers = h
        .api::<EphemeralRunnerSet>()
        .get_opt(runner_set)
        .await
        .ok()
        .flatten()?;
    let status = ers.status.unwrap_or_default();
    Some(display::Runners {
        desired: ers.spec.replicas,
        current: status.current_runners,
        pending: status.pending_runners,
        idle: status.idle_runners,
        busy: status.busy_runners,
        failed: status.failed_runners,
        deleting: status.deleting_runners,
    })
}

/// Samples the processes' memory and reads the listener's new log lines.
#[derive(Debug, Default)]
struct Sampler {
    peaks: memory::Peaks,
    logs: BTreeMap<PathBuf, (u64, LineReader)>,
    decisions: Vec<Decision>,
}

impl Sampler {
    fn sample(&mut self, h: &Harness, mut snapshot: Snapshot) -> Snapshot {
        if let Some(usage) = h.controller_pid().and_then(memory::read) {
            self.peaks.controller(usage);
            snapshot.rss_kib.0 = Some(usage.rss_kib);
        }
        let summary = h
            .nodes
            .as_ref()
            .map(rssc_sim_node::NodeSim::summary)
            .unwrap_or_default();
        for pod in listener_pods(&summary) {
            if let Some(usage) = pod.pid.and_then(memory::read) {
                self.peaks.listener(usage);
                snapshot.rss_kib.1 = Some(usage.rss_kib);
            }
            if let Some(log) = &pod.log_file {
                let (offset, reader) = self.logs.entry(log.clone()).or_default();
                self.decisions.extend(reader.feed(&read_from(log, offset)));
            }
        }
        snapshot.decisions = self.decisions.clone();
        snapshot
    }
}

fn listener_pods(summary: &Summary) -> impl Iterator<Item = &rssc_sim_node::PodRecord> {
    summary.pods.values().filter(|p| p.kind == PodKind::Listener)
}

/// What was appended to `path` since `offset`, advancing it.
fn read_from(path: &Path, offset: &mut u64) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(*offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    *offset += bytes.len() as u64;
    String::from_utf8_lossy(&bytes).into_owned()
}

fn run_data(
    h: &Harness,
    args: &Args,
    profile: &str,
    planned: usize,
    elapsed: Duration,
    runners: BTreeMap<String, report::RunnerObjects>,
    sampler: &Sampler,
) -> RunData {
    let mut data = record_run(h, args.scenario.as_str(), planned, elapsed, runners);
    data.profile = profile.to_owned();
    data.memory = sampler.peaks;
    data
}

/// What a finished run left on the fake GitHub, the node simulator and the API server's request
/// log, as the report reads it (no profile or memory peaks: the caller knows those).
pub fn record_run(
    h: &Harness,
    scenario: &str,
    planned: usize,
    elapsed: Duration,
    runners: BTreeMap<String, report::RunnerObjects>,
) -> RunData {
    let calls = h.github.calls();
    let acquired = endpoints::acquisitions(
        calls
            .iter()
            .map(|c| (c.path.as_str(), c.status, c.at, c.body.as_str())),
    );
    let summary = h
        .nodes
        .as_ref()
        .map(rssc_sim_node::NodeSim::summary)
        .unwrap_or_default();
    let runner_of_job = runner_of_job(&summary);
    let jobs = h.github.with_state(|s| {
        s.jobs
            .values()
            .map(|j| JobRecord {
                id: j.id,
                queued: j.queue_time(),
                acquired: acquired.get(&j.id).copied(),
                started: j.runner_assign_time(),
                completed: j.state == JobState::Completed,
                result: j.result.clone(),
                run_count: j.run_count,
                runner: runner_of_job.get(&j.id).cloned(),
            })
            .collect()
    });
    RunData {
        scenario: scenario.to_owned(),
        profile: String::new(),
        jobs_planned: planned,
        elapsed,
        jobs,
        runners,
        github_calls: calls.iter().map(|c| (c.method.clone(), c.path.clone())).collect(),
        kube_requests: h.kube_faults().map(|f| f.counts()),
        memory: memory::Peaks::default(),
    }
}

/// The runner (EphemeralRunner name) that ran each job, from the node simulator's records.
pub fn runner_of_job(summary: &Summary) -> BTreeMap<i64, String> {
    summary
        .pods
        .iter()
        .filter_map(|(key, pod)| {
            let job = pod.runner.as_ref()?.job_id?;
            Some((job, key.rsplit('/').next()?.to_owned()))
        })
        .collect()
}

/// Leaves everything running until Ctrl-C, after saying how to look at it.
async fn keep(h: &Harness, display: &mut Display) {
    let kubeconfig = h.cluster().kubeconfig.display().to_string();
    let ns = &h.namespace;
    let summary = h
        .nodes
        .as_ref()
        .map(rssc_sim_node::NodeSim::summary)
        .unwrap_or_default();
    let listener_log = listener_pods(&summary)
        .filter_map(|p| p.log_file.clone())
        .last()
        .map_or_else(
            || format!("{}/*.log", h.logs.display()),
            |p| p.display().to_string(),
        );
    display.message(&format!(
        "\nEverything keeps running. In another shell (kubectl: `bash scripts/tools ensure kubectl` \
         installs it into .tools/bin):\n\
         \n  export KUBECONFIG={kubeconfig}\
         \n  kubectl -n {ns} get autoscalesets,runnersets,ephemeralrunnersets,ephemeralrunners\
         \n  kubectl -n {ns} get pods,secrets\
         \n  kubectl -n {ns} describe runnerset\
         \n  tail -f {listener_log}      # the listener's log: one line per decision\
         \n  tail -f {}/controller.log\
         \n\nPress Ctrl-C to stop.",
        h.logs.display()
    ));
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_read_from_where_the_last_read_stopped() {
        let path = std::env::temp_dir().join(format!("rssc-sandbox-read-from-{}.log", std::process::id()));
        std::fs::write(&path, "one\n").unwrap();
        let mut offset = 0;
        assert_eq!(read_from(&path, &mut offset), "one\n");
        assert_eq!(read_from(&path, &mut offset), "");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, b"two\n").unwrap();
        assert_eq!(read_from(&path, &mut offset), "two\n");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            read_from(&path, &mut offset),
            "",
            "a log that went away reads as empty"
        );
    }
}
