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

/// The allocator of this process, which runs the simulated pieces: recorded with each run.
const BENCH_ALLOCATOR: &str = if cfg!(feature = "jemalloc") {
    "jemalloc"
} else {
    "system"
};

/// jemalloc for the simulated pieces when built with the `jemalloc` feature (`scripts/bench`).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
