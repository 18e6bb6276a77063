//! The listener's decisions, read from its JSON log lines (pure parsing).

use serde::{Deserialize, Serialize};

/// One decision the listener wrote to its EphemeralRunnerSet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When (RFC 3339, as logged).
    pub timestamp: String,
    /// Why it decided (`message`, `heartbeat`, `config`, ...).
    pub reason: String,
    /// Runners wanted.
    pub desired: i64,
    /// Runners wanted before.
    pub previous: Option<i64>,
    /// The decision's `patchSequence`.
    pub sequence: i64,
    /// Jobs GitHub has assigned to the scale set.
    pub assigned_jobs: Option<i64>,
    /// Jobs running on runners.
    pub running_jobs: Option<i64>,
}

/// The decision on one log line, if it is a decision line.
pub fn parse_line(line: &str) -> Option<Decision> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if value.get("message")?.as_str()? != "decision" {
        return None;
    }
    let int = |key: &str| value.get(key).and_then(serde_json::Value::as_i64);
    Some(Decision {
        timestamp: value.get("timestamp")?.as_str()?.to_owned(),
        reason: value
            .get("reason")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        desired: int("desired")?,
        previous: int("previous"),
        sequence: int("sequence")?,
        assigned_jobs: int("assigned_jobs"),
        running_jobs: int("running_jobs"),
    })
}

/// Reads decisions from the text appended to a log since the last call, keeping an
/// incomplete last line for the next call.
#[derive(Debug, Default)]
pub struct LineReader {
    partial: String,
}

impl LineReader {
    /// The decisions in `chunk` (plus what was left over before).
    pub fn feed(&mut self, chunk: &str) -> Vec<Decision> {
        self.partial.push_str(chunk);
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=end).collect();
        complete.lines().filter_map(parse_line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-11-22T18:00:01.5Z","level":"INFO","message":"decision","reason":"message","desired":7,"previous":5,"sequence":42,"min_runners":2,"max_runners":20,"assigned_jobs":5,"running_jobs":3,"span":{"scale_set":"linux-x64"}}"#;

    #[test]
    fn a_decision_line_parses() {
        assert_eq!(
            parse_line(LINE),
            Some(Decision {
                timestamp: "2026-11-22T18:00:01.5Z".into(),
                reason: "message".into(),
                desired: 7,
                previous: Some(5),
                sequence: 42,
                assigned_jobs: Some(5),
                running_jobs: Some(3),
            })
        );
    }

    #[test]
    fn other_lines_are_not_decisions() {
        assert_eq!(
            parse_line(r#"{"timestamp":"t","message":"session created"}"#),
            None
        );
        assert_eq!(parse_line("--- rssc-sim-node: starting /bin/x ---"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut reader = LineReader::default();
        let (a, b) = LINE.split_at(40);
        assert!(reader.feed(a).is_empty());
        assert_eq!(reader.feed(&format!("{b}\n{a}")).len(), 1);
        assert_eq!(reader.feed(&format!("{b}\n")).len(), 1);
    }
}
