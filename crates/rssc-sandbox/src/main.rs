//! The `rssc-sandbox` binary: the README's first command.

use std::process::ExitCode;

use clap::Parser as _;
use rssc_sandbox::{cli, sandbox};

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rssc-sandbox: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sandbox::run(args)) {
        Ok(sandbox::Outcome::AllJobsDone) => ExitCode::SUCCESS,
        Ok(sandbox::Outcome::Incomplete) => ExitCode::from(2),
        Ok(sandbox::Outcome::Interrupted) => ExitCode::from(130),
        Err(err) => {
            eprintln!("rssc-sandbox: {err:#}");
            ExitCode::FAILURE
        }
    }
}
