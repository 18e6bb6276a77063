//! The workspace's binaries, built for tests that run them as processes.

use std::path::{Path, PathBuf};

/// Builds the workspace's binaries in the `dev` profile (a no-op when they are current) and
/// returns the directory that holds them.
///
/// It builds every binary of the workspace with dev-dependencies in the feature resolution
/// (`--examples` asks for that; the workspace has none), which is how `cargo test --workspace`
/// resolves features. Building only the packages a test needs resolved other features of
/// shared dependencies: after a build of the suite, the first such test compiled about 40
/// crates again and kept a second copy of each in `target/`.
///
/// The test's own package variables are taken out of the build's environment: Cargo gives them
/// to the test process, and build scripts that declare them as inputs (ring's does) would see
/// them change between this build and the suite's, and compile again with everything that
/// depends on them, once per test package.
pub fn build() -> PathBuf {
    let cargo = env!("CARGO");
    let mut command = std::process::Command::new(cargo);
    command
        .args(["build", "--workspace", "--bins", "--examples"])
        .current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_the_test) {
            command.env_remove(name);
        }
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo} to build the binaries: {e}"));
    assert!(
        output.status.success(),
        "building the binaries failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug")
}

/// Whether Cargo sets the variable `name` for the package whose test runs (see "Environment
/// variables Cargo sets for crates" in the Cargo book).
fn set_by_cargo_for_the_test(name: &str) -> bool {
    const PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_EXE_"];
    const NAMES: [&str; 5] = [
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix)) || NAMES.contains(&name)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_package_variables_are_told_from_cargo_settings() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_BIN_EXE_rssc-listener",
        ] {
            assert!(set_by_cargo_for_the_test(name), "{name}");
        }
        for name in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "CARGO_PROFILE_DEV_DEBUG",
        ] {
            assert!(!set_by_cargo_for_the_test(name), "{name}");
        }
    }
}
