//! A small PromQL evaluator for the subset our alerts and dashboards use, over a few scrapes of
//! exposition text: selectors with matchers, range selectors, `rate`, `increase`, `irate`,
//! `*_over_time`, `histogram_quantile`, aggregations with `by`/`without`, and arithmetic,
//! comparison and set operators with `on`/`ignoring`. Enough to see that an alert fires on the
//! data that should fire it and stays quiet otherwise. Simplifications: no extrapolation in
//! `rate`/`increase` (the change between the first and last sample in the range), no counter
//! resets, no staleness beyond a 5 minute lookback.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::{
    label::{MatchOp, Matcher},
    parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector},
};

use crate::exposition::Sample;

/// A series' labels, `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// A series' samples: (time in seconds, value), oldest first.
type Samples = Vec<(f64, f64)>;

/// What a range-vector function reduces one series' window to.
type Reduce<'a> = &'a dyn Fn(&[(f64, f64)]) -> Option<f64>;

/// One result sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Labels of the result series.
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

#[derive(Clone, Debug)]
enum Value {
    Scalar(f64),
    Vector(Vec<Point>),
    Matrix(Vec<(Labels, Samples)>),
}

/// Scrapes at known times, each a list of samples.
#[derive(Clone, Debug, Default)]
pub struct Store {
    series: BTreeMap<Labels, Samples>,
}

const LOOKBACK: f64 = 300.0;

impl Store {
    /// Adds the samples of one scrape at `time` (seconds).
    pub fn scrape(&mut self, time: f64, samples: &[Sample]) {
        for sample in samples {
            let mut labels = sample.labels.clone();
            labels.insert("__name__".into(), sample.name.clone());
            self.series.entry(labels).or_default().push((time, sample.value));
        }
    }

    /// Evaluates `query` as an instant query at `time`; a scalar result is one unlabelled point.
    pub fn query(&self, query: &str, time: f64) -> Result<Vec<Point>, String> {
        let expr = parser::parse(query)?;
        Ok(match self.eval(&expr, time)? {
            Value::Scalar(v) => vec![Point {
                labels: Labels::new(),
                value: v,
            }],
            Value::Vector(points) => points,
            Value::Matrix(_) => return Err("a range vector is not an instant result".into()),
        })
    }

