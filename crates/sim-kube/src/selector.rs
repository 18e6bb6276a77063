//! Label and field selectors, as `labelSelector` and `fieldSelector` query parameters.

use std::collections::BTreeMap;

use serde_json::Value;

/// A selector that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` or `key==value` or `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=value` or `key notin (a,b)`.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

impl LabelSelector {
    /// Parses the `labelSelector` syntax (equality- and set-based).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let err = || SelectorError(part.to_owned());
            if let Some(key) = part.strip_prefix('!') {
                let key = key.trim();
                if !valid_key(key) {
                    return Err(err());
                }
                reqs.push(Requirement::DoesNotExist(key.to_owned()));
            } else if let Some((key, rest)) = split_set_op(part, " notin ") {
                reqs.push(Requirement::NotIn(key, parse_values(rest).ok_or_else(err)?));
            } else if let Some((key, rest)) = split_set_op(part, " in ") {
                reqs.push(Requirement::In(key, parse_values(rest).ok_or_else(err)?));
            } else if let Some((k, v)) = part.split_once("!=") {
                reqs.push(Requirement::NotIn(
                    checked_key(k).ok_or_else(err)?,
                    vec![v.trim().to_owned()],
                ));
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                reqs.push(Requirement::In(
                    checked_key(k).ok_or_else(err)?,
                    vec![v.trim().to_owned()],
                ));
            } else if valid_key(part) {
                reqs.push(Requirement::Exists(part.to_owned()));
            } else {
                return Err(err());
            }
        }
        Ok(Self(reqs))
    }

    /// Whether a label map satisfies the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(&labels_of(obj))
    }
}

fn checked_key(k: &str) -> Option<String> {
    let k = k.trim();
    valid_key(k).then(|| k.to_owned())
}

fn split_set_op(part: &str, op: &str) -> Option<(String, String)> {
    let (k, rest) = part.split_once(op)?;
    Some((checked_key(k)?, rest.trim().to_owned()))
}

fn parse_values(rest: String) -> Option<Vec<String>> {
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// An object's labels.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses a field selector; `allowed` tells whether a field path may be selected on.
    pub fn parse(s: &str, allowed: impl Fn(&str) -> bool) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in split_top_level(s) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(SelectorError(part.to_owned()));
            };
            let path = path.trim();
            if !allowed(path) {
                return Err(SelectorError(format!("field label not supported: {path}")));
            }
            terms.push((path.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object matches: a missing field compares as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let got = path
                .split('.')
                .try_fold(obj, |v, step| v.get(step))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (got == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_and_set_based() {
        let s = LabelSelector::parse("app=web,tier in (a, b),!legacy,env,zone notin (x)").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "b"), ("env", "1")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c"), ("env", "1")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("env", "1"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("env", "1"),
            ("zone", "x")
        ])));
        let ne = LabelSelector::parse("a!=b").unwrap();
        assert!(ne.matches(&labels(&[])));
        assert!(!ne.matches(&labels(&[("a", "b")])));
        assert!(LabelSelector::parse("").unwrap().matches(&labels(&[])));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "x", "namespace": "ns"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("metadata.name=x,status.phase!=Failed", |_| true).unwrap();
        assert!(s.matches(&obj));
        let s = FieldSelector::parse("metadata.namespace==other", |_| true).unwrap();
        assert!(!s.matches(&obj));
        assert!(FieldSelector::parse("spec.foo=1", |p| p.starts_with("metadata.")).is_err());
    }
}
