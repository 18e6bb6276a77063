//! The shipped alerting rules and Grafana dashboards, read from the controller chart.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The controller chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/rssc-controller")
}

/// One alerting rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Alert name.
    pub alert: String,
    /// PromQL expression.
    pub expr: String,
    /// `for` duration, if any.
    pub for_: Option<String>,
    /// Labels the alert carries.
    pub labels: BTreeMap<String, String>,
    /// Annotations (summary, description, runbook_url).
    pub annotations: BTreeMap<String, String>,
}

fn string_map(value: Option<&Yaml>) -> BTreeMap<String, String> {
    value
        .and_then(Yaml::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The alerting rules of a Prometheus rule file.
pub fn rules(path: &Path) -> Vec<Rule> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Yaml = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().expect("`groups` is a list") {
        for rule in group["rules"].as_sequence().expect("`rules` is a list") {
            rules.push(Rule {
                alert: rule["alert"].as_str().expect("every rule is an alert").to_owned(),
                expr: rule["expr"].as_str().expect("every rule has an expr").to_owned(),
                for_: rule["for"].as_str().map(str::to_owned),
                labels: string_map(rule.get("labels")),
                annotations: string_map(rule.get("annotations")),
            });
        }
    }
    rules
}

/// One query of a dashboard.
#[derive(Clone, Debug)]
pub struct Query {
    /// Dashboard title / panel title or variable name.
    pub place: String,
    /// PromQL, with Grafana's variables still in it.
    pub expr: String,
    /// The legend format (`{{label}}` placeholders), if any.
    pub legend: Option<String>,
}

/// A dashboard file.
#[derive(Clone, Debug)]
pub struct Dashboard {
    /// File name.
    pub file: String,
    /// The parsed JSON.
    pub json: Json,
}

impl Dashboard {
    /// Title.
    pub fn title(&self) -> &str {
        self.json["title"].as_str().unwrap_or_default()
    }

    /// Every panel target's query.
    pub fn queries(&self) -> Vec<Query> {
        let mut queries = Vec::new();
        let mut panels: Vec<&Json> = Vec::new();
        for panel in self.json["panels"].as_array().into_iter().flatten() {
            panels.push(panel);
            panels.extend(panel["panels"].as_array().into_iter().flatten());
        }
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    queries.push(Query {
                        place: format!("{} / {}", self.title(), panel["title"].as_str().unwrap_or("?")),
                        expr: expr.to_owned(),
                        legend: target["legendFormat"].as_str().map(str::to_owned),
                    });
                }
            }
        }
        queries
    }

    /// The template variables' `label_values(selector, label)` queries, as (variable, selector,
    /// label).
    pub fn label_values(&self) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for var in self.json["templating"]["list"].as_array().into_iter().flatten() {
            if var["type"] != "query" {
                continue;
            }
            let query = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .unwrap_or_default();
            let name = var["name"].as_str().unwrap_or_default().to_owned();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| {
                    panic!("variable {name}: only label_values(...) queries are used, got {query}")
                });
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("variable {name}: label_values needs a selector and a label"));
            found.push((name, selector.trim().to_owned(), label.trim().to_owned()));
        }
        found
    }
}

/// Every dashboard in the chart's `dashboards/`.
pub fn dashboards() -> Vec<Dashboard> {
    let dir = chart_dir().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Dashboard {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                json: serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            }
        })
        .collect()
}

/// Replaces Grafana's variables with what Prometheus would see: interval variables become
/// `5m`, others (used inside label matchers) `.*`.
pub fn expand_grafana_variables(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').unwrap_or(braced.len());
                (&braced[..end], braced.get(end + 1..).unwrap_or_default())
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        out.push_str(if name.starts_with("__") { "5m" } else { ".*" });
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The `{{name}}` placeholders of a legend or the `$labels.name` references of an annotation.
pub fn label_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let Some(end) = rest[i..].find("}}") else { break };
        let inner = rest[i + 2..i + end].trim();
        let mut words = inner.split(|c: char| c.is_whitespace() || c == '|');
        for word in words.by_ref() {
            if let Some(label) = word.strip_prefix("$labels.") {
                found.push(label.to_owned());
            } else if !word.is_empty()
                && !word.starts_with('$')
                && !word.starts_with('.')
                && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && inner == word
            {
                // A Grafana legend placeholder: `{{name}}`.
                found.push(word.to_owned());
            }
        }
        rest = &rest[i + end + 2..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_variables_expand_to_valid_promql() {
        assert_eq!(
            expand_grafana_variables(
                r#"rate(x{namespace=~"$namespace", name=~"${name}"}[$__rate_interval])"#
            ),
            r#"rate(x{namespace=~".*", name=~".*"}[5m])"#
        );
    }

    #[test]
    fn label_references_in_legends_and_annotations() {
        assert_eq!(label_references("p90 {{name}} {{ kind }}"), ["name", "kind"]);
        assert_eq!(
            label_references("{{ $labels.namespace }}/{{ $labels.name }}: {{ $value | humanize }}"),
            ["namespace", "name"]
        );
    }
}
