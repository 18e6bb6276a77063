//! GitHub endpoint names from request paths, so calls group by what they do (pure).

/// `METHOD /path` with ids (numbers, UUIDs) replaced by `{id}`; the Actions Service's
/// `/_services/pipelines` prefix is dropped, since every runtime call has it.
pub fn endpoint(method: &str, path: &str) -> String {
    let path = path.strip_prefix("/_services/pipelines").unwrap_or(path);
    let segments: Vec<&str> = path
        .split('/')
        .map(|s| if is_id(s) { "{id}" } else { s })
        .collect();
    format!("{method} {}", segments.join("/"))
}

/// When each job was first acquired, from the successful `acquirejobs` calls: (path, status,
/// time, request body with the job ids).
pub fn acquisitions<'a, T: Copy + Ord>(
    calls: impl IntoIterator<Item = (&'a str, u16, T, &'a str)>,
) -> std::collections::BTreeMap<i64, T> {
    let mut first = std::collections::BTreeMap::new();
    for (path, status, at, body) in calls {
        if status != 200 || !path.ends_with("/acquirejobs") {
            continue;
        }
        for id in serde_json::from_str::<Vec<i64>>(body).unwrap_or_default() {
            first
                .entry(id)
                .and_modify(|t: &mut T| *t = (*t).min(at))
                .or_insert(at);
        }
    }
    first
}

fn is_id(segment: &str) -> bool {
    let numeric = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    let uuid = segment.len() == 36
        && segment.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    numeric || uuid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_replaced_and_the_service_prefix_dropped() {
        assert_eq!(
            endpoint(
                "POST",
                "/_services/pipelines/_apis/runtime/runnerscalesets/101/acquirejobs"
            ),
            "POST /_apis/runtime/runnerscalesets/{id}/acquirejobs"
        );
        assert_eq!(
            endpoint(
                "DELETE",
                "/_services/pipelines/_apis/runtime/runnerscalesets/101/sessions/0f8fad5b-d9cb-469f-a165-70867728950e"
            ),
            "DELETE /_apis/runtime/runnerscalesets/{id}/sessions/{id}"
        );
        assert_eq!(
            endpoint("GET", "/broker/scalesets/message"),
            "GET /broker/scalesets/message"
        );
        assert_eq!(
            endpoint("POST", "/api/v3/orgs/my-org/actions/runners/registration-token"),
            "POST /api/v3/orgs/my-org/actions/runners/registration-token"
        );
    }

    #[test]
    fn a_job_is_acquired_at_its_first_successful_acquire_call() {
        let path = "/_services/pipelines/_apis/runtime/runnerscalesets/5/acquirejobs";
        let got = acquisitions([
            (path, 401, 1, "[7]"),
            (path, 200, 3, "[7, 8]"),
            (path, 200, 2, "[7]"),
            (path, 200, 4, "not json"),
            ("/broker/scalesets/message", 200, 0, "[9]"),
        ]);
        assert_eq!(got, [(7, 2), (8, 3)].into());
    }

    #[test]
    fn the_pool_number_is_an_id_too() {
        assert_eq!(
            endpoint(
                "DELETE",
                "/_services/pipelines/_apis/distributedtask/pools/0/agents/7"
            ),
            "DELETE /_apis/distributedtask/pools/{id}/agents/{id}"
        );
    }
}
