//! What can be checked of the container images without Docker: each Dockerfile builds a binary
//! that exists with the release flags, ends on a static non-root base with OCI labels, and
//! puts the binary where the charts and the controller run it; the images the chart names
//! are the ones the Dockerfiles make, at the workspace's version.

use clap::CommandFactory;
use rssc_chart_tests::{chart_dir, parse_docs, repo_root};

fn dockerfile(binary: &str) -> String {
    let path = repo_root().join(format!("Dockerfile.{}", binary.trim_start_matches("rssc-")));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn each_dockerfile_builds_its_binary_into_a_static_non_root_image() {
    for binary in ["rssc-controller", "rssc-listener"] {
        let text = dockerfile(binary);
        let manifest =
            std::fs::read_to_string(repo_root().join(format!("crates/{binary}/Cargo.toml"))).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "package {binary} exists"
        );
        assert!(
            repo_root().join(format!("crates/{binary}/src/main.rs")).is_file(),
            "{binary} has a binary target"
        );
        assert!(
            text.contains(&format!(
                "cargo build --release --locked -p {binary} --bin {binary}"
            )),
            "{binary}: the release build"
        );
        assert!(
            text.contains("-alpine AS build"),
            "{binary}: a musl (static) build stage"
        );
        let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(stages.len(), 2, "{binary}: multi-stage");
        assert!(
            stages[1].contains("distroless/static") && stages[1].ends_with(":nonroot"),
            "{binary}: final stage {}",
            stages[1]
        );
        assert!(text.contains("\nUSER 65532:65532\n"), "{binary}: non-root");
        assert!(
            text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "{binary}: on PATH, as the controller runs the listener (command `rssc-listener`)"
        );
        for label in [
            "title",
            "description",
            "source",
            "licenses",
            "version",
            "revision",
            "created",
        ] {
            assert!(
                text.contains(&format!("org.opencontainers.image.{label}=")),
                "{binary}: OCI label {label}"
            );
        }
    }
}

#[test]
fn the_build_context_keeps_the_workspace() {
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["crates/", "e2e/", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !ignored
                .iter()
                .any(|i| needed.starts_with(i.trim_end_matches('/'))),
            "{needed} is in the build context"
        );
    }
    assert!(ignored.contains(&"target/") && ignored.contains(&".git/"));
}

#[test]
fn the_chart_names_the_images_the_dockerfiles_make_at_the_workspace_version() {
    let chart =
        &parse_docs(&std::fs::read_to_string(chart_dir("rssc-controller").join("Chart.yaml")).unwrap())[0];
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["appVersion"], version);
    let scale_set =
        &parse_docs(&std::fs::read_to_string(chart_dir("rssc-scale-set").join("Chart.yaml")).unwrap())[0];
    assert_eq!(scale_set["appVersion"], version);

    let values =
        &parse_docs(&std::fs::read_to_string(chart_dir("rssc-controller").join("values.yaml")).unwrap())[0];
    assert_eq!(values["image"]["repository"], "ghcr.io/rssc-dev/rssc-controller");
    let listener = values["listenerImage"]["repository"].as_str().unwrap();
    assert!(listener.ends_with("/rssc-listener"));
    for binary in ["rssc-controller", "rssc-listener"] {
        assert!(dockerfile(binary).contains(&format!("ghcr.io/rssc-dev/{binary}:")));
    }
    // The controller's own default listener image is the chart's.
    let command = rssc_controller::app::Args::command();
    let default = command
        .get_arguments()
        .find(|a| a.get_id() == "listener_image")
        .and_then(|a| a.get_default_values().first().cloned())
        .expect("--listener-image has a default");
    assert_eq!(default.to_string_lossy(), format!("{listener}:{version}"));
}