    fn select(&self, vs: &VectorSelector) -> impl Iterator<Item = (Labels, &Samples)> {
        let mut matchers: Vec<Matcher> = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            matchers.push(Matcher::new(MatchOp::Equal, "__name__", name));
        }
        self.series
            .iter()
            .filter(move |(labels, _)| {
                matchers
                    .iter()
                    .all(|m| matches(m, labels.get(&m.name).map(String::as_str).unwrap_or("")))
            })
            .map(|(labels, samples)| (labels.clone(), samples))
    }

    fn eval(&self, expr: &Expr, time: f64) -> Result<Value, String> {
        Ok(match expr {
            Expr::NumberLiteral(n) => Value::Scalar(n.val),
            Expr::Paren(p) => self.eval(&p.expr, time)?,
            Expr::Unary(u) => match self.eval(&u.expr, time)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(points) => Value::Vector(
                    points
                        .into_iter()
                        .map(|p| Point {
                            labels: without_name(p.labels),
                            value: -p.value,
                        })
                        .collect(),
                ),
                Value::Matrix(_) => return Err("unary minus on a range vector".into()),
            },
            Expr::VectorSelector(vs) => Value::Vector(
                self.select(vs)
                    .filter_map(|(labels, samples)| {
                        samples
                            .iter()
                            .rev()
                            .find(|(t, _)| *t <= time && *t > time - LOOKBACK)
                            .map(|&(_, value)| Point { labels, value })
                    })
                    .collect(),
            ),
            Expr::MatrixSelector(ms) => {
                let range = ms.range.as_secs_f64();
                Value::Matrix(
                    self.select(&ms.vs)
                        .map(|(labels, samples)| {
                            let window = samples
                                .iter()
                                .copied()
                                .filter(|(t, _)| *t <= time && *t > time - range)
                                .collect();
                            (labels, window)
                        })
                        .collect(),
                )
            }
            Expr::Call(call) => self.call(call, time)?,
            Expr::Aggregate(agg) => {
                let Value::Vector(points) = self.eval(&agg.expr, time)? else {
                    return Err("aggregation over a non-vector".into());
                };
                let op = agg.op.to_string();
                let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
                for p in points {
                    let key: Labels = match &agg.modifier {
                        Some(LabelModifier::Include(by)) => p
                            .labels
                            .into_iter()
                            .filter(|(k, _)| by.labels.contains(k))
                            .collect(),
                        Some(LabelModifier::Exclude(without)) => without_name(p.labels)
                            .into_iter()
                            .filter(|(k, _)| !without.labels.contains(k))
                            .collect(),
                        None => Labels::new(),
                    };
                    groups.entry(key).or_default().push(p.value);
                }
                let reduce = |values: &[f64]| -> Result<f64, String> {
                    Ok(match op.as_str() {
                        "sum" => values.iter().sum(),
                        "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
                        "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        "avg" => values.iter().sum::<f64>() / values.len() as f64,
                        "count" => values.len() as f64,
                        other => return Err(format!("aggregation {other} is not supported")),
                    })
                };
                let mut out = Vec::new();
                for (labels, values) in groups {
                    out.push(Point {
                        labels,
                        value: reduce(&values)?,
                    });
                }
                Value::Vector(out)
            }
            Expr::Binary(bin) => {
                let lhs = self.eval(&bin.lhs, time)?;
                let rhs = self.eval(&bin.rhs, time)?;
                let op = bin.op.to_string();
                let return_bool = bin.modifier.as_ref().is_some_and(|m| m.return_bool);
                let comparison = bin.op.is_comparison_operator();
                let apply = |a: f64, b: f64| -> Result<Option<f64>, String> {
                    let truth = |c: bool| {
                        if return_bool {
                            Some(if c { 1.0 } else { 0.0 })
                        } else {
                            c.then_some(a)
                        }
                    };
                    Ok(match op.as_str() {
                        "+" => Some(a + b),
                        "-" => Some(a - b),
                        "*" => Some(a * b),
                        "/" => Some(a / b),
                        ">" => truth(a > b),
                        "<" => truth(a < b),
                        ">=" => truth(a >= b),
                        "<=" => truth(a <= b),
                        "==" => truth(a == b),
                        "!=" => truth(a != b),
                        other => return Err(format!("operator {other} is not supported")),
                    })
                };
                match (lhs, rhs) {
                    (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(apply(a, b)?.unwrap_or(f64::NAN)),
                    (Value::Vector(points), Value::Scalar(b)) => {
                        let mut out = Vec::new();
                        for p in points {
                            if let Some(value) = apply(p.value, b)? {
                                let labels = if comparison && !return_bool {
                                    p.labels
                                } else {
                                    without_name(p.labels)
                                };
                                out.push(Point { labels, value });
                            }
                        }
                        Value::Vector(out)
                    }
                    (Value::Scalar(a), Value::Vector(points)) => {
                        let mut out = Vec::new();
                        for p in points {
                            if let Some(value) = apply(a, p.value)? {
                                let value = if comparison && !return_bool {
                                    p.value
                                } else {
                                    value
                                };
                                out.push(Point {
                                    labels: without_name(p.labels),
                                    value,
                                });
                            }
                        }
                        Value::Vector(out)
                    }
                    (Value::Vector(left), Value::Vector(right)) => {
                        let modifier = bin.modifier.as_ref();
                        let matching = modifier.and_then(|m| m.matching.clone());
                        let key = |labels: &Labels| -> Labels {
                            let labels = without_name(labels.clone());
                            match &matching {
                                Some(LabelModifier::Include(on)) => labels
                                    .into_iter()
                                    .filter(|(k, _)| on.labels.contains(k))
                                    .collect(),
                                Some(LabelModifier::Exclude(ign)) => labels
                                    .into_iter()
                                    .filter(|(k, _)| !ign.labels.contains(k))
                                    .collect(),
                                None => labels,
                            }
                        };
                        if bin.op.is_set_operator() {
                            let right_keys: BTreeSet<Labels> = right.iter().map(|p| key(&p.labels)).collect();
                            let mut out: Vec<Point> = match op.as_str() {
                                "and" => left
                                    .into_iter()
                                    .filter(|p| right_keys.contains(&key(&p.labels)))
                                    .collect(),
                                "unless" => left
                                    .into_iter()
                                    .filter(|p| !right_keys.contains(&key(&p.labels)))
                                    .collect(),
                                _ => {
                                    let left_keys: BTreeSet<Labels> =
                                        left.iter().map(|p| key(&p.labels)).collect();
                                    let mut out = left;
                                    out.extend(
                                        right.into_iter().filter(|p| !left_keys.contains(&key(&p.labels))),
                                    );
                                    out
                                }
                            };
                            out.sort_by(|a, b| a.labels.cmp(&b.labels));
                            return Ok(Value::Vector(out));
                        }
                        if matches!(
                            modifier.map(|m| &m.card),
                            Some(VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_))
                        ) {
                            return Err("group_left/group_right are not supported".into());
                        }
                        let mut by_key: BTreeMap<Labels, f64> = BTreeMap::new();
                        for p in right {
                            if by_key.insert(key(&p.labels), p.value).is_some() {
                                return Err(format!(
                                    "`{op}`: many series on the right match one on the left"
                                ));
                            }
                        }
                        let mut out = Vec::new();
                        for p in left {
                            let Some(&b) = by_key.get(&key(&p.labels)) else {
                                continue;
                            };
                            if let Some(value) = apply(p.value, b)? {
                                let labels = if comparison && !return_bool {
                                    p.labels
                                } else {
                                    without_name(p.labels)
                                };
                                out.push(Point { labels, value });
                            }
                        }
                        Value::Vector(out)
                    }
                    _ => return Err("binary operation on a range vector".into()),
                }
            }
            other => return Err(format!("not supported: {other}")),
        })
    }

    fn call(&self, call: &parser::Call, time: f64) -> Result<Value, String> {
        let args = call
            .args
            .args
            .iter()
            .map(|a| self.eval(a, time))
            .collect::<Result<Vec<_>, _>>()?;
        let name = call.func.name;
        let over_range = |f: Reduce| -> Result<Value, String> {
            let Some(Value::Matrix(series)) = args.first() else {
                return Err(format!("{name} needs a range vector"));
            };
            Ok(Value::Vector(
                series
                    .iter()
                    .filter_map(|(labels, samples)| {
                        f(samples).map(|value| Point {
                            labels: without_name(labels.clone()),
                            value,
                        })
                    })
                    .collect(),
            ))
        };
        let change = |s: &[(f64, f64)]| (s.len() >= 2).then(|| s[s.len() - 1].1 - s[0].1);
        let span = |s: &[(f64, f64)]| s[s.len() - 1].0 - s[0].0;
        match name {
            "increase" => over_range(&|s| change(s)),
            "rate" => over_range(&|s| change(s).map(|c| c / span(s))),
            "irate" => over_range(&|s| {
                (s.len() >= 2).then(|| {
                    let (a, b) = (s[s.len() - 2], s[s.len() - 1]);
                    (b.1 - a.1) / (b.0 - a.0)
                })
            }),
            "min_over_time" => over_range(&|s| s.iter().map(|x| x.1).reduce(f64::min)),
            "max_over_time" => over_range(&|s| s.iter().map(|x| x.1).reduce(f64::max)),
            "avg_over_time" => {
                over_range(&|s| (!s.is_empty()).then(|| s.iter().map(|x| x.1).sum::<f64>() / s.len() as f64))
            }
            "histogram_quantile" => {
                let (Some(Value::Scalar(q)), Some(Value::Vector(points))) = (args.first(), args.get(1))
                else {
                    return Err("histogram_quantile(scalar, vector)".into());
                };
                let mut histograms: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
                for p in points {
                    let mut labels = without_name(p.labels.clone());
                    let Some(le) = labels.remove("le") else { continue };
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().map_err(|_| format!("bad le {le}"))?
                    };
                    histograms.entry(labels).or_default().push((le, p.value));
                }
                Ok(Value::Vector(
                    histograms
                        .into_iter()
                        .filter_map(|(labels, buckets)| {
                            quantile(*q, buckets).map(|value| Point { labels, value })
                        })
                        .collect(),
                ))
            }
            other => Err(format!("function {other} is not supported")),
        }
    }
}

