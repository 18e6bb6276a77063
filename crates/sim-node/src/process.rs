//! Running a container's command as a local process: the command line and environment a
//! kubelet would give it (pure), and the process itself (start, readiness probe, stop).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

use crate::env::{Mapping, expand, rewrite_path};

/// Environment variable holding the listener's admin address.
pub const ADMIN_ADDR_ENV: &str = "RSSC_ADMIN_ADDR";

/// The process to start for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Executable.
    pub program: PathBuf,
    /// Arguments after the executable.
    pub args: Vec<String>,
    /// Complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
}

/// How `container` is started locally: `binary` replaces the image's executable (the first
/// element of `command`), the rest of `command` and `args` follow with `$(VAR)` expanded and
/// mount paths rewritten; the environment gets paths rewritten, `RSSC_ADMIN_ADDR` moved to
/// `127.0.0.1:admin_port`, `KUBECONFIG` and `HOME` set, and the in-cluster service variables
/// removed so the process uses the kubeconfig.
pub fn launch(
    container: &Container,
    env: &[(String, String)],
    mappings: &[Mapping],
    binary: &Path,
    admin_port: u16,
    kubeconfig: &Path,
    home: &Path,
) -> Launch {
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("KUBERNETES_SERVICE_") && k != "KUBECONFIG")
        .map(|(k, v)| {
            let v = if k == ADMIN_ADDR_ENV {
                format!("127.0.0.1:{admin_port}")
            } else {
                rewrite_path(v, mappings)
            };
            (k.clone(), v)
        })
        .collect();
    if !out.iter().any(|(k, _)| k == ADMIN_ADDR_ENV) {
        out.push((ADMIN_ADDR_ENV.to_owned(), format!("127.0.0.1:{admin_port}")));
    }
    out.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
    out.push(("HOME".to_owned(), home.display().to_string()));
    let words = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|a| rewrite_path(&expand(a, env), mappings))
        .collect();
    Launch {
        program: binary.to_owned(),
        args: words,
        env: out,
    }
}

/// The container port a readiness probe targets (by number or by port name), if it has an
/// HTTP readiness probe: `(path, port)`.
pub fn readiness_target(container: &Container) -> Option<(String, i32)> {
    http_target(container, container.readiness_probe.as_ref()?)
}

/// What an HTTP probe targets: `(path, container port)`, the port resolved by number or name.
pub fn http_target(container: &Container, probe: &Probe) -> Option<(String, i32)> {
    let get = probe.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)?,
    };
    Some((get.path.clone().unwrap_or_else(|| "/".into()), port))
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|s| u64::try_from(s).ok()).unwrap_or(default))
}

/// An HTTP probe's settings and its consecutive results, counted against its thresholds the
/// way the kubelet's prober does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Request path.
    pub path: String,
    /// Period between probes (`periodSeconds`, default 10 s).
    pub period: Duration,
    /// Wait before the first probe (`initialDelaySeconds`).
    pub initial_delay: Duration,
    /// Per-probe timeout (`timeoutSeconds`, default 1 s).
    pub timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// The probe's current verdict.
    pub passing: bool,
}

impl HttpProbe {
    /// The HTTP probe `probe` of `container`, starting with verdict `passing` (false for
    /// readiness, true for liveness); `None` if it is not an HTTP probe on a known port.
    pub fn new(container: &Container, probe: &Probe, passing: bool) -> Option<Self> {
        let (path, _) = http_target(container, probe)?;
        let threshold = |v: Option<i32>, d: u32| {
            v.and_then(|x| u32::try_from(x).ok())
                .filter(|x| *x > 0)
                .unwrap_or(d)
        };
        Some(Self {
            path,
            period: secs(probe.period_seconds, 10),
            initial_delay: secs(probe.initial_delay_seconds, 0),
            timeout: secs(probe.timeout_seconds, 1),
            success_threshold: threshold(probe.success_threshold, 1),
            failure_threshold: threshold(probe.failure_threshold, 3),
            successes: 0,
            failures: 0,
            passing,
        })
    }

    /// Records one result; returns whether the verdict changed.
    pub fn observe(&mut self, ok: bool) -> bool {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.passing && self.successes >= self.success_threshold {
                self.passing = true;
                return true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.passing && self.failures >= self.failure_threshold {
                self.passing = false;
                return true;
            }
        }
        false
    }
}

