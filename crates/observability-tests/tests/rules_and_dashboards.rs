//! The chart's alerting rules and dashboards against what the binaries expose.

use std::collections::BTreeSet;

use rssc_observability_tests::{
    check::{Checker, TARGET_LABELS},
    exposed,
    exposition::{Catalog, parse},
    sources::{self, expand_grafana_variables, label_references},
};

fn catalog(text: &str) -> Catalog {
    Catalog::of(&parse(text).expect("the exposition text parses"))
}

/// Everything the controller and the listener expose.
fn rssc() -> Catalog {
    let mut all = catalog(&exposed::controller());
    all.merge(&catalog(&exposed::listener()));
    all
}

fn known(labels: &Option<BTreeSet<String>>, label: &str) -> bool {
    TARGET_LABELS.contains(&label) || labels.as_ref().is_some_and(|l| l.contains(label))
}

#[test]
fn every_alert_uses_exposed_metrics_and_labels_and_has_a_runbook() {
    let catalog = rssc();
    let checker = Checker::new(&catalog);
    let rules = sources::rules(&sources::chart_dir().join("alerts/rssc.rules.yaml"));
    let mut problems = Vec::new();
    for rule in &rules {
        let labels = match checker.check(&rule.expr) {
            Ok(labels) => labels,
            Err(found) => {
                problems.extend(found.into_iter().map(|p| format!("{}: {p}", rule.alert)));
                continue;
            }
        };
        for (key, text) in &rule.annotations {
            for label in label_references(text) {
                if !known(&labels, &label) {
                    problems.push(format!(
                        "{}: annotation {key} uses $labels.{label}, which the expression's result does not carry ({labels:?})",
                        rule.alert
                    ));
                }
            }
        }
        if !rule.labels.contains_key("severity") {
            problems.push(format!("{}: no severity label", rule.alert));
        }
        if rule.for_.is_none() {
            problems.push(format!("{}: no `for`, so one bad scrape pages", rule.alert));
        }
        let runbook = format!("docs/runbooks/{}.md", rule.alert);
        let url = rule.annotations.get("runbook_url").cloned().unwrap_or_default();
        if !url.ends_with(&format!("/blob/main/{runbook}")) {
            problems.push(format!(
                "{}: runbook_url {url:?} does not point at {runbook}",
                rule.alert
            ));
        }
        if !sources::repo_root().join(&runbook).is_file() {
            problems.push(format!("{}: {runbook} is missing", rule.alert));
        }
    }
    assert!(problems.is_empty(), "alerting rules:\n{}", problems.join("\n"));
    let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    for expected in [
        "RsscJobsWaitingTooLong",
        "RsscListenerNotReady",
        "RsscSessionConflictsRepeating",
        "RsscRunnersFailingRepeatedly",
        "RsscGitHubRateLimitNear",
        "RsscControllerReconcileErrors",
    ] {
        assert!(names.contains(expected), "alert {expected} is missing");
    }
}

#[test]
fn every_runbook_belongs_to_an_alert() {
    let rules = sources::rules(&sources::chart_dir().join("alerts/rssc.rules.yaml"));
    let alerts: BTreeSet<String> = rules.iter().map(|r| format!("{}.md", r.alert)).collect();
    let dir = sources::repo_root().join("docs/runbooks");
    for entry in std::fs::read_dir(&dir).expect("docs/runbooks exists") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            name == "README.md" || alerts.contains(&name),
            "docs/runbooks/{name} belongs to no alert"
        );
    }
}

#[test]
fn every_dashboard_query_uses_exposed_metrics_and_labels() {
    let catalog = rssc();
    let checker = Checker::new(&catalog);
    let dashboards = sources::dashboards();
    assert!(
        dashboards.len() >= 3,
        "fleet, scale set and controller dashboards"
    );
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for dashboard in &dashboards {
        let uid = dashboard.json["uid"].as_str().unwrap_or_default().to_owned();
        assert!(
            !uid.is_empty() && uids.insert(uid),
            "{}: a unique uid",
            dashboard.file
        );
        let queries = dashboard.queries();
        assert!(!queries.is_empty(), "{} has queries", dashboard.file);
        for query in queries {
            let labels = match checker.check(&expand_grafana_variables(&query.expr)) {
                Ok(labels) => labels,
                Err(found) => {
                    problems.extend(found.into_iter().map(|p| format!("{}: {p}", query.place)));
                    continue;
                }
            };
            for label in label_references(query.legend.as_deref().unwrap_or_default()) {
                if !known(&labels, &label) {
                    problems.push(format!(
                        "{}: legend uses {{{{{label}}}}}, which the query's result does not carry ({labels:?})",
                        query.place
                    ));
                }
            }
        }
        for (variable, selector, label) in dashboard.label_values() {
            match checker.check(&expand_grafana_variables(&selector)) {
                Ok(labels) if known(&labels, &label) => {}
                Ok(labels) => problems.push(format!(
                    "{}: variable {variable} lists `{label}`, which {selector} does not carry ({labels:?})",
                    dashboard.file
                )),
                Err(found) => problems.extend(
                    found
                        .into_iter()
                        .map(|p| format!("{}: variable {variable}: {p}", dashboard.file)),
                ),
            }
        }
    }
    assert!(problems.is_empty(), "dashboards:\n{}", problems.join("\n"));
}

#[test]
fn the_fleet_dashboard_works_with_arc_listeners() {
    let arc = catalog(&exposed::arc());
    let checker = Checker::new(&arc);
    let fleet = sources::dashboards()
        .into_iter()
        .find(|d| d.file == "fleet.json")
        .expect("dashboards/fleet.json");
    let mut problems = Vec::new();
    for query in fleet.queries() {
        if let Err(found) = checker.check(&expand_grafana_variables(&query.expr)) {
            problems.extend(found.into_iter().map(|p| format!("{}: {p}", query.place)));
        }
    }
    for (variable, selector, _) in fleet.label_values() {
        if let Err(found) = checker.check(&expand_grafana_variables(&selector)) {
            problems.extend(found.into_iter().map(|p| format!("variable {variable}: {p}")));
        }
    }
    assert!(
        problems.is_empty(),
        "with ARC's metrics only:\n{}",
        problems.join("\n")
    );
}

#[test]
fn our_gha_metrics_carry_arcs_labels() {
    let ours = rssc();
    for (name, arc_labels) in &catalog(&exposed::arc()).metrics {
        let labels = ours
            .labels(name)
            .unwrap_or_else(|| panic!("ARC's {name} is not exposed"));
        assert!(
            arc_labels.is_subset(labels),
            "{name}: ARC labels {arc_labels:?}, ours {labels:?}"
        );
    }
}

#[test]
fn every_exposed_metric_is_documented() {
    let doc = std::fs::read_to_string(sources::repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
    let mut missing = BTreeSet::new();
    let catalog = rssc();
    for (name, labels) in &catalog.metrics {
        // Histograms are documented by their family name.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| catalog.metrics.contains_key(&format!("{f}_bucket")))
            .unwrap_or(name);
        let documented = doc.contains(&format!("`{family}`")) || doc.contains(&format!("`{name}`"));
        if !documented {
            missing.insert(name.clone());
        }
        for label in labels.iter().filter(|l| *l != "le") {
            if !doc.contains(&format!("`{label}`")) {
                missing.insert(format!("{name} label {label}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}
