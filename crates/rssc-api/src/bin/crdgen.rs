//! Writes the CRD manifests to `deploy/crds/` (or a given directory), or with `--check` fails
//! if the files there differ from a fresh generation.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds"));
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] [DIR]   (DIR defaults to deploy/crds)");
                return ExitCode::SUCCESS;
            }
            other => dir = PathBuf::from(other),
        }
    }
    match run(&dir, check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("crdgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &std::path::Path, check: bool) -> Result<(), String> {
    let files = rssc_api::crd::render_all().map_err(|e| match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    })?;
    let mut stale = Vec::new();
    if !check {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    for file in &files {
        let path = dir.join(&file.file_name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(file.content.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::write(&path, &file.content)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("out of date: {}; run `just generate`", stale.join(", ")))
    }
}
