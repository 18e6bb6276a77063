//! Where a job's time went: the slowest jobs' traces drawn as text waterfalls, one line per
//! span or event, offsets from the moment the listener saw the job.

use std::fmt::Write as _;

use crate::otlp::ReceivedSpan;

/// A job trace's root span: the listener's `job` span.
fn is_job(span: &ReceivedSpan) -> bool {
    span.name == "job" && span.parent_span_id.is_empty()
}

/// Waterfalls of the `slowest` longest job traces in `spans`, bars `width` columns wide.
pub fn waterfalls(spans: &[ReceivedSpan], slowest: usize, width: usize) -> String {
    let mut jobs: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| is_job(s) && s.end_ns > s.start_ns)
        .collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.end_ns - j.start_ns));
    let mut out = String::new();
    for job in jobs.into_iter().take(slowest) {
        out.push_str(&waterfall(job, spans, width));
    }
    out
}

/// One job's waterfall.
fn waterfall(job: &ReceivedSpan, spans: &[ReceivedSpan], width: usize) -> String {
    let (start, end) = (job.start_ns, job.end_ns.max(job.start_ns + 1));
    let total = end - start;
    let col = |t: u64| {
        ((t.saturating_sub(start)) as u128 * width as u128 / total as u128).min(width as u128) as usize
    };
    let ms = |t: u64| t.saturating_sub(start) as f64 / 1e6;
    let mut lines: Vec<(u64, String)> = Vec::new();
    let bar = |from: u64, to: u64| {
        let (a, b) = (col(from), col(to).max(col(from) + 1).min(width.max(1)));
        format!(
            "{}{}{}",
            " ".repeat(a),
            "█".repeat(b.saturating_sub(a)),
            " ".repeat(width.saturating_sub(b))
        )
    };
    let marker = |at: u64| {
        let a = col(at).min(width.saturating_sub(1));
        format!("{}◆{}", " ".repeat(a), " ".repeat(width.saturating_sub(a + 1)))
    };
    for (name, at) in &job.events {
        lines.push((*at, format!("{} {:>9.1} ms  {name}", marker(*at), ms(*at))));
    }
    for span in spans.iter().filter(|s| s.trace_id == job.trace_id && !is_job(s)) {
        let label = match span.attributes.get("kind") {
            Some(kind) => format!("{} {kind}", span.name),
            None => span.name.clone(),
        };
        lines.push((
            span.start_ns,
            format!(
                "{} {:>9.1} ms  {label} ({:.1} ms)",
                bar(span.start_ns, span.end_ns),
                ms(span.start_ns),
                (span.end_ns.saturating_sub(span.start_ns)) as f64 / 1e6
            ),
        ));
    }
    lines.sort_by_key(|(at, _)| *at);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "job {} {} ({}): {:.1} s, {}",
        job.attributes
            .get("runner_request_id")
            .map_or("?", String::as_str),
        job.attributes.get("job_name").map_or("", String::as_str),
        job.attributes.get("repository").map_or("", String::as_str),
        total as f64 / 1e9,
        job.attributes.get("result").map_or("unfinished", String::as_str),
    );
    let _ = writeln!(out, "{} {:>9.1} ms  job", bar(start, end), 0.0);
    for (_, line) in lines {
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn span(name: &str, trace: &str, parent: &str, start_ms: u64, end_ms: u64) -> ReceivedSpan {
        ReceivedSpan {
            service: "s".into(),
            trace_id: trace.into(),
            span_id: format!("{name}-{start_ms}"),
            parent_span_id: parent.into(),
            name: name.into(),
            attributes: BTreeMap::new(),
            start_ns: start_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn the_slowest_jobs_come_first_with_their_spans_in_time_order() {
        let mut slow = span("job", "t1", "", 0, 1000);
        slow.events = vec![("job started".into(), 600_000_000)];
        let spans = vec![
            span("job", "t2", "", 0, 10),
            slow,
            span("pod.create", "t1", "x", 300, 350),
            span("github.generate_jit_config", "t1", "x", 100, 200),
        ];
        let text = waterfalls(&spans, 1, 20);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("job ? "), "{text}");
        assert!(lines[0].contains("1.0 s"), "the slowest job: {text}");
        assert!(lines[2].contains("github.generate_jit_config"), "{text}");
        assert!(lines[3].contains("pod.create"), "{text}");
        assert!(
            lines[4].contains("◆") && lines[4].contains("job started"),
            "{text}"
        );
        assert!(!text.contains("t2"), "only the slowest one");
        assert_eq!(
            lines[2].chars().take(20).filter(|c| *c == '█').count(),
            2,
            "100 ms of 1 s in 20 columns"
        );
    }
}
