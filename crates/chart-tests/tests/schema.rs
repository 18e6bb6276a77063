//! Values the charts must refuse, through values.schema.json (wrong types, unknown keys) or a
//! `fail` in the templates (checks across values), each with a message that says what to change.
//! The files are `crates/chart-tests/bad-values/<chart>/*.yaml`; each starts with
//! `# expect: MESSAGE`.

use rssc_chart_tests::{Render, bad_values, stem};

fn refuses_each_bad_values_file(chart: &str) {
    let cases = bad_values(chart);
    assert!(cases.len() >= 8, "{chart} has bad values files");
    let mut wrong = Vec::new();
    for case in cases {
        let render = Render::new(chart, "release", "ns").values(&case.path);
        // `helm template` fails as `helm install` would; `helm lint` only reports a template's
        // `fail` as information, so it is not asked.
        let template = render.template();
        if template.success {
            wrong.push(format!("{}: accepted", stem(&case.path)));
        } else if !template.stderr.contains(&case.expect) {
            wrong.push(format!(
                "{}: expected {:?} in: {}",
                stem(&case.path),
                case.expect,
                template.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{chart}:\n{}", wrong.join("\n"));
}

#[test]
fn the_controller_chart_refuses_bad_values() {
    refuses_each_bad_values_file("rssc-controller");
}

#[test]
fn the_scale_set_chart_refuses_bad_values() {
    refuses_each_bad_values_file("rssc-scale-set");
}