/// Prometheus' bucket interpolation.
fn quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> Option<f64> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 || buckets.last()?.0 != f64::INFINITY {
        return None;
    }
    let rank = q * total;
    let index = buckets.iter().position(|(_, count)| *count >= rank)?;
    if index == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    let (start, below) = if index == 0 {
        (0.0, 0.0)
    } else {
        (buckets[index - 1].0, buckets[index - 1].1)
    };
    let (end, count) = buckets[index];
    Some(start + (end - start) * (rank - below) / (count - below))
}

fn without_name(mut labels: Labels) -> Labels {
    labels.remove("__name__");
    labels
}

fn matches(matcher: &Matcher, value: &str) -> bool {
    match &matcher.op {
        MatchOp::Equal => value == matcher.value,
        MatchOp::NotEqual => value != matcher.value,
        MatchOp::Re(re) => re.is_match(value),
        MatchOp::NotRe(re) => !re.is_match(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::parse;

    fn store() -> Store {
        let mut store = Store::default();
        store.scrape(
            0.0,
            &parse("c_total{k=\"a\"} 10\nc_total{k=\"b\"} 0\nh_bucket{le=\"1.0\"} 0\nh_bucket{le=\"10.0\"} 0\nh_bucket{le=\"+Inf\"} 0\n").unwrap(),
        );
        store.scrape(
            100.0,
            &parse("c_total{k=\"a\"} 30\nc_total{k=\"b\"} 5\nh_bucket{le=\"1.0\"} 2\nh_bucket{le=\"10.0\"} 10\nh_bucket{le=\"+Inf\"} 10\ng{k=\"a\"} 4\n").unwrap(),
        );
        store
    }

    fn values(store: &Store, query: &str) -> Vec<(String, f64)> {
        store
            .query(query, 100.0)
            .unwrap()
            .into_iter()
            .map(|p| (p.labels.get("k").cloned().unwrap_or_default(), p.value))
            .collect()
    }

    #[test]
    fn counters_histograms_aggregations_and_operators() {
        let store = store();
        assert_eq!(
            values(&store, "increase(c_total[5m])"),
            [("a".into(), 20.0), ("b".into(), 5.0)]
        );
        assert_eq!(
            values(&store, "rate(c_total{k=~\"a|z\"}[5m])"),
            [("a".into(), 0.2)]
        );
        assert_eq!(
            values(&store, "sum(increase(c_total[5m]))"),
            [(String::new(), 25.0)]
        );
        assert_eq!(values(&store, "increase(c_total[5m]) > 10"), [("a".into(), 20.0)]);
        assert_eq!(
            values(&store, "increase(c_total[5m]) / on (k) g"),
            [("a".into(), 5.0)]
        );
        assert_eq!(values(&store, "c_total unless g"), [("b".into(), 5.0)]);
        // 2 of 10 below 1 s, the rest below 10 s: the median is 1 + 9 * (5 - 2) / 8.
        let median = store
            .query("histogram_quantile(0.5, rate(h_bucket[5m]))", 100.0)
            .unwrap();
        assert!((median[0].value - 4.375).abs() < 1e-9, "{median:?}");
        assert!(store.query("increase(c_total[1m])", 100.0).unwrap().is_empty());
    }
}
