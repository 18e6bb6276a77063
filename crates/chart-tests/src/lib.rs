//! What the chart tests share: finding `helm` and `kubectl`, rendering and linting the charts,
//! reading multi-document YAML, the bad values files with the message each must produce, and
//! recording the permissions a Kubernetes client uses ([`access`]).

pub mod access;
pub mod proxy;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of chart `name` (`rssc-controller`, `rssc-scale-set`).
pub fn chart_dir(name: &str) -> PathBuf {
    repo_root().join("charts").join(name)
}

/// A command-line tool the tests need, from `.tools/bin` (where `scripts/tools` installs it) or
/// `PATH`; panics saying how to install it when it is in neither.
pub fn tool(name: &str) -> PathBuf {
    let installed = repo_root().join(".tools/bin").join(name);
    if installed.is_file() {
        return installed;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "{name} is not installed: run `bash scripts/tools ensure {name}` (installs it into .tools/bin)"
        )
    })
}

/// A finished `helm` run.
#[derive(Debug)]
pub struct Run {
    /// Whether it exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            success: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// How to render a chart.
#[derive(Debug, Clone)]
pub struct Render<'a> {
    /// Chart name.
    pub chart: &'a str,
    /// Release name.
    pub release: &'a str,
    /// Release namespace.
    pub namespace: &'a str,
    /// Values files, in order.
    pub values: Vec<PathBuf>,
    /// `--set` assignments.
    pub set: Vec<String>,
}

impl<'a> Render<'a> {
    /// Chart `chart` as release `release` in `namespace`, with its default values.
    pub fn new(chart: &'a str, release: &'a str, namespace: &'a str) -> Self {
        Self {
            chart,
            release,
            namespace,
            values: Vec::new(),
            set: Vec::new(),
        }
    }

    /// Adds a values file.
    pub fn values(mut self, file: impl Into<PathBuf>) -> Self {
        self.values.push(file.into());
        self
    }

    /// Adds a `--set` assignment.
    pub fn set(mut self, assignment: &str) -> Self {
        self.set.push(assignment.to_owned());
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.release.to_owned(),
            chart_dir(self.chart).display().to_string(),
            "--namespace".to_owned(),
            self.namespace.to_owned(),
        ];
        for file in &self.values {
            args.extend(["--values".to_owned(), file.display().to_string()]);
        }
        for assignment in &self.set {
            args.extend(["--set".to_owned(), assignment.clone()]);
        }
        args
    }

    /// `helm template`.
    pub fn template(&self) -> Run {
        helm(&["template"], &self.args())
    }

    /// `helm lint --strict`, with the same values.
    pub fn lint(&self) -> Run {
        let mut args = vec![chart_dir(self.chart).display().to_string(), "--strict".to_owned()];
        args.extend(self.args().into_iter().skip(2));
        helm(&["lint"], &args)
    }

    /// The rendered documents; panics with helm's message if rendering fails.
    pub fn docs(&self) -> Docs {
        let run = self.template();
        assert!(
            run.success,
            "helm template {} failed: {}",
            self.args().join(" "),
            run.stderr
        );
        Docs(parse_docs(&run.stdout))
    }
}

fn helm(command: &[&str], args: &[String]) -> Run {
    Command::new(tool("helm"))
        .args(command)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("helm runs")
        .into()
}

/// The non-empty documents of a multi-document YAML stream, as JSON values.
pub fn parse_docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| {
            serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML document: {e}"))
        })
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

/// Rendered objects.
#[derive(Debug, Clone)]
pub struct Docs(pub Vec<Value>);

impl Docs {
    /// Every object of `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|d| d["kind"] == kind).collect()
    }

    /// The one object of `kind`; panics if there is not exactly one.
    pub fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, got {}", all.len());
        all[0]
    }

    /// The kinds, in order.
    pub fn kinds(&self) -> Vec<&str> {
        self.0.iter().filter_map(|d| d["kind"].as_str()).collect()
    }
}

/// The value of environment variable `name` of the first container of a Deployment.
pub fn env<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// A values file that a chart must refuse, and the message it must give.
#[derive(Debug, Clone)]
pub struct BadValues {
    /// The file.
    pub path: PathBuf,
    /// Text the error must contain.
    pub expect: String,
}

/// The message a bad values file expects: its first line, `# expect: MESSAGE`.
pub fn expectation(text: &str) -> Option<String> {
    text.lines()
        .next()?
        .strip_prefix("# expect:")
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

/// The bad values files of `chart` (`crates/chart-tests/bad-values/<chart>/*.yaml`).
pub fn bad_values(chart: &str) -> Vec<BadValues> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bad-values")
        .join(chart);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let expect = expectation(&text)
                .unwrap_or_else(|| panic!("{} must start with `# expect: MESSAGE`", path.display()));
            BadValues { path, expect }
        })
        .collect()
}

/// The `ci/*.yaml` values files of `chart`, sorted.
pub fn ci_values(chart: &str) -> Vec<PathBuf> {
    let dir = chart_dir(chart).join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// A file's name without its directory, for messages and release names.
pub fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_and_empty_ones_dropped() {
        let docs = parse_docs("---\n# only a comment\n---\nkind: A\n---\n---\nkind: B\nx: [1]\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(Docs(docs).kinds(), ["A", "B"]);
    }

    #[test]
    fn the_expected_message_is_on_the_first_line() {
        assert_eq!(
            expectation("# expect: must be one of\nflags: {}\n").as_deref(),
            Some("must be one of")
        );
        assert_eq!(expectation("flags: {}\n# expect: late\n"), None);
        assert_eq!(expectation("# expect:   \n"), None);
    }

    #[test]
    fn env_finds_a_variable_of_the_first_container() {
        let deployment = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"env": [{"name": "A", "value": "1"}]}
        ]}}}});
        assert_eq!(env(&deployment, "A").unwrap()["value"], "1");
        assert!(env(&deployment, "B").is_none());
    }
}
