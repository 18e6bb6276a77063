//! Flags shared by the binaries; each can also be set through its `RSSC_*` environment variable.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    #[default]
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// Logging flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct LogArgs {
    /// Log filter: a level (`info`) or per-target directives (`info,rssc_controller=debug`).
    #[arg(long, env = "RSSC_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, env = "RSSC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// Admin server flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct AdminArgs {
    /// Address of the admin server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "RSSC_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        admin: AdminArgs,
    }

    #[test]
    fn defaults_suit_a_pod() {
        let cli = Cli::try_parse_from(["bin"]).unwrap();
        assert_eq!(cli.log.log_format, LogFormat::Json);
        assert_eq!(cli.log.log_level, "info");
        assert_eq!(cli.admin.admin_addr.port(), 8080);
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "bin",
            "--log-format",
            "text",
            "--log-level",
            "debug",
            "--admin-addr",
            "127.0.0.1:9",
        ])
        .unwrap();
        assert_eq!(cli.log.log_format, LogFormat::Text);
        assert_eq!(cli.log.log_level, "debug");
        assert_eq!(cli.admin.admin_addr, "127.0.0.1:9".parse().unwrap());
    }

    #[test]
    fn a_bad_format_is_a_clear_error() {
        let err = Cli::try_parse_from(["bin", "--log-format", "yaml"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("json") && err.contains("text"), "{err}");
    }
}
