//! Checks a PromQL expression against a [`Catalog`]: every metric it selects is exposed, every
//! label it matches, groups by or joins on exists where it is used, and binary operations join
//! operands that can match. Works out the labels of the result, so alert annotations and
//! dashboard legends can be checked too.

use std::collections::BTreeSet;

use promql_parser::{
    label::MatchOp,
    parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector},
};

use crate::exposition::Catalog;

/// Labels Prometheus adds to every scraped series (the scrape job and target).
pub const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Label names of an expression's result; `None` for scalars and strings.
pub type Labels = Option<BTreeSet<String>>;

/// Checks PromQL expressions against one catalog.
pub struct Checker<'a> {
    catalog: &'a Catalog,
}

impl<'a> Checker<'a> {
    /// A checker for `catalog`.
    pub fn new(catalog: &'a Catalog) -> Self {
        Self { catalog }
    }

    /// Parses `query` and returns the labels of its result, or every problem found.
    pub fn check(&self, query: &str) -> Result<Labels, Vec<String>> {
        let expr = parser::parse(query).map_err(|e| vec![format!("does not parse: {e}")])?;
        let mut problems = Vec::new();
        let labels = self.labels(&expr, &mut problems);
        if problems.is_empty() {
            Ok(labels)
        } else {
            Err(problems)
        }
    }

