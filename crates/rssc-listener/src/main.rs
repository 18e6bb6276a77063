//! The `rssc-listener` binary.

use std::process::ExitCode;

use clap::Parser;
use rssc_listener::{Args, run};
use rssc_runtime::telemetry::Telemetry;

fn main() -> ExitCode {
    let args = Args::parse();
    // One scale set needs no thread pool; a single thread keeps the footprint small.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rssc-listener: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (telemetry, trace_problem) = Telemetry::start("rssc-listener");
        if let Err(err) = rssc_runtime::logging::init(&args.log, telemetry.tracer()) {
            eprintln!("rssc-listener: {err}");
            return ExitCode::FAILURE;
        }
        if let Some(problem) = trace_problem {
            tracing::warn!(error = %problem, "traces are not exported");
        }
        let result = run(args).await;
        telemetry.shutdown().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "listener cannot start");
                ExitCode::FAILURE
            }
        }
    })
}
