//! N scale sets from the samples: each an AutoscaleSet and a RunnerSet of its own name (pure).

use anyhow::Context as _;
use rssc_sandbox::manifests::Samples;
use serde_json::{Value, json};

/// The names of `n` scale sets.
pub fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-{i}")).collect()
}

/// The AutoscaleSet and RunnerSet of scale set `name`, from samples already pointed at the fakes:
/// no idle runners (so every runner's whole life is measured), at most `max_runners`, and only
/// the scale set's own name as a label, so each scale set gets only its own jobs.
pub fn pair(samples: &Samples, name: &str, max_runners: usize) -> anyhow::Result<(Value, Value)> {
    let mut asset = samples.autoscale_set.clone();
    asset["metadata"]["name"] = json!(name);
    let spec = asset
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .context("the AutoscaleSet sample has no spec")?;
    spec.insert("scaleSetName".into(), json!(name));
    spec.insert("minRunners".into(), json!(0));
    spec.insert("maxRunners".into(), json!(max_runners));
    spec.remove("labels");
    let mut runner_set = samples.runner_set.clone();
    runner_set["metadata"]["name"] = json!(name);
    runner_set["spec"]["autoscaleSetRef"] = json!({"name": name});
    Ok((asset, runner_set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scale_set_is_named_sized_and_labelled_on_its_own() {
        let samples = Samples {
            token_secret: json!({}),
            autoscale_set: json!({"metadata": {"name": "linux-x64"}, "spec": {
                "scaleSetName": "linux-x64", "minRunners": 1, "maxRunners": 20,
                "labels": [{"name": "linux"}], "runnerImage": "img"}}),
            runner_set: json!({"metadata": {"name": "linux-x64"}, "spec": {
                "autoscaleSetRef": {"name": "linux-x64"}, "runnerTemplate": {}}}),
        };
        assert_eq!(names(2), ["bench-0", "bench-1"]);
        let (asset, runner_set) = pair(&samples, "bench-1", 1000).unwrap();
        assert_eq!(asset["metadata"]["name"], "bench-1");
        assert_eq!(asset["spec"]["scaleSetName"], "bench-1");
        assert_eq!(asset["spec"]["maxRunners"], 1000);
        assert_eq!(asset["spec"]["minRunners"], 0);
        assert!(asset["spec"].get("labels").is_none());
        assert_eq!(
            asset["spec"]["runnerImage"], "img",
            "the rest is as in the sample"
        );
        assert_eq!(runner_set["metadata"]["name"], "bench-1");
        assert_eq!(runner_set["spec"]["autoscaleSetRef"]["name"], "bench-1");
        assert_eq!(runner_set["spec"]["runnerTemplate"], json!({}));
    }
}
