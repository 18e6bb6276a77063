//! The sandbox end to end: the binary as a newcomer runs it (output not a terminal), with a
//! small job count, checked through its JSON report and its output.

use std::time::Duration;

use serde_json::Value;

/// The whole run, building the binaries included.
const LIMIT: Duration = Duration::from_secs(420);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_scenario_completes_every_job_and_reports_sane_figures() {
    let dir = std::env::temp_dir().join(format!("rssc-sandbox-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report_path = dir.join("report.json");
    let traces_path = dir.join("traces.json");
    let report = report_path.display().to_string();
    let traces = traces_path.display().to_string();
    let stdout = run_sandbox(&[
        "--jobs",
        "5",
        "--timeout-seconds",
        "240",
        "--report",
        &report,
        "--traces",
        &traces,
    ])
    .await;

    // Output that is not a terminal gets plain lines: no cursor movement, a line per decision.
    assert!(
        !stdout.contains('\x1b'),
        "escape sequences in plain output:\n{stdout}"
    );
    assert!(
        stdout.contains("decision: "),
        "no listener decision shown:\n{stdout}"
    );
    assert!(stdout.contains("phase") || stdout.contains("burst:"), "{stdout}");
    assert!(stdout.contains("Jobs completed: 6 of 6"), "{stdout}");
    assert!(!stdout.contains(rssc_e2e::PAT), "the token appears in the output");

    // The traces: an OTLP/JSON file with a finished job trace per job, and their waterfalls.
    let traces: Value = serde_json::from_str(&std::fs::read_to_string(&traces_path).unwrap()).unwrap();
    let spans = rssc_e2e::otlp::flatten(&traces);
    let jobs = spans
        .iter()
        .filter(|s| s.name == "job" && s.attributes.get("result").map(String::as_str) == Some("succeeded"))
        .count();
    assert_eq!(jobs, 6, "a finished trace per job in {}", traces_path.display());
    assert!(
        stdout.contains("Where the slowest jobs' time went") && stdout.contains("pod.create"),
        "no waterfall:\n{stdout}"
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let int = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{pointer} missing from the report: {report:#}"))
    };
    let num = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{pointer} missing from the report: {report:#}"))
    };
    // 5 in the burst and one trickled after the quiet spell.
    assert_eq!(int("/jobs/planned"), 6);
    assert_eq!(int("/jobs/completed"), 6);
    assert_eq!(int("/jobs/succeeded"), 6);
    assert_eq!(int("/jobs/ran_more_than_once"), 0);

    assert_eq!(int("/job_wait/count"), 6);
    let (p50, p95, max) = (
        int("/job_wait/p50_ms"),
        int("/job_wait/p95_ms"),
        int("/job_wait/max_ms"),
    );
    assert!(p50 <= p95 && p95 <= max, "{p50} {p95} {max}");
    assert!(max < 120_000, "a job waited {max} ms");

    let path = "/startup_path";
    assert_eq!(
        report
            .pointer(&format!("{path}/acquired_to_runner/count"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            + int(&format!("{path}/runner_already_there")),
        6,
        "every job's runner is accounted for: {report:#}"
    );
    for stage in ["runner_to_secret", "secret_to_pod"] {
        assert!(int(&format!("{path}/{stage}/count")) >= 1, "{stage}");
        assert!(int(&format!("{path}/{stage}/max_ms")) < 60_000, "{stage}");
    }

    let endpoints: Vec<&str> = report["github_calls"]["by_endpoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    for expected in [
        "GET /broker/scalesets/message",
        "POST /_apis/runtime/runnerscalesets/{id}/acquirejobs",
        "POST /_apis/runtime/runnerscalesets/{id}/generatejitconfig",
    ] {
        assert!(
            endpoints.contains(&expected),
            "{expected} not among {endpoints:?}"
        );
    }
    assert!(num("/github_calls/per_job") > 0.0);

    if std::env::var_os(rssc_test_support::KUBECONFIG_VAR).is_none() {
        let runners = int("/kubernetes_writes/runners");
        assert!((1..=20).contains(&runners), "{runners} runners for 6 jobs");
        assert!(
            num("/kubernetes_writes/per_runner") >= 3.0,
            "create runner, Secret and Pod at least"
        );
        let creates: Vec<&str> = report["kubernetes_writes"]["by_resource"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["verb"] == "create")
            .map(|w| w["resource"].as_str().unwrap())
            .collect();
        for resource in ["ephemeralrunners", "secrets", "pods"] {
            assert!(
                creates.contains(&resource),
                "no create of {resource}: {creates:?}"
            );
        }
    }

    // Real processes use megabytes; fewer would mean the wrong process was measured.
    for component in ["controller_kib", "listener_kib"] {
        let kib = int(&format!("/peak_memory/{component}"));
        assert!((1_024..4 << 20).contains(&kib), "{component} {kib}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_installs_through_the_helm_charts_as_well() {
    let stdout = run_sandbox(&[
        "--install",
        "charts",
        "--scenario",
        "burst",
        "--jobs",
        "2",
        "--timeout-seconds",
        "240",
    ])
    .await;
    assert!(
        stdout.contains("installing the CRDs from charts/rssc-controller")
            && stdout.contains("rendered from charts/rssc-scale-set"),
        "{stdout}"
    );
    assert!(stdout.contains("Jobs completed: 2 of 2"), "{stdout}");
    assert!(!stdout.contains(rssc_e2e::PAT), "the token appears in the output");
}

/// Runs the sandbox binary with `args` (output not a terminal) on the binaries the end-to-end
/// tests build (building them with the sandbox's own feature set as well would compile their
/// dependencies a second time); fails the test unless it exits 0, and returns its output.
async fn run_sandbox(args: &[&str]) -> String {
    let bin_dir = tokio::task::spawn_blocking(rssc_e2e::build_binaries)
        .await
        .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rssc-sandbox"))
        .args(args)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the rssc-sandbox binary starts");
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rssc-sandbox did not finish within {LIMIT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "rssc-sandbox {args:?} failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}
