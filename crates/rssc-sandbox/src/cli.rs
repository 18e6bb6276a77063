//! Command-line flags.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::plan::ScenarioName;

/// Runs rssc on this machine against a simulated cluster and a simulated GitHub, plays a job
/// scenario, shows it live and ends with a report.
#[derive(Debug, Clone, Parser)]
#[command(name = "rssc-sandbox", version, about)]
pub struct Args {
    /// The job scenario to play.
    #[arg(long, env = "RSSC_SANDBOX_SCENARIO", value_enum, default_value_t = ScenarioName::BurstQuietTrickle)]
    pub scenario: ScenarioName,

    /// Jobs in the scenario's main phase (the burst; the trickle after it adds a fifth as many).
    #[arg(long, env = "RSSC_SANDBOX_JOBS", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub jobs: u32,

    /// When the scenario is done, leave everything running, print how to look at it with
    /// kubectl, and wait for Ctrl-C.
    #[arg(long, env = "RSSC_SANDBOX_KEEP")]
    pub keep: bool,

    /// Also write the report as JSON to this file.
    #[arg(long, env = "RSSC_SANDBOX_REPORT", value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Install the CRDs, the AutoscaleSet and the RunnerSet from the raw manifests in deploy/, or
    /// render them from the Helm charts in charts/ (installs helm into .tools/ on first use).
    #[arg(long, env = "RSSC_SANDBOX_INSTALL", value_enum, default_value_t = InstallFrom::Manifests)]
    pub install: InstallFrom,

    /// Export the binaries' OpenTelemetry traces to this file (OTLP JSON), and print where the
    /// slowest jobs' time went.
    #[arg(long, env = "RSSC_SANDBOX_TRACES", value_name = "FILE")]
    pub traces: Option<PathBuf>,

    /// Print plain lines even on a terminal.
    #[arg(long, env = "RSSC_SANDBOX_PLAIN")]
    pub plain: bool,

    /// Run the rssc-controller and rssc-listener binaries in this directory instead of building
    /// them with the sandbox's own Cargo profile.
    #[arg(long, env = "RSSC_SANDBOX_BIN_DIR", value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// The directory with crds/ and samples/ (the repository's deploy/).
    #[arg(long, env = "RSSC_SANDBOX_DEPLOY_DIR", value_name = "DIR")]
    pub deploy_dir: Option<PathBuf>,

    /// Give up when the scenario has not finished after this many seconds.
    #[arg(long, env = "RSSC_SANDBOX_TIMEOUT_SECONDS", default_value_t = 900)]
    pub timeout_seconds: u64,
}

/// Where the sandbox takes what it installs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InstallFrom {
    /// `deploy/crds/` and `deploy/samples/`.
    Manifests,
    /// `charts/rssc-controller` (its CRDs) and `charts/rssc-scale-set`, via `helm template`.
    Charts,
}