/// A free loopback port (bound and released; the process binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// One HTTP GET against `127.0.0.1:port`: success is a 2xx or 3xx answer within `timeout`,
/// as a kubelet's HTTP probe.
pub async fn probe(port: u16, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.30\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 32];
        let mut n = 0;
        while n < 12 {
            let read = s.read(&mut buf[n..]).await.ok()?;
            if read == 0 {
                break;
            }
            n += read;
        }
        let head = std::str::from_utf8(&buf[..n]).ok()?;
        let code: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Starts `launch` with stdout and stderr appended to `log`.
pub fn spawn(launch: &Launch, log: &Path, cwd: &Path) -> std::io::Result<Child> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    {
        use std::io::Write;
        writeln!(
            file,
            "--- rssc-sim-node: starting {} at {} ---",
            launch.program.display(),
            chrono::Utc::now().to_rfc3339()
        )?;
    }
    let err = file.try_clone()?;
    Command::new(&launch.program)
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
}

/// The exit code a container runtime reports for `status` (128 + signal when killed).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// Sends SIGTERM (through `kill`, no `unsafe`), waits up to `grace`, then SIGKILL; returns the
/// exit code.
pub async fn terminate(child: &mut Child, grace: Duration) -> i32 {
    if let Ok(Some(status)) = child.try_wait() {
        return exit_code(status);
    }
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => exit_code(status),
        _ => kill(child).await,
    }
}

/// SIGKILL; returns the exit code.
pub async fn kill(child: &mut Child) -> i32 {
    let _ = child.start_kill();
    match child.wait().await {
        Ok(status) => exit_code(status),
        Err(_) => crate::status::EXIT_SIGKILL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({
            "name": "listener",
            "command": ["rssc-listener", "--config", "/etc/rssc-listener/config.json"],
            "args": ["--log-level", "$(LEVEL)"],
            "ports": [{"name": "admin", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 5}
        }))
        .unwrap()
    }

    #[test]
    fn the_command_runs_the_local_binary_with_rewritten_paths_and_admin_port() {
        let env = vec![
            ("LEVEL".to_owned(), "debug".to_owned()),
            ("RSSC_ADMIN_ADDR".to_owned(), "0.0.0.0:8080".to_owned()),
            (
                "RSSC_CONFIG".to_owned(),
                "/etc/rssc-listener/config.json".to_owned(),
            ),
            ("KUBERNETES_SERVICE_HOST".to_owned(), "10.96.0.1".to_owned()),
        ];
        let mappings = [Mapping {
            mount_path: "/etc/rssc-listener".into(),
            local: "/s/volumes/config".into(),
        }];
        let l = launch(
            &container(),
            &env,
            &mappings,
            Path::new("/bin/rssc-listener"),
            4242,
            Path::new("/s/kubeconfig"),
            Path::new("/s"),
        );
        assert_eq!(l.program, Path::new("/bin/rssc-listener"));
        assert_eq!(
            l.args,
            [
                "--config",
                "/s/volumes/config/config.json",
                "--log-level",
                "debug"
            ]
        );
        let get = |k: &str| l.env.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RSSC_ADMIN_ADDR"), Some("127.0.0.1:4242"));
        assert_eq!(get("RSSC_CONFIG"), Some("/s/volumes/config/config.json"));
        assert_eq!(get("KUBECONFIG"), Some("/s/kubeconfig"));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), None);
    }

    #[test]
    fn probes_resolve_named_ports() {
        assert_eq!(readiness_target(&container()), Some(("/readyz".into(), 8080)));
        let mut c = container();
        c.readiness_probe = None;
        assert_eq!(readiness_target(&c), None);
    }

    #[test]
    fn probes_count_consecutive_results_against_thresholds() {
        let c = container();
        let mut readiness = HttpProbe::new(&c, c.readiness_probe.as_ref().unwrap(), false).unwrap();
        assert_eq!(
            (readiness.path.as_str(), readiness.period),
            ("/readyz", Duration::from_secs(5))
        );
        assert!(readiness.observe(true), "one success makes it ready");
        assert!(!readiness.observe(false) && !readiness.observe(false));
        assert!(readiness.passing, "two failures are below the threshold of 3");
        assert!(!readiness.observe(true) && !readiness.observe(false) && !readiness.observe(false));
        assert!(readiness.observe(false), "the third consecutive failure flips it");
        assert!(!readiness.passing);
    }

    #[tokio::test]
    async fn a_probe_against_nothing_fails() {
        let port = free_port().unwrap();
        assert!(!probe(port, "/readyz", Duration::from_millis(200)).await);
    }
}