    /// The labels of `expr`'s result; problems go to `problems`.
    pub fn labels(&self, expr: &Expr, problems: &mut Vec<String>) -> Labels {
        match expr {
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => None,
            Expr::Paren(p) => self.labels(&p.expr, problems),
            Expr::Unary(u) => self.labels(&u.expr, problems),
            Expr::Subquery(s) => self.labels(&s.expr, problems),
            Expr::VectorSelector(vs) => Some(self.selector(vs, problems)),
            Expr::MatrixSelector(ms) => Some(self.selector(&ms.vs, problems)),
            Expr::Call(call) => self.call(call, problems),
            Expr::Aggregate(agg) => {
                let inner = self.labels(&agg.expr, problems).unwrap_or_default();
                let op = agg.op.to_string();
                if matches!(op.as_str(), "topk" | "bottomk" | "limitk" | "limit_ratio") {
                    return Some(inner);
                }
                let mut result = match &agg.modifier {
                    Some(LabelModifier::Include(by)) => {
                        for label in &by.labels {
                            if !inner.contains(label) {
                                problems.push(format!(
                                    "{op} by ({label}): the aggregated series have no `{label}` label (they have {inner:?})"
                                ));
                            }
                        }
                        by.labels.iter().cloned().collect()
                    }
                    Some(LabelModifier::Exclude(without)) => inner
                        .iter()
                        .filter(|l| !without.labels.contains(l))
                        .cloned()
                        .collect(),
                    None => BTreeSet::new(),
                };
                if op == "count_values"
                    && let Some(Expr::StringLiteral(s)) = agg.param.as_deref()
                {
                    result.insert(s.val.clone());
                }
                Some(result)
            }
            Expr::Binary(bin) => {
                let lhs = self.labels(&bin.lhs, problems);
                let rhs = self.labels(&bin.rhs, problems);
                let (Some(lhs), Some(rhs)) = (lhs.clone(), rhs.clone()) else {
                    return lhs.or(rhs);
                };
                let or = bin.op.to_string() == "or";
                let modifier = bin.modifier.as_ref();
                let matching = modifier.and_then(|m| m.matching.as_ref());
                let card = modifier.map(|m| &m.card);
                let keys = |side: &BTreeSet<String>| -> BTreeSet<String> {
                    match matching {
                        Some(LabelModifier::Include(on)) => on.labels.iter().cloned().collect(),
                        Some(LabelModifier::Exclude(ignoring)) => side
                            .iter()
                            .filter(|l| !ignoring.labels.contains(l))
                            .cloned()
                            .collect(),
                        None => side.clone(),
                    }
                };
                if let Some(LabelModifier::Include(on)) = matching {
                    for label in &on.labels {
                        for (side, labels) in [("left", &lhs), ("right", &rhs)] {
                            if !labels.contains(label) {
                                problems.push(format!(
                                    "on ({label}): the {side} operand has no `{label}` label (it has {labels:?})"
                                ));
                            }
                        }
                    }
                }
                let set_operator = bin.op.is_set_operator();
                let grouped = matches!(
                    card,
                    Some(VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_))
                );
                if !set_operator && !grouped && keys(&lhs) != keys(&rhs) {
                    problems.push(format!(
                        "`{}` joins operands with different labels ({:?} and {:?}): no series would match",
                        bin.op,
                        keys(&lhs),
                        keys(&rhs)
                    ));
                }
                Some(match card {
                    Some(VectorMatchCardinality::ManyToOne(extra)) => {
                        lhs.iter().chain(extra.labels.iter()).cloned().collect()
                    }
                    Some(VectorMatchCardinality::OneToMany(extra)) => {
                        rhs.iter().chain(extra.labels.iter()).cloned().collect()
                    }
                    _ if or => lhs.union(&rhs).cloned().collect(),
                    _ => lhs,
                })
            }
            Expr::Extension(_) => {
                problems.push("extension expressions are not PromQL".into());
                None
            }
        }
    }

    fn selector(&self, vs: &VectorSelector, problems: &mut Vec<String>) -> BTreeSet<String> {
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        });
        let Some(name) = name else {
            problems.push(format!("selector {vs} names no metric"));
            return BTreeSet::new();
        };
        let Some(exposed) = self.catalog.labels(&name) else {
            problems.push(format!("no binary exposes the metric `{name}`"));
            return BTreeSet::new();
        };
        let labels: BTreeSet<String> = exposed
            .iter()
            .cloned()
            .chain(TARGET_LABELS.iter().map(|l| (*l).to_owned()))
            .collect();
        let matchers = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten());
        for matcher in matchers.filter(|m| m.name != "__name__") {
            if !labels.contains(&matcher.name) {
                problems.push(format!(
                    "`{name}` has no label `{}` (it has {exposed:?})",
                    matcher.name
                ));
            }
        }
        labels
    }

    fn call(&self, call: &parser::Call, problems: &mut Vec<String>) -> Labels {
        let args: Vec<Labels> = call.args.args.iter().map(|a| self.labels(a, problems)).collect();
        let vector = || args.iter().flatten().next().cloned();
        let string_arg = |i: usize| match call.args.args.get(i).map(|a| a.as_ref()) {
            Some(Expr::StringLiteral(s)) => Some(s.val.clone()),
            _ => None,
        };
        match call.func.name {
            "time" | "scalar" | "pi" => None,
            "vector" | "absent" | "absent_over_time" => Some(BTreeSet::new()),
            "histogram_quantile" => {
                let mut labels = vector().unwrap_or_default();
                if !labels.remove("le") {
                    problems.push(format!(
                        "histogram_quantile over series without `le` ({labels:?}): keep `le` in the aggregation"
                    ));
                }
                Some(labels)
            }
            "label_replace" | "label_join" => {
                let mut labels = vector().unwrap_or_default();
                let sources: Vec<String> = if call.func.name == "label_replace" {
                    string_arg(3).into_iter().collect()
                } else {
                    (3..call.args.args.len()).filter_map(string_arg).collect()
                };
                for source in sources.iter().filter(|s| !s.is_empty()) {
                    if !labels.contains(source) {
                        problems.push(format!(
                            "{}: no source label `{source}` (the series have {labels:?})",
                            call.func.name
                        ));
                    }
                }
                labels.extend(string_arg(1));
                Some(labels)
            }
            _ => vector(),
        }
    }
}

/// One vector selector of an expression: the metric it names and the labels its matchers use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The metric's name.
    pub metric: String,
    /// Label names its matchers use (`__name__` left out).
    pub labels: BTreeSet<String>,
}

/// Every vector selector in `query` (inside range selectors, calls, aggregations and operators).
pub fn selectors(query: &str) -> Result<Vec<Selector>, String> {
    let expr = parser::parse(query).map_err(|e| format!("does not parse: {e}"))?;
    let mut found = Vec::new();
    collect_selectors(&expr, &mut found)?;
    Ok(found)
}

