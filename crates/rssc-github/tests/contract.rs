//! Contract tests: the client against JSON written by hand from the protocol reference
//! (`tests/fixtures/*.json`), served by a stub that records what the client sends; and the fake
//! GitHub's JSON checked against the same fixtures' field names.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rssc_github::{
    ActionsClient, Credentials, Error, GitHubConfig, JobMessage, NewScaleSet, ScaleSetUpdate, Secret,
};
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect(name)
}

type Recorded = Arc<Mutex<HashMap<(String, String), (String, Option<String>)>>>;

/// A stub answering each (method, path) with a fixture and recording request bodies and queries.
async fn stub() -> (SocketAddr, Recorded) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let recorded: Recorded = Arc::default();
    let rec = recorded.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let rec = rec.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let rec = rec.clone();
                    let base = base.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_owned();
                        let query = req.uri().query().map(str::to_owned);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        rec.lock().unwrap().insert(
                            (method.clone(), path.clone()),
                            (String::from_utf8_lossy(&body).into_owned(), query),
                        );
                        let ss = "/tenant/_apis/runtime/runnerscalesets";
                        let agents = "/tenant/_apis/distributedtask/pools/0/agents";
                        let (status, name): (u16, Option<&str>) = match (method.as_str(), path.as_str()) {
                            ("POST", "/api/v3/orgs/octo-org/actions/runners/registration-token") => {
                                (201, Some("registration_token_response.json"))
                            }
                            ("POST", "/api/v3/app/installations/777/access_tokens") => {
                                (201, Some("installation_token_response.json"))
                            }
                            ("POST", "/api/v3/actions/runner-registration") => {
                                (200, Some("admin_connection_response.json"))
                            }
                            ("GET", "/tenant/_apis/runtime/runnergroups/") => {
                                (200, Some("runner_groups_response.json"))
                            }
                            ("GET", p) if p == ss => (200, Some("scale_sets_response.json")),
                            ("POST", p) if p == ss => (200, Some("scale_set_response.json")),
                            ("GET" | "PATCH", p) if p == format!("{ss}/42") => {
                                (200, Some("scale_set_response.json"))
                            }
                            ("DELETE", p) if p == format!("{ss}/42") => (204, None),
                            ("POST", p) if p == format!("{ss}/42/sessions") => {
                                (200, Some("session_response.json"))
                            }
                            ("PATCH", p) if p.starts_with(&format!("{ss}/42/sessions/")) => {
                                (200, Some("session_response.json"))
                            }
                            ("DELETE", p) if p.starts_with(&format!("{ss}/42/sessions/")) => (204, None),
                            ("GET", "/broker/scalesets/message") => (200, Some("message_response.json")),
                            ("DELETE", "/broker/scalesets/message/7") => (204, None),
                            ("POST", p) if p == format!("{ss}/42/acquirejobs") => {
                                (200, Some("acquire_jobs_response.json"))
                            }
                            ("GET", p) if p == format!("{ss}/42/acquirablejobs") => {
                                (200, Some("acquirable_jobs_response.json"))
                            }
                            ("POST", p) if p == format!("{ss}/42/generatejitconfig") => {
                                (200, Some("jit_response.json"))
                            }
                            ("POST", p) if p == format!("{ss}/43/generatejitconfig") => {
                                (409, Some("error_agent_exists.json"))
                            }
                            ("POST", p) if p == format!("{ss}/43/sessions") => {
                                (409, Some("error_session_conflict.json"))
                            }
                            ("GET", p) if p == agents => (200, Some("runners_response.json")),
                            ("GET", p) if p == format!("{agents}/12") => (200, Some("runner_response.json")),
                            ("DELETE", p) if p == format!("{agents}/12") => {
                                (400, Some("error_job_still_running.json"))
                            }
                            ("DELETE", p) if p == format!("{agents}/13") => (204, None),
                            _ => (404, None),
                        };
                        let mut body = name
                            .map(|n| fixture(n).replace("{{BASE_URL}}", &base))
                            .unwrap_or_default()
                            .into_bytes();
                        if name == Some("message_response.json") {
                            // The service may prefix a UTF-8 BOM.
                            body.splice(0..0, [0xEF, 0xBB, 0xBF]);
                        }
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, recorded)
}

fn sent(rec: &Recorded, method: &str, path: &str) -> (Value, Option<String>) {
    let map = rec.lock().unwrap();
    let (body, query) = map
        .get(&(method.to_owned(), path.to_owned()))
        .unwrap_or_else(|| panic!("no {method} {path}"))
        .clone();
    (
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap()
        },
        query,
    )
}

fn json_fixture(name: &str, config_url: &str) -> Value {
    serde_json::from_str(&fixture(name).replace("{{CONFIG_URL}}", config_url)).unwrap()
}

