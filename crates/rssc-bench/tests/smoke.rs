//! The bench itself works: a tiny run (debug binaries, one burst and two scale sets) writes
//! a JSON file with every figure, and the page renders from it.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

/// Every figure the targets table needs from the headline scenario.
const HEADLINE: [&str; 13] = [
    "pods_all_created_s",
    "acquired_to_pod_p50_ms",
    "acquired_to_pod_p99_ms",
    "exit_to_gone_p50_ms",
    "github_calls_per_job",
    "kube_writes_per_runner",
    "listener_rss_idle_mib",
    "listener_rss_peak_mib",
    "controller_rss_peak_mib",
    "controller_cpu_ms_per_runner",
    "limit_pairs_per_second",
    "burst_fraction_of_limit",
    "acquired_to_runner_p50_ms",
];

#[test]
fn a_small_run_reports_every_figure() {
    let bin_dir = rssc_e2e::build_binaries();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("rssc-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("run.json");
    let status = Command::new(env!("CARGO_BIN_EXE_rssc-bench"))
        .args([
            "--runs",
            "1",
            "--max-jobs",
            "5",
            "--scale-sets",
            "2",
            "--only",
            "burst,scale-sets,steady",
            "--steady-rate",
            "5",
        ])
        .args(["--timeout-seconds", "120", "--no-doc"])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--deploy-dir")
        .arg(root.join("deploy"))
        .arg("--json")
        .arg(&json)
        .status()
        .expect("rssc-bench starts");
    assert!(
        status.success(),
        "rssc-bench failed ({status}); its output is above"
    );

    let run: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(run["machine"]["cores"].as_u64().unwrap() >= 1);
    let cases = run["cases"].as_array().unwrap();
    let names: Vec<&str> = cases
        .iter()
        .map(|c| c["case"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["burst-5", "scale-sets-2", "steady-5-per-s"]);
    for c in cases {
        assert_eq!(c["runs"].as_array().unwrap().len(), 1, "{c}");
        assert_eq!(c["median"]["jobs_completed"], c["median"]["jobs"], "{c}");
    }
    let headline = &cases[0]["median"];
    for key in HEADLINE {
        assert!(headline[key].is_number(), "the burst has no {key}: {headline}");
    }
    assert!(
        headline
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("span.")),
        "the binaries' spans reached the bench: {headline}"
    );
    assert!(cases[1]["median"]["jobs_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(cases[1]["median"]["jobs"], 4.0, "two scale sets of two jobs");
    let steady = &cases[2]["median"];
    assert_eq!(steady["jobs"], 5.0, "the cap holds for steady jobs too");
    let queued_over = steady["queued_over_s"].as_f64().unwrap();
    assert!(
        (0.7..5.0).contains(&queued_over),
        "five jobs five a second are queued over about 0.8 s, not at once: {steady}"
    );
    assert_eq!(
        cases[0]["median"]["queued_over_s"], 0.0,
        "a burst is queued at once"
    );

    let page = dir.join("benchmarks.md");
    let status = Command::new(env!("CARGO_BIN_EXE_rssc-bench"))
        .arg("--render")
        .arg(&json)
        .arg("--doc")
        .arg(&page)
        .status()
        .unwrap();
    assert!(status.success());
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(page.contains("## Figures against the targets"), "{page}");
    assert!(
        page.contains("5 jobs queued at once → 5 runner Pods created"),
        "{page}"
    );
    assert!(page.contains("## Jobs arriving at a steady rate"), "{page}");
    std::fs::remove_dir_all(&dir).unwrap();
}
