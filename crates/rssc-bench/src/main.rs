//! The `rssc-bench` binary (`just bench`): figures, not pass/fail tests.

mod bench;
mod build;
mod case;
mod cli;
mod cpu;
mod figures;
mod gone;
mod limit;
mod machine;
mod plan;
mod render;
mod result;
mod scale_sets;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rssc-bench: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rssc-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
