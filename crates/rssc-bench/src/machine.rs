//! The machine a run measured: cores, memory, OS, compiler and commit (parsing is pure).

use std::process::Command;

use serde::{Deserialize, Serialize};

/// What the figures depend on besides the code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// CPU model, from `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// Total memory, MiB, from `/proc/meminfo`.
    pub memory_mib: Option<u64>,
    /// Operating system (`PRETTY_NAME` of `/etc/os-release`) and kernel release.
    pub os: String,
    /// `rustc --version`.
    pub rustc: Option<String>,
    /// `git rev-parse HEAD`, with `-dirty` when the tree has uncommitted changes.
    pub git_commit: Option<String>,
}

/// Reads the machine's description.
pub fn describe() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let os_name =
        os_release_name(&read("/etc/os-release")).unwrap_or_else(|| std::env::consts::OS.to_owned());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        cpu_model: cpu_model(&read("/proc/cpuinfo")),
        memory_mib: mem_total_kib(&read("/proc/meminfo")).map(|k| k / 1024),
        os: if kernel.is_empty() {
            os_name
        } else {
            format!("{os_name}, Linux {kernel}")
        },
        rustc: output("rustc", &["--version"]),
        git_commit: output("git", &["rev-parse", "HEAD"]).map(|commit| {
            let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{commit}-dirty") } else { commit }
        }),
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// `MemTotal` of a `/proc/meminfo` text, KiB.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `PRETTY_NAME` of an `/etc/os-release` text.
pub fn os_release_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n").as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(
            mem_total_kib("MemTotal:        8041280 kB\nMemFree: 1 kB\n"),
            Some(8_041_280)
        );
        assert_eq!(mem_total_kib("nothing"), None);
        assert_eq!(
            os_release_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn this_machine_has_cores() {
        assert!(describe().cores >= 1);
    }
}