#[tokio::test]
async fn client_matches_reference_fixtures() {
    let (addr, rec) = stub().await;
    let config_url = format!("http://{addr}/octo-org");
    let config = GitHubConfig::parse_with(&config_url, false).unwrap();
    let creds = Credentials::app(
        common::APP_ID,
        common::INSTALLATION_ID,
        Secret::new(common::APP_KEY.into()),
    )
    .unwrap();
    let client = ActionsClient::new(config, creds, common::fast_opts()).unwrap();

    let group = client.get_runner_group_by_name("Default").await.unwrap();
    assert_eq!(
        (group.id, group.name.as_str(), group.size, group.is_default_group),
        (1, "Default", 3, true)
    );
    assert_eq!(
        sent(&rec, "POST", "/api/v3/actions/runner-registration").0,
        json_fixture("runner_registration_request.json", &config_url)
    );
    let (_, q) = sent(&rec, "GET", "/tenant/_apis/runtime/runnergroups/");
    assert_eq!(q.as_deref(), Some("groupName=Default&api-version=6.0-preview"));

    let ss = client
        .create_scale_set(&NewScaleSet {
            name: "arc-set".into(),
            runner_group_id: 1,
            labels: vec![rssc_github::Label::system("linux")],
            disable_update: true,
        })
        .await
        .unwrap();
    assert_eq!(
        sent(&rec, "POST", "/tenant/_apis/runtime/runnerscalesets").0,
        json_fixture("create_scale_set_request.json", "")
    );
    assert_eq!(
        (
            ss.id,
            ss.runner_group_name.as_str(),
            ss.runner_setting.disable_update
        ),
        (42, "Default", true)
    );
    assert_eq!(ss.labels[1].name, "linux");
    assert_eq!(ss.created_on.as_deref(), Some("2024-05-01T10:00:00Z"));

    let by_name = client.get_scale_set_by_name(1, "arc-set").await.unwrap().unwrap();
    assert_eq!(by_name, ss);
    let (_, q) = sent(&rec, "GET", "/tenant/_apis/runtime/runnerscalesets");
    assert_eq!(
        q.as_deref(),
        Some("runnerGroupId=1&name=arc-set&api-version=6.0-preview")
    );
    assert_eq!(client.get_scale_set(42).await.unwrap(), ss);
    client
        .update_scale_set(
            42,
            &ScaleSetUpdate {
                runner_group_id: Some(3),
                name: None,
                labels: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        sent(&rec, "PATCH", "/tenant/_apis/runtime/runnerscalesets/42").0,
        json_fixture("update_scale_set_request.json", "")
    );

    let mut session = client.create_session(42, "listener-pod-0").await.unwrap();
    assert_eq!(
        sent(&rec, "POST", "/tenant/_apis/runtime/runnerscalesets/42/sessions").0,
        json_fixture("create_session_request.json", "")
    );
    assert_eq!(session.session_id(), "6f1c2b1e-7d0a-4c1e-9a53-2b7f0e4d9c11");
    assert_eq!(
        session.session.message_queue_access_token.expose(),
        "mq-token-value"
    );
    let st = session.session.statistics.unwrap();
    assert_eq!(
        (
            st.total_available_jobs,
            st.total_assigned_jobs,
            st.total_running_jobs,
            st.total_idle_runners
        ),
        (1, 2, 1, 1)
    );
    client.refresh_session(&mut session).await.unwrap();

    let msg = client.get_message(&mut session, 6, 5).await.unwrap().unwrap();
    let (_, q) = sent(&rec, "GET", "/broker/scalesets/message");
    assert_eq!(
        q.as_deref(),
        Some("sessionId=6f1c2b1e-7d0a-4c1e-9a53-2b7f0e4d9c11&lastMessageId=6")
    );
    assert_eq!(msg.message_id, 7);
    assert_eq!(msg.statistics.total_registered_runners, 2);
    assert_eq!(msg.jobs.len(), 4, "the unknown job message type is skipped");
    let JobMessage::Available { job, acquire_job_url } = &msg.jobs[0] else {
        panic!("{:?}", msg.jobs[0])
    };
    assert_eq!(job.runner_request_id, 1001);
    assert_eq!(job.repository_name, "octo-repo");
    assert_eq!(job.owner_name, "octo-org");
    assert_eq!(job.workflow_run_id, 555);
    assert_eq!(job.job_display_name, "build");
    assert_eq!(job.request_labels, ["arc-set"]);
    assert_eq!(job.queue_time.as_deref(), Some("2024-05-01T10:00:00Z"));
    assert!(acquire_job_url.ends_with("/acquirejobs"));
    assert!(matches!(&msg.jobs[1], JobMessage::Assigned { job } if job.runner_request_id == 1000));
    assert!(
        matches!(&msg.jobs[2], JobMessage::Started { runner_id: 12, runner_name, .. } if runner_name == "arc-set-runner-abcde")
    );
    assert!(
        matches!(&msg.jobs[3], JobMessage::Completed { result, runner_id: 11, .. } if result == "succeeded")
    );
    client.delete_message(&mut session, 7).await.unwrap();
    let (_, q) = sent(&rec, "DELETE", "/broker/scalesets/message/7");
    assert_eq!(
        q.as_deref(),
        Some("sessionId=6f1c2b1e-7d0a-4c1e-9a53-2b7f0e4d9c11")
    );

    assert_eq!(
        client.acquire_jobs(&mut session, &[1001, 1002]).await.unwrap(),
        [1001]
    );
    assert_eq!(
        sent(
            &rec,
            "POST",
            "/tenant/_apis/runtime/runnerscalesets/42/acquirejobs"
        )
        .0,
        json_fixture("acquire_jobs_request.json", "")
    );
    let acq = client.acquirable_jobs(42).await.unwrap();
    assert_eq!(
        (acq[0].runner_request_id, acq[0].event_name.as_str()),
        (1001, "push")
    );

    let jit = client
        .generate_jit_config(42, "arc-set-runner-abcde", "_work")
        .await
        .unwrap();
    assert_eq!(
        sent(
            &rec,
            "POST",
            "/tenant/_apis/runtime/runnerscalesets/42/generatejitconfig"
        )
        .0,
        json_fixture("jit_request.json", "")
    );
    assert_eq!((jit.runner.id, jit.runner.runner_scale_set_id), (12, 42));
    assert_eq!(
        jit.encoded_jit_config.expose(),
        "eyJzZWNyZXQiOiJqaXQtY29uZmlnIn0="
    );
    assert!(matches!(
        client.generate_jit_config(43, "x", "_work").await,
        Err(Error::RunnerExists { .. })
    ));
    assert!(matches!(
        client.create_session(43, "x").await,
        Err(Error::SessionConflict { .. })
    ));

    assert_eq!(client.get_runner(12).await.unwrap().name, "arc-set-runner-abcde");
    assert_eq!(
        client
            .get_runner_by_name("arc-set-runner-abcde")
            .await
            .unwrap()
            .unwrap()
            .id,
        12
    );
    assert!(matches!(
        client.remove_runner(12).await,
        Err(Error::JobStillRunning { .. })
    ));
    client.remove_runner(13).await.unwrap();
    client.delete_session(&session).await.unwrap();
    client.delete_scale_set(42).await.unwrap();
}

/// Every object key path in a JSON value (`a.b`, `a[].c`).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                key_paths(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    key_paths(v, "", &mut out);
    out
}

