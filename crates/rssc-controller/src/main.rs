//! The `rssc-controller` binary.

use std::process::ExitCode;

use clap::Parser;
use rssc_controller::app::{Args, run};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(err) = rssc_runtime::logging::init(&args.log) {
        eprintln!("rssc-controller: {err}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rssc-controller: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, rssc_runtime::shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "controller cannot start");
            ExitCode::FAILURE
        }
    }
}
