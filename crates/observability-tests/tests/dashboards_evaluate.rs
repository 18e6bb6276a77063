//! Every dashboard query evaluated on three scrapes of a fleet where everything the dashboards
//! show has happened: each must evaluate and return data, so no panel stays empty because of a
//! wrong metric, label or join.

use rssc_observability_tests::{
    eval::Store,
    scenario::Fleet,
    sources::{self, expand_grafana_variables},
};

#[test]
fn every_dashboard_query_returns_data() {
    let fleet = Fleet::new();
    let mut store = Store::default();
    // Grafana's $__rate_interval becomes 5m: two scrapes fall inside it.
    for time in [0.0, 360.0, 600.0] {
        fleet.busy();
        fleet.scrape(&mut store, time);
    }
    let mut problems = Vec::new();
    let mut evaluated = 0;
    for dashboard in sources::dashboards() {
        for query in dashboard.queries() {
            evaluated += 1;
            match store.query(&expand_grafana_variables(&query.expr), 600.0) {
                Ok(points) if points.is_empty() => {
                    problems.push(format!("{}: no data for {}", query.place, query.expr))
                }
                Ok(points) if points.iter().any(|p| p.value.is_nan()) => {
                    problems.push(format!("{}: NaN from {}", query.place, query.expr))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", query.place)),
            }
        }
    }
    assert!(evaluated > 30, "the dashboards have their queries ({evaluated})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
