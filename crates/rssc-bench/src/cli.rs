//! Command-line flags.

use std::path::PathBuf;

use clap::Parser;

use crate::plan::Kind;

/// Runs rssc's real controller and listener against the simulated cluster, GitHub and nodes in
/// a series of job scenarios, several times each, and writes the figures (JSON per run, and
/// docs/benchmarks.md from the latest run).
#[derive(Debug, Clone, Parser)]
#[command(name = "rssc-bench", version, about)]
pub struct Args {
    /// Runs of each scenario; each figure is the median over them.
    #[arg(long, env = "RSSC_BENCH_RUNS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,

    /// Runs of the largest burst (default: --runs), when it is too slow to repeat as often.
    #[arg(long, env = "RSSC_BENCH_LARGE_RUNS")]
    pub large_runs: Option<u32>,

    /// Burst sizes (jobs queued at once, one scale set); the largest gives the headline figures.
    #[arg(long, env = "RSSC_BENCH_SIZES", value_delimiter = ',', default_values_t = [10, 100, 1000])]
    pub sizes: Vec<usize>,

    /// Scale set counts (one listener each) for the growth by scale sets.
    #[arg(long, env = "RSSC_BENCH_SCALE_SETS", value_delimiter = ',', default_values_t = [1, 5, 20])]
    pub scale_sets: Vec<usize>,

    /// Jobs per scale set in the scale-set scenarios.
    #[arg(long, env = "RSSC_BENCH_JOBS_PER_SCALE_SET", default_value_t = 20)]
    pub jobs_per_scale_set: usize,

    /// Runners (maxRunners) in the drain scenario.
    #[arg(long, env = "RSSC_BENCH_DRAIN_RUNNERS", default_value_t = 200)]
    pub drain_runners: usize,

    /// Jobs in the drain scenario (all queued at once, each running 1 s).
    #[arg(long, env = "RSSC_BENCH_DRAIN_JOBS", default_value_t = 1000)]
    pub drain_jobs: usize,

    /// Jobs in the steady scenario (queued one after another at --steady-rate, each running
    /// 3 s).
    #[arg(long, env = "RSSC_BENCH_STEADY_JOBS", default_value_t = 200)]
    pub steady_jobs: usize,

    /// Jobs queued per second in the steady scenario.
    #[arg(long, env = "RSSC_BENCH_STEADY_RATE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub steady_rate: u32,

    /// Play only these kinds of scenario (default: all).
    #[arg(long, env = "RSSC_BENCH_ONLY", value_enum, value_delimiter = ',')]
    pub only: Vec<Kind>,

    /// At most this many jobs in any scenario (larger sizes are left out, the others capped).
    #[arg(long, env = "RSSC_BENCH_MAX_JOBS")]
    pub max_jobs: Option<usize>,

    /// A short run for figures in a few minutes: one run each, bursts of 10 and 100, 1 and 5
    /// scale sets, a drain of 200 jobs, 50 steady jobs.
    #[arg(long, env = "RSSC_BENCH_QUICK")]
    pub quick: bool,

    /// The controller's Kubernetes client QPS (also the limit measurement's); 0, the
    /// controller's default, sets no client-side limit.
    #[arg(long, env = "RSSC_BENCH_KUBE_QPS", default_value_t = 0)]
    pub kube_qps: u32,

    /// The controller's Kubernetes client burst (also the limit measurement's).
    #[arg(long, env = "RSSC_BENCH_KUBE_BURST", default_value_t = 1000)]
    pub kube_burst: u32,

    /// EphemeralRunner reconciles at once (also the limit measurement's concurrency).
    #[arg(long, env = "RSSC_BENCH_RUNNER_CONCURRENCY", default_value_t = 32)]
    pub runner_concurrency: u16,

    /// How much later than at once the fake GitHub answers every call (polls,
    /// acknowledgements, acquisitions, JIT configurations), in milliseconds: GitHub's own
    /// latency, which the fake otherwise leaves out. Our reference notes give no figure for
    /// it, so a run with it shows how the figures move with it, not what GitHub does.
    #[arg(long, env = "RSSC_BENCH_GITHUB_LATENCY_MS", default_value_t = 0)]
    pub github_latency_ms: u64,

    /// The controller's log filter (`RSSC_LOG_LEVEL`), e.g.
    /// `info,rssc_controller::ephemeral_runner_set=debug`; the logs stay with
    /// `RSSC_E2E_KEEP_LOGS=1`.
    #[arg(long, env = "RSSC_BENCH_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Give up a scenario run that has not finished after this many seconds.
    #[arg(long, env = "RSSC_BENCH_TIMEOUT_SECONDS", default_value_t = 600)]
    pub timeout_seconds: u64,

    /// Directory with the rssc-controller and rssc-listener binaries (default: this one's).
    #[arg(long, env = "RSSC_BENCH_BIN_DIR", value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Where run JSON files go (`<dir>/runs/<UTC time>.json`).
    #[arg(
        long,
        env = "RSSC_BENCH_OUT_DIR",
        default_value = "docs/benchmarks",
        value_name = "DIR"
    )]
    pub out_dir: PathBuf,

    /// Write the JSON to this file instead of a new file under --out-dir.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// The page regenerated from the run.
    #[arg(long, default_value = "docs/benchmarks.md", value_name = "FILE")]
    pub doc: PathBuf,

    /// Do not regenerate the page.
    #[arg(long)]
    pub no_doc: bool,

    /// Run nothing: regenerate the page from this run JSON file.
    #[arg(long, value_name = "FILE")]
    pub render: Option<PathBuf>,

    /// The directory with crds/ and samples/ (the repository's deploy/).
    #[arg(
        long,
        env = "RSSC_BENCH_DEPLOY_DIR",
        default_value = "deploy",
        value_name = "DIR"
    )]
    pub deploy_dir: PathBuf,
}
