//! Reads Prometheus' text exposition format into samples, and the catalog of metric names and
//! the label names each carries.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name as exposed (`_total`, `_bucket`, ... included).
    pub name: String,
    /// Labels, without the name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Why a line of exposition text does not parse.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}: {text}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
    /// The line.
    pub text: String,
}

/// Parses exposition text; comments (`# HELP`, `# TYPE`, `# EOF`) are skipped.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |reason| ParseError {
            line: n + 1,
            reason,
            text: line.to_owned(),
        };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| error("no value"))?;
        let name = line[..name_end].to_owned();
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let (parsed, after) = parse_labels(body).ok_or_else(|| error("bad label set"))?;
            labels = parsed;
            rest = after;
        }
        let value = rest.split_whitespace().next().ok_or_else(|| error("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| error("value is not a number"))?,
        };
        samples.push(Sample { name, labels, value });
    }
    Ok(samples)
}

/// Parses `a="x",b="y"}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        let mut chars = s[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let end = loop {
            let (i, c) = chars.next()?;
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => break i,
                (false, c) => value.push(c),
            }
        };
        labels.insert(key, value);
        s = &s[eq + 1 + end + 1..];
    }
}

/// Metric names and the label names their samples carry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    /// Label names by metric name.
    pub metrics: BTreeMap<String, BTreeSet<String>>,
}

impl Catalog {
    /// The catalog of `samples`.
    pub fn of(samples: &[Sample]) -> Self {
        let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for sample in samples {
            metrics
                .entry(sample.name.clone())
                .or_default()
                .extend(sample.labels.keys().cloned());
        }
        Self { metrics }
    }

    /// Adds the metrics of `other`.
    pub fn merge(&mut self, other: &Catalog) {
        for (name, labels) in &other.metrics {
            self.metrics
                .entry(name.clone())
                .or_default()
                .extend(labels.iter().cloned());
        }
    }

    /// The label names of `metric`, if it is exposed.
    pub fn labels(&self, metric: &str) -> Option<&BTreeSet<String>> {
        self.metrics.get(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"uote, }\"} 3\ny 2.5\nh_bucket{le=\"+Inf\"} 4\n# EOF\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].labels["b"], "q\"uote, }");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].name, "y");
        assert!(samples[1].labels.is_empty());
        assert_eq!(samples[2].labels["le"], "+Inf");
        let catalog = Catalog::of(&samples);
        assert_eq!(
            catalog.labels("x_total").unwrap().iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn broken_lines_are_errors() {
        assert!(parse("x{a=\"1\" 3").is_err());
        assert!(parse("x{a=1} 3").is_err());
        assert!(parse("x one").is_err());
        assert!(parse("x").is_err());
    }
}
