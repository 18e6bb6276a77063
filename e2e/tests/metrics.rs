//! The shipped alerts and dashboards against what the real binaries export: a short scenario
//! runs jobs through the real controller and listener, their `/metrics` endpoints are scraped
//! over HTTP the way Prometheus scrapes them, and every alert expression and dashboard query is
//! checked and evaluated on those scrapes. No rule or panel may name a metric or label that the
//! binary exporting it does not serve, or show a label its result lacks, and no alert fires on
//! this healthy run.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rssc_api::v1alpha1::EphemeralRunner;
use rssc_e2e::{
    Harness, HarnessOptions, eventually,
    invariants::{Expect, teardown_and_check},
    scenario::{apply_sets_and_wait_for_listener, count, queue_jobs, wait_jobs},
};
use rssc_observability_tests::{
    check::{self, Checker, TARGET_LABELS},
    eval::Store,
    exposed,
    exposition::{Catalog, Sample, parse},
    sources::{self, Rule, expand_grafana_variables, label_references},
};
use rssc_sim_node::PodKind;

/// The scrape job names Prometheus would give the two targets (the `job` target label).
const CONTROLLER: &str = "rssc-controller";
const LISTENER: &str = "rssc-listener";

/// One `GET /metrics` against `addr`, with the labels Prometheus adds to every scraped series.
async fn scrape(job: &str, addr: &str) -> Result<Vec<Sample>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/metrics")
        .header("host", addr)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4",
        )
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .map_err(|_| format!("{addr}/metrics did not answer within 10 s"))?
        .map_err(|e| format!("{addr}/metrics: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{addr}/metrics body: {e}"))?
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).map_err(|e| format!("{addr}/metrics: {e}"))?;
    if !status.is_success() {
        return Err(format!("{addr}/metrics answered {status}: {text}"));
    }
    let mut samples = parse(&text).map_err(|e| format!("{addr}/metrics does not parse: {e}"))?;
    for sample in &mut samples {
        sample.labels.insert("job".into(), job.into());
        sample.labels.insert("instance".into(), addr.into());
    }
    Ok(samples)
}

/// The loopback admin address of the scenario's running listener process.
fn listener_addr(h: &Harness) -> Option<String> {
    h.nodes
        .as_ref()?
        .summary()
        .pods
        .values()
        .find(|p| p.kind == PodKind::Listener && p.pid.is_some())
        .and_then(|p| p.admin_port)
        .map(|port| format!("127.0.0.1:{port}"))
}

/// What was scraped: every sample into one store (as one Prometheus would hold them) and a
/// catalog of metric and label names per binary.
#[derive(Default)]
struct Scrapes {
    store: Store,
    catalogs: BTreeMap<&'static str, Catalog>,
    count: usize,
    last: f64,
}

impl Scrapes {
    /// Scrapes both binaries, `started` being time zero.
    async fn both(&mut self, started: Instant, controller: &str, listener: &str) {
        let time = started.elapsed().as_secs_f64();
        for (job, addr) in [(CONTROLLER, controller), (LISTENER, listener)] {
            let samples = scrape(job, addr)
                .await
                .unwrap_or_else(|e| panic!("scraping the {job}: {e}"));
            assert!(!samples.is_empty(), "the {job} exports metrics");
            self.store.scrape(time, &samples);
            self.catalogs
                .entry(job)
                .or_default()
                .merge(&Catalog::of(&samples));
        }
        self.count += 1;
        self.last = time;
        eprintln!("[e2e] scrape {} at {time:.1} s", self.count);
    }

    /// Everything either binary exported.
    fn all(&self) -> Catalog {
        let mut all = Catalog::default();
        for catalog in self.catalogs.values() {
            all.merge(catalog);
        }
        all
    }

