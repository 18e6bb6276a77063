//! The `rssc-listener` binary.

use std::process::ExitCode;

use clap::Parser;
use rssc_listener::{Args, run};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(err) = rssc_runtime::logging::init(&args.log) {
        eprintln!("rssc-listener: {err}");
        return ExitCode::FAILURE;
    }
    // One scale set needs no thread pool; a single thread keeps the footprint small.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rssc-listener: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "listener cannot start");
            ExitCode::FAILURE
        }
    }
}