fn collect_selectors(expr: &Expr, found: &mut Vec<Selector>) -> Result<(), String> {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Paren(p) => collect_selectors(&p.expr, found)?,
        Expr::Unary(u) => collect_selectors(&u.expr, found)?,
        Expr::Subquery(s) => collect_selectors(&s.expr, found)?,
        Expr::VectorSelector(vs) => found.push(selector_of(vs)?),
        Expr::MatrixSelector(ms) => found.push(selector_of(&ms.vs)?),
        Expr::Call(call) => {
            for arg in &call.args.args {
                collect_selectors(arg, found)?;
            }
        }
        Expr::Aggregate(agg) => {
            collect_selectors(&agg.expr, found)?;
            if let Some(param) = &agg.param {
                collect_selectors(param, found)?;
            }
        }
        Expr::Binary(bin) => {
            collect_selectors(&bin.lhs, found)?;
            collect_selectors(&bin.rhs, found)?;
        }
        Expr::Extension(_) => return Err("extension expressions are not PromQL".into()),
    }
    Ok(())
}

fn selector_of(vs: &VectorSelector) -> Result<Selector, String> {
    let metric = vs
        .name
        .clone()
        .or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        })
        .ok_or_else(|| format!("selector {vs} names no metric"))?;
    let labels = vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .filter(|m| m.name != "__name__")
        .map(|m| m.name.clone())
        .collect();
    Ok(Selector { metric, labels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Catalog, parse};

    fn catalog() -> Catalog {
        Catalog::of(
            &parse(concat!(
                "reconciles_total{kind=\"A\"} 1\n",
                "errors_total{kind=\"A\",category=\"x\"} 1\n",
                "wait_seconds_bucket{name=\"s\",le=\"1.0\"} 1\n",
                "runners{name=\"s\",namespace=\"n\"} 1\n",
            ))
            .unwrap(),
        )
    }

    #[test]
    fn good_expressions_and_their_labels() {
        let catalog = catalog();
        let checker = Checker::new(&catalog);
        let labels = |q: &str| {
            checker
                .check(q)
                .unwrap()
                .map(|l| l.into_iter().collect::<Vec<_>>())
        };
        assert_eq!(
            labels(
                "sum by (kind) (rate(errors_total{category!=\"w\"}[5m])) / sum by (kind) (rate(reconciles_total[5m])) > 0.1"
            ),
            Some(vec!["kind".into()])
        );
        assert_eq!(
            labels("histogram_quantile(0.9, sum by (le, name) (rate(wait_seconds_bucket[5m])))"),
            Some(vec!["name".into()])
        );
        assert_eq!(labels("1 - 2"), None);
        assert!(
            labels("runners{job=\"x\"}")
                .unwrap()
                .contains(&"instance".to_owned())
        );
    }

    #[test]
    fn problems_are_named() {
        let catalog = catalog();
        let checker = Checker::new(&catalog);
        let problems = |q: &str| checker.check(q).unwrap_err().join("; ");
        assert!(problems("missing_total").contains("no binary exposes the metric `missing_total`"));
        assert!(problems("errors_total{result=\"error\"}").contains("has no label `result`"));
        assert!(problems("sum by (name) (errors_total)").contains("no `name` label"));
        assert!(
            problems("histogram_quantile(0.9, sum by (name) (rate(wait_seconds_bucket[5m])))")
                .contains("without `le`")
        );
        assert!(
            problems("rate(errors_total[5m]) / rate(reconciles_total[5m])").contains("no series would match")
        );
        assert!(problems("runners and on (kind) errors_total").contains("on (kind)"));
        assert!(problems("sum(").contains("does not parse"));
    }

    #[test]
    fn selectors_are_found_everywhere_in_an_expression() {
        let found = selectors(
            "sum by (kind) (rate(errors_total{category!=\"w\", job=~\"c\"}[5m])) / on (kind) reconciles_total > 1",
        )
        .unwrap();
        let names: Vec<(&str, Vec<&str>)> = found
            .iter()
            .map(|s| (s.metric.as_str(), s.labels.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            names,
            [
                ("errors_total", vec!["category", "job"]),
                ("reconciles_total", vec![])
            ]
        );
        assert!(selectors("{kind=\"A\"}").unwrap_err().contains("names no metric"));
    }
}