    /// Problems with `query`: a metric no binary exports, a label matcher the binaries
    /// exporting the metric do not carry, whatever the checker finds (joins, groupings,
    /// `histogram_quantile` without `le`) against what was exported, and labels that `shown`
    /// (a legend or alert annotations) refers to but the result does not carry.
    fn problems(&self, place: &str, query: &str, shown: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match check::selectors(query) {
            Ok(selectors) => {
                for selector in selectors {
                    let exporters: Vec<(&str, &BTreeSet<String>)> = self
                        .catalogs
                        .iter()
                        .filter_map(|(job, c)| Some((*job, c.labels(&selector.metric)?)))
                        .collect();
                    if exporters.is_empty() {
                        problems.push(format!("{place}: neither binary exported `{}`", selector.metric));
                        continue;
                    }
                    for label in &selector.labels {
                        let carried = TARGET_LABELS.contains(&label.as_str())
                            || exporters.iter().any(|(_, labels)| labels.contains(label));
                        if !carried {
                            problems.push(format!(
                                "{place}: `{}` as exported by {} has no label `{label}` ({:?})",
                                selector.metric,
                                exporters
                                    .iter()
                                    .map(|(j, _)| *j)
                                    .collect::<Vec<_>>()
                                    .join(" and "),
                                exporters.iter().map(|(_, l)| l).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
            }
            Err(e) => problems.push(format!("{place}: {e}")),
        }
        let all = self.all();
        match Checker::new(&all).check(query) {
            Ok(labels) => {
                for label in label_references(shown) {
                    let carried = TARGET_LABELS.contains(&label.as_str())
                        || labels.as_ref().is_some_and(|l| l.contains(&label));
                    if !carried {
                        problems.push(format!(
                            "{place}: shows {{{{{label}}}}}, which the result does not carry ({labels:?})"
                        ));
                    }
                }
            }
            Err(found) => problems.extend(found.into_iter().map(|p| format!("{place}: {p}"))),
        }
        problems
    }
}

fn rules() -> Vec<Rule> {
    sources::rules(&sources::chart_dir().join("alerts/rssc.rules.yaml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboards_evaluate_on_the_binaries_own_metrics() {
    // The controller's admin server on a port of our choosing, so it can be scraped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let controller = format!("127.0.0.1:{port}");
    // Through the fault proxy, so one write can be throttled as flow control does (below).
    let h = Harness::start_with(
        "metrics",
        HarnessOptions {
            controller_env: vec![("RSSC_ADMIN_ADDR".into(), controller.clone())],
            kube_fault_proxy: true,
            ..HarnessOptions::default()
        },
    )
    .await;
    let started = Instant::now();
    apply_sets_and_wait_for_listener(&h, 0, 3).await;
    eventually("the listener process serves its admin port", || async {
        listener_addr(&h).is_some()
    })
    .await;
    let listener = listener_addr(&h).unwrap();

    // Idle, then two rounds of jobs, so counters and histograms move between scrapes and the
    // rates over Grafana's 5 minute interval have two samples to work with.
    let mut scrapes = Scrapes::default();
    scrapes.both(started, &controller, &listener).await;
    // The API server throttles one runner Secret create (429, Retry-After: 1); the controller's
    // client sends it again, and its retry counter, which a dashboard panel plots, has a series.
    h.kube_faults()
        .expect("the harness runs behind the fault proxy")
        .refuse("create", "secrets", 429, 1);
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let round = queue_jobs(&h, 2, Duration::from_millis(500));
        wait_jobs(&h, &round).await;
        eventually("back to zero runners", || async {
            count::<EphemeralRunner>(&h, "").await == 0
        })
        .await;
        jobs.extend(round);
        scrapes.both(started, &controller, &listener).await;
    }
    let now = scrapes.last;

    // Every alert: its metrics and labels exported, its expression evaluates, and it is quiet.
    let mut problems = Vec::new();
    let rules = rules();
    assert!(rules.len() >= 6, "the chart's alerts: {}", rules.len());
    for rule in &rules {
        let place = format!("alert {}", rule.alert);
        let annotations: Vec<&str> = rule.annotations.values().map(String::as_str).collect();
        problems.extend(scrapes.problems(&place, &rule.expr, &annotations.join("\n")));
        match scrapes.store.query(&rule.expr, now) {
            Ok(points) if points.is_empty() => {}
            Ok(points) => problems.push(format!("{place} fires on a healthy run: {points:?}")),
            Err(e) => problems.push(format!("{place} does not evaluate: {e}")),
        }
    }

    // Every dashboard query and variable: exported metrics and labels, and evaluates.
    let mut with_data = 0;
    let mut queries = 0;
    let mut empty = Vec::new();
    for dashboard in sources::dashboards() {
        for query in dashboard.queries() {
            queries += 1;
            let expr = expand_grafana_variables(&query.expr);
            let legend = query.legend.as_deref().unwrap_or_default();
            problems.extend(scrapes.problems(&query.place, &expr, legend));
            match scrapes.store.query(&expr, now) {
                Ok(points) if points.iter().any(|p| p.value.is_nan()) => {
                    problems.push(format!("{}: NaN from {expr}: {points:?}", query.place))
                }
                // Only panels of failed requests may be empty on a healthy run.
                Ok(points) if points.is_empty() && expr.contains(r#"status_class!="2xx""#) => {
                    empty.push(query.place.clone())
                }
                Ok(points) if points.is_empty() => {
                    problems.push(format!("{}: no data from {expr}", query.place))
                }
                Ok(_) => with_data += 1,
                Err(e) => problems.push(format!("{} does not evaluate: {e}", query.place)),
            }
        }
        for (variable, selector, label) in dashboard.label_values() {
            let place = format!("{} variable {variable}", dashboard.file);
            let selector = expand_grafana_variables(&selector);
            problems.extend(scrapes.problems(&place, &selector, &format!("{{{{{label}}}}}")));
            let values: BTreeSet<String> = scrapes
                .store
                .query(&selector, now)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.labels.get(&label).cloned())
                .collect();
            if values.is_empty() {
                problems.push(format!("{place}: no values of `{label}` in {selector}"));
            }
        }
    }
    eprintln!("[e2e] {queries} dashboard queries, {with_data} with data; empty: {empty:?}");
    assert!(queries > 30, "the dashboards have their queries ({queries})");
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The listener serves ARC's metric names with ARC's labels, so ARC dashboards keep working.
    let arc = Catalog::of(&parse(&exposed::arc()).expect("ARC's catalog parses"));
    let ours = scrapes.all();
    for (name, arc_labels) in &arc.metrics {
        let labels = ours
            .labels(name)
            .unwrap_or_else(|| panic!("ARC's {name} was not exported in this run"));
        let missing: Vec<&String> = arc_labels.difference(labels).collect();
        assert!(missing.is_empty(), "{name} lacks ARC's labels {missing:?}");
    }

    // A few alerts by what they watch: the listener holds its session, nothing failed.
    let value = |query: &str| -> Vec<f64> {
        scrapes
            .store
            .query(query, now)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .into_iter()
            .map(|p| p.value)
            .collect()
    };
    assert_eq!(
        value("gha_controller_running_listeners"),
        [1.0],
        "the controller reports the listener ready"
    );
    assert_eq!(
        value("sum(gha_started_jobs_total)"),
        [jobs.len() as f64],
        "the listener counted every job started"
    );
    assert_eq!(
        value("sum(rssc_controller_runner_failures_total)"),
        [0.0],
        "no runner failed"
    );

    teardown_and_check(h, Expect::jobs(&jobs)).await;
}
