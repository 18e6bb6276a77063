//! Builds the controller and listener binaries with the sandbox's own Cargo profile.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

/// The binaries the sandbox runs.
pub const BINARIES: [&str; 2] = ["rssc-controller", "rssc-listener"];

/// The workspace this sandbox was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Cargo profile whose output directory is `dir` (`target/debug` is the `dev` profile).
pub fn profile_of(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    Some(if name == "debug" { "dev" } else { name }.to_owned())
}

/// Builds the binaries next to this executable, with the same profile (a no-op when they are
/// current), and returns their directory. The sandbox itself is part of the build, so its
/// dependencies' features unify the same way as in `scripts/sandbox`'s one build: otherwise
/// Cargo would compile the shared dependencies a second time with other features.
pub fn build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where rssc-sandbox runs from")?;
    let dir = exe.parent().context("rssc-sandbox has no directory")?.to_owned();
    let profile = profile_of(&dir).context("cannot tell the Cargo profile")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "rssc-sandbox: building {} ({profile} profile)",
        BINARIES.join(" and ")
    );
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--profile", &profile, "--bins"])
        .current_dir(workspace_root());
    for b in std::iter::once("rssc-sandbox").chain(BINARIES) {
        command.args(["-p", b]);
    }
    let status = command.status().with_context(|| {
        format!(
            "cannot run {} (pass --bin-dir with prebuilt {} binaries instead)",
            cargo.to_string_lossy(),
            BINARIES.join(" and ")
        )
    })?;
    if !status.success() {
        bail!("building {} failed ({status})", BINARIES.join(" and "));
    }
    check(&dir)?;
    Ok(dir)
}

/// Fails unless `dir` holds both binaries.
pub fn check(dir: &Path) -> anyhow::Result<()> {
    for b in BINARIES {
        ensure!(
            dir.join(b).is_file(),
            "{} has no {b} binary (build it, or point --bin-dir at the directory that has it)",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_follow_the_target_directory() {
        assert_eq!(profile_of(Path::new("/w/target/debug")).as_deref(), Some("dev"));
        assert_eq!(
            profile_of(Path::new("/w/target/release")).as_deref(),
            Some("release")
        );
        assert_eq!(profile_of(Path::new("/w/target/bench")).as_deref(), Some("bench"));
    }

    #[test]
    fn a_directory_without_the_binaries_is_refused() {
        let err = check(Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(err.contains("has no rssc-controller binary"), "{err}");
    }
}
