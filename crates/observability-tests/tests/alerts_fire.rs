//! Each alert evaluated on two scrapes of the binaries' real registries, nine minutes apart:
//! quiet while all is well, firing (for the right scale set or kind) when its trouble happens.

use std::time::Duration;

use rssc_observability_tests::{
    eval::{Point, Store},
    scenario::Fleet,
    sources::{self, Rule},
};

const NOW: f64 = 600.0;

fn rules() -> Vec<Rule> {
    sources::rules(&sources::chart_dir().join("alerts/rssc.rules.yaml"))
}

fn rule(name: &str) -> Rule {
    rules()
        .into_iter()
        .find(|r| r.alert == name)
        .unwrap_or_else(|| panic!("no alert {name}"))
}

/// Scrapes `fleet` before and after `trouble` and evaluates `alert` at the second scrape.
fn evaluate(alert: &str, trouble: impl FnOnce(&Fleet)) -> Vec<Point> {
    let fleet = Fleet::new();
    let mut store = Store::default();
    fleet.calm();
    fleet.scrape(&mut store, NOW - 540.0);
    fleet.calm();
    trouble(&fleet);
    fleet.scrape(&mut store, NOW);
    let rule = rule(alert);
    store
        .query(&rule.expr, NOW)
        .unwrap_or_else(|e| panic!("{alert}: {e}"))
}

fn fires_for(points: &[Point], label: &str, value: &str) -> bool {
    points
        .iter()
        .any(|p| p.labels.get(label).map(String::as_str) == Some(value))
}

#[test]
fn no_alert_fires_while_all_is_well() {
    for rule in rules() {
        let points = evaluate(&rule.alert, |_| {});
        assert!(
            points.is_empty(),
            "{} fires on a calm fleet: {points:?}",
            rule.alert
        );
    }
}

#[test]
fn jobs_waiting_too_long() {
    let points = evaluate("RsscJobsWaitingTooLong", |f| {
        f.jobs_started(40, Duration::from_secs(1500));
    });
    assert!(fires_for(&points, "repository", "app"), "{points:?}");
    assert!(points[0].value > 600.0, "the 90th percentile wait: {points:?}");
}

#[test]
fn listener_not_ready() {
    let points = evaluate("RsscListenerNotReady", |f| f.controller.listener(&f.set, false));
    assert!(fires_for(&points, "name", "linux"), "{points:?}");
}

#[test]
fn session_conflicts_repeating() {
    let points = evaluate("RsscSessionConflictsRepeating", |f| {
        for _ in 0..4 {
            f.listener.session_conflicts.inc();
        }
    });
    assert!(fires_for(&points, "name", "linux"), "{points:?}");
    assert!(fires_for(&points, "namespace", "ci"), "{points:?}");
}

#[test]
fn runners_failing_repeatedly() {
    let points = evaluate("RsscRunnersFailingRepeatedly", |f| {
        for reason in ["OOMKilled", "OOMKilled", "PendingTimeout"] {
            f.controller.runner_failed(&f.set, reason);
        }
    });
    assert!(fires_for(&points, "name", "linux"), "{points:?}");
    let one = evaluate("RsscRunnersFailingRepeatedly", |f| {
        f.controller.runner_failed(&f.set, "Evicted")
    });
    assert!(one.is_empty(), "one failure is not repeated: {one:?}");
}

#[test]
fn github_rate_limit_near() {
    let points = evaluate("RsscGitHubRateLimitNear", |f| f.rate_limit(120));
    assert_eq!(
        points.len(),
        2,
        "the controller's and the listener's clients: {points:?}"
    );
    assert!(fires_for(&points, "name", "linux"), "{points:?}");
}

#[test]
fn controller_reconcile_errors() {
    let points = evaluate("RsscControllerReconcileErrors", |f| {
        for _ in 0..10 {
            f.controller
                .reconciled("EphemeralRunner", Duration::from_millis(5), Some("kubernetes"));
        }
    });
    assert!(fires_for(&points, "kind", "EphemeralRunner"), "{points:?}");
    let waiting = evaluate("RsscControllerReconcileErrors", |f| {
        for _ in 0..10 {
            f.controller
                .reconciled("EphemeralRunner", Duration::from_millis(5), Some("waiting"));
        }
    });
    assert!(
        waiting.is_empty(),
        "deletions waiting for jobs are not errors: {waiting:?}"
    );
}
