//! The `rssc-controller` binary.

use std::process::ExitCode;

use clap::Parser;
use rssc_controller::app::{Args, run};
use rssc_runtime::telemetry::Telemetry;

/// jemalloc in the musl build: musl's malloc serialises every allocation on one lock.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rssc-controller: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (telemetry, trace_problem) = Telemetry::start("rssc-controller");
        if let Err(err) = rssc_runtime::logging::init(&args.log, telemetry.tracer()) {
            eprintln!("rssc-controller: {err}");
            return ExitCode::FAILURE;
        }
        if let Some(problem) = trace_problem {
            tracing::warn!(error = %problem, "traces are not exported");
        }
        let result = run(args, rssc_runtime::shutdown::signal()).await;
        telemetry.shutdown().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "controller cannot start");
                ExitCode::FAILURE
            }
        }
    })
}