#[tokio::test]
async fn fake_speaks_the_reference_field_names() {
    let fake = common::start(common::fast_fake()).await;
    let client = common::pat_client(&fake, common::fast_opts());
    let ss = common::make_scale_set(&client, "arc-set", &["linux"]).await;
    let conn = client.admin_connection().await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = conn.value.url.as_str();
    let token = conn.value.token.expose();
    let get = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .map(|b| serde_json::from_slice::<Value>(&b).unwrap())
                .unwrap()
        }
    };
    let raw_ss = get(format!(
        "{base}_apis/runtime/runnerscalesets/{}?api-version=6.0-preview",
        ss.id
    ))
    .await;
    let want = keys(&serde_json::from_str(&fixture("scale_set_response.json")).unwrap());
    assert_eq!(keys(&raw_ss), want);
    let raw_groups = get(format!(
        "{base}_apis/runtime/runnergroups/?groupName=Default&api-version=6.0-preview"
    ))
    .await;
    assert_eq!(
        keys(&raw_groups),
        keys(&serde_json::from_str(&fixture("runner_groups_response.json")).unwrap())
    );

    let raw_session: Value = http
        .post(format!(
            "{base}_apis/runtime/runnerscalesets/{}/sessions?api-version=6.0-preview",
            ss.id
        ))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(fixture("create_session_request.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let want: BTreeSet<String> = keys(&serde_json::from_str(&fixture("session_response.json")).unwrap())
        .into_iter()
        .filter(|k| !k.starts_with("runnerScaleSet."))
        .collect();
    let got: BTreeSet<String> = keys(&raw_session)
        .into_iter()
        .filter(|k| !k.starts_with("runnerScaleSet."))
        .collect();
    assert_eq!(got, want);

    fake.queue_job(rssc_sim_github::JobSpec::for_labels(["linux"]));
    let mq_url = raw_session["messageQueueUrl"].as_str().unwrap();
    let mq_token = raw_session["messageQueueAccessToken"].as_str().unwrap();
    let raw_msg: Value = http
        .get(mq_url)
        .bearer_auth(mq_token)
        .header("x-scalesetmaxcapacity", "5")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let want_msg: Value = serde_json::from_str(&fixture("message_response.json")).unwrap();
    assert_eq!(keys(&raw_msg), keys(&want_msg));
    let batch: Value = serde_json::from_str(raw_msg["body"].as_str().unwrap()).unwrap();
    let want_batch: Value = serde_json::from_str(want_msg["body"].as_str().unwrap()).unwrap();
    assert_eq!(keys(&batch[0]), keys(&want_batch[0]), "JobAvailable fields");

    let raw_jit: Value = http
        .post(format!(
            "{base}_apis/runtime/runnerscalesets/{}/generatejitconfig?api-version=6.0-preview",
            ss.id
        ))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(fixture("jit_request.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    assert_eq!(
        keys(&raw_jit),
        keys(&serde_json::from_str(&fixture("jit_response.json")).unwrap())
    );
}
