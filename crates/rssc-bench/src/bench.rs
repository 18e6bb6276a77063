//! A whole bench run: every scenario its number of times, then the JSON and the page.

use std::{
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, ensure};
use rssc_sandbox::{binaries, manifests};

use crate::{
    build,
    case::{self, Env},
    cli::Args,
    figures, limit, machine, plan, render,
    result::{self, BenchResult, CaseResult, Settings},
};

/// The fake GitHub's long-poll window in the bench: GitHub's (about 50 s, our reference notes),
/// so that polls that find nothing are counted as often as they happen in production.
pub const LONG_POLL_WINDOW_S: u64 = 50;

/// Runs the bench (or only renders the page, with `--render`).
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(json) = &args.render {
        let text = std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let run: BenchResult =
            serde_json::from_str(&text).with_context(|| format!("{} is not a bench run", json.display()))?;
        return write_page(&args.doc, &run, json);
    }
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot tell where rssc-bench runs from")?
            .parent()
            .context("rssc-bench has no directory")?
            .to_owned(),
    };
    binaries::check(&bin_dir)?;
    let bin_dir =
        std::fs::canonicalize(&bin_dir).with_context(|| format!("resolving {}", bin_dir.display()))?;
    let env = Env {
        crds: manifests::load_crds(&args.deploy_dir)?,
        samples: manifests::load_samples(&args.deploy_dir)?,
        client: limit::ClientSettings {
            qps: args.kube_qps,
            burst: args.kube_burst,
            concurrency: usize::from(args.runner_concurrency),
        },
        timeout: std::time::Duration::from_secs(args.timeout_seconds),
        log_level: args.log_level.clone(),
        github_latency: std::time::Duration::from_millis(args.github_latency_ms),
        bin_dir: bin_dir.clone(),
    };
    let started_at = result::utc(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let clock = Instant::now();
    let cases = plan::cases(&args);
    let total_runs: u32 = cases.iter().map(|c| c.runs).sum();
    eprintln!(
        "rssc-bench: {} scenarios, {total_runs} runs, binaries from {}",
        cases.len(),
        bin_dir.display()
    );
    let mut results = Vec::new();
    for case in cases {
        let mut runs = Vec::new();
        let mut failures = Vec::new();
        for i in 1..=case.runs {
            let t = Instant::now();
            eprintln!("rssc-bench: {} run {i}/{} ...", case.name, case.runs);
            match case::run_once(&case, &env).await {
                Ok(f) => {
                    eprintln!(
                        "rssc-bench: {} run {i}: {:.0} s; Pods created after {} s, acquired → Pod p50 {} ms",
                        case.name,
                        t.elapsed().as_secs_f64(),
                        show(f.get(figures::keys::PODS_ALL_CREATED_S)),
                        show(f.get(figures::keys::ACQUIRED_TO_POD_P50)),
                    );
                    runs.push(f);
                }
                Err(err) => {
                    eprintln!("rssc-bench: {} run {i} failed: {err:#}", case.name);
                    failures.push(format!("{err:#}"));
                }
            }
        }
        let median = figures::medians(&runs);
        results.push(CaseResult {
            case,
            runs,
            failures,
            median,
        });
    }
    let run = BenchResult {
        started_at: started_at.clone(),
        duration_s: figures::round(clock.elapsed().as_secs_f64(), 1),
        machine: machine::describe(),
        settings: Settings {
            profile: binaries::profile_of(&bin_dir).unwrap_or_else(|| "unknown".into()),
            build: build::describe(&bin_dir, "rssc-listener"),
            kube_qps: args.kube_qps,
            kube_burst: args.kube_burst,
            runner_concurrency: args.runner_concurrency,
            long_poll_window_s: LONG_POLL_WINDOW_S,
            controller_log_level: args.log_level.clone(),
            github_latency_ms: args.github_latency_ms,
            bench_allocator: crate::BENCH_ALLOCATOR.into(),
        },
        cases: results,
    };
    let json_path = match &args.json {
        Some(path) => path.clone(),
        None => args.out_dir.join("runs").join(result::file_name(&started_at)),
    };
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&run).context("serializing the run")?;
    std::fs::write(&json_path, text + "\n").with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("rssc-bench: figures written to {}", json_path.display());
    if !args.no_doc {
        write_page(&args.doc, &run, &json_path)?;
    }
    let failed: usize = run.cases.iter().map(|c| c.failures.len()).sum();
    ensure!(failed == 0, "{failed} run(s) failed; see above and the JSON");
    Ok(())
}

fn show(v: Option<&f64>) -> String {
    v.map_or_else(|| "?".to_owned(), ToString::to_string)
}

/// Writes the page, linking the JSON by its path relative to the page.
fn write_page(doc: &Path, run: &BenchResult, json: &Path) -> anyhow::Result<()> {
    let link = relative_to(json, doc.parent().unwrap_or_else(|| Path::new("")));
    std::fs::write(doc, render::page(run, &link.display().to_string()))
        .with_context(|| format!("writing {}", doc.display()))?;
    eprintln!("rssc-bench: {} regenerated", doc.display());
    Ok(())
}

/// `path` relative to `dir` when it lies under it, else as given.
fn relative_to(path: &Path, dir: &Path) -> PathBuf {
    path.strip_prefix(dir)
        .map_or_else(|_| path.to_owned(), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_is_linked_relative_to_the_page() {
        assert_eq!(
            relative_to(Path::new("docs/benchmarks/runs/a.json"), Path::new("docs")),
            Path::new("benchmarks/runs/a.json")
        );
        assert_eq!(
            relative_to(Path::new("/tmp/a.json"), Path::new("docs")),
            Path::new("/tmp/a.json")
        );
    }
}
