//! Memory of the controller and listener processes, from `/proc/<pid>/status`.

use serde::Serialize;

/// What `/proc/<pid>/status` says about a process's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Resident set size now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (`VmHWM`).
    pub peak_kib: u64,
}

/// Parses the `VmRSS` and `VmHWM` lines of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<Usage> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Usage {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// The memory of process `pid`, if it runs (Linux only).
pub fn read(pid: u32) -> Option<Usage> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Peak memory per component, over every process that played it (a restarted listener is a
/// new process; its peak counts too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Peaks {
    /// The controller's peak resident set, KiB.
    pub controller_kib: Option<u64>,
    /// The listener's peak resident set, KiB.
    pub listener_kib: Option<u64>,
}

impl Peaks {
    /// Takes in a sample of the controller's memory.
    pub fn controller(&mut self, usage: Usage) {
        self.controller_kib = Some(self.controller_kib.unwrap_or(0).max(usage.peak_kib));
    }

    /// Takes in a sample of a listener's memory.
    pub fn listener(&mut self, usage: Usage) {
        self.listener_kib = Some(self.listener_kib.unwrap_or(0).max(usage.peak_kib));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str =
        "Name:\trssc-listener\nVmPeak:\t  120000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    8000 kB\nThreads:\t1\n";

    #[test]
    fn the_status_file_gives_rss_and_peak() {
        assert_eq!(
            parse_status(STATUS),
            Some(Usage {
                rss_kib: 8000,
                peak_kib: 9876
            })
        );
        assert_eq!(
            parse_status("Name:\tkthreadd\n"),
            None,
            "kernel threads have no memory lines"
        );
    }

    #[test]
    fn peaks_keep_the_largest_sample() {
        let mut peaks = Peaks::default();
        peaks.listener(Usage {
            rss_kib: 1,
            peak_kib: 10,
        });
        peaks.listener(Usage {
            rss_kib: 1,
            peak_kib: 7,
        });
        assert_eq!(peaks.listener_kib, Some(10));
        assert_eq!(peaks.controller_kib, None);
    }

    #[test]
    fn this_process_can_be_read() {
        let usage = read(std::process::id()).expect("/proc/self/status is readable on Linux");
        assert!(usage.peak_kib >= usage.rss_kib && usage.rss_kib > 0);
    }
}
