//! Component tests: every client call against the fake GitHub over loopback HTTP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rssc_github::{Error, JobMessage, ScaleSetUpdate};
use rssc_sim_github::{FaultKind, JobSpec, JobState};

#[tokio::test]
async fn every_call_against_the_fake() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());

    let group = client.get_runner_group_by_name("Default").await.unwrap();
    assert_eq!((group.id, group.is_default_group), (1, true));
    let other = fake.add_runner_group("Other Group");
    assert_eq!(
        client.get_runner_group_by_name("Other Group").await.unwrap().id,
        other
    );

    let ss = make_scale_set(&client, "arc-set", &["linux", "arc-set", "linux"]).await;
    assert_eq!(
        ss.labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["arc-set", "linux"]
    );
    assert!(ss.labels.iter().all(|l| l.label_type == "System"));
    assert!(ss.runner_setting.disable_update);
    assert_eq!(
        client
            .get_scale_set_by_name(1, "arc-set")
            .await
            .unwrap()
            .unwrap()
            .id,
        ss.id
    );
    assert!(
        client
            .get_scale_set_by_name(1, "missing")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(client.get_scale_set(ss.id).await.unwrap().name, "arc-set");
    let moved = client
        .update_scale_set(
            ss.id,
            &ScaleSetUpdate {
                runner_group_id: Some(other),
                name: None,
                labels: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (moved.runner_group_id, moved.runner_group_name.as_str()),
        (other, "Other Group")
    );

    let mut session = client.create_session(ss.id, "listener-pod").await.unwrap();
    assert_eq!(
        session.session.statistics.unwrap_or_default().total_assigned_jobs,
        0
    );
    client.refresh_session(&mut session).await.unwrap();

    // Nothing queued: the long poll answers 202 after the window.
    let t = Instant::now();
    assert!(client.get_message(&mut session, 0, 10).await.unwrap().is_none());
    assert!(t.elapsed() >= Duration::from_millis(250));

    // A job arrives during the poll.
    let poll = {
        let client = client.clone();
        let mut session = session.clone();
        tokio::spawn(async move { client.get_message(&mut session, 0, 10).await })
    };
    let job = fake.queue_job(JobSpec::for_labels(["linux"]));
    let msg = poll.await.unwrap().unwrap().expect("a message");
    assert_eq!(msg.statistics.total_available_jobs, 1);
    let [
        JobMessage::Available {
            job: info,
            acquire_job_url,
        },
    ] = msg.jobs.as_slice()
    else {
        panic!("expected one JobAvailable, got {:?}", msg.jobs)
    };
    assert_eq!(info.runner_request_id, job);
    assert!(acquire_job_url.contains("acquirejobs"));
    assert_eq!(
        client.acquirable_jobs(ss.id).await.unwrap()[0].runner_request_id,
        job
    );

    client.delete_message(&mut session, msg.message_id).await.unwrap();
    assert_eq!(
        client.acquire_jobs(&mut session, &[job]).await.unwrap(),
        vec![job]
    );
    assert!(client.acquirable_jobs(ss.id).await.unwrap().is_empty());
    let msg2 = client
        .get_message(&mut session, msg.message_id, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(&msg2.jobs[..], [JobMessage::Assigned { job }] if job.runner_request_id == job_id(job)));
    assert_eq!(msg2.statistics.total_assigned_jobs, 1);
    client
        .delete_message(&mut session, msg2.message_id)
        .await
        .unwrap();

    let jit = client
        .generate_jit_config(ss.id, "runner-1", "_work")
        .await
        .unwrap();
    assert_eq!(jit.runner.name, "runner-1");
    assert_eq!(
        client
            .get_runner(jit.runner.id)
            .await
            .unwrap()
            .runner_scale_set_id,
        ss.id
    );
    assert_eq!(
        client.get_runner_by_name("runner-1").await.unwrap().unwrap().id,
        jit.runner.id
    );
    assert!(client.get_runner_by_name("nobody").await.unwrap().is_none());

    let started = fake.runner_start(jit.encoded_jit_config.expose()).unwrap();
    let taken = fake.runner_take_job(started.runner_id).unwrap().unwrap();
    assert_eq!(taken.runner_request_id, job);
    let msg3 = client
        .get_message(&mut session, msg2.message_id, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(&msg3.jobs[..], [JobMessage::Started { runner_name, .. }] if runner_name == "runner-1"));
    assert_eq!(msg3.statistics.total_running_jobs, 1);
    let busy = client.remove_runner(jit.runner.id).await.unwrap_err();
    assert!(matches!(busy, Error::JobStillRunning { .. }), "{busy:?}");
    fake.runner_finish(started.runner_id, "succeeded").unwrap();
    let msg4 = client
        .get_message(&mut session, msg3.message_id, 10)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(&msg4.jobs[..], [JobMessage::Completed { result, .. }] if result == "succeeded"));
    client
        .delete_message(&mut session, msg4.message_id)
        .await
        .unwrap();

    // Removing a runner that is gone is not an error.
    client.remove_runner(jit.runner.id).await.unwrap();
    let idle = client
        .generate_jit_config(ss.id, "runner-2", "_work")
        .await
        .unwrap();
    client.remove_runner(idle.runner.id).await.unwrap();
    assert!(matches!(
        client.get_runner(idle.runner.id).await,
        Err(Error::RunnerNotFound { .. })
    ));

    client.delete_session(&session).await.unwrap();
    client.delete_scale_set(ss.id).await.unwrap();
    assert!(matches!(
        client.get_scale_set(ss.id).await,
        Err(Error::NotFound { .. })
    ));

    // Wire conventions on every recorded call.
    let calls = fake.calls();
    for c in &calls {
        assert!(
            c.header("user-agent").unwrap_or_default().starts_with("rssc/"),
            "{c:?}"
        );
        assert!(
            !c.header("user-agent")
                .unwrap_or_default()
                .contains("actions-runner-controller")
        );
        if c.path.starts_with("/_services/") {
            assert!(
                c.query
                    .as_deref()
                    .unwrap_or_default()
                    .contains("api-version=6.0-preview"),
                "{c:?}"
            );
        }
        if c.path.starts_with("/broker/") {
            assert_eq!(
                c.header("accept"),
                Some("application/json; api-version=6.0-preview")
            );
            assert_eq!(c.header("authorization"), Some("Bearer"));
        }
    }
    let polls: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "GET" && c.path == "/broker/scalesets/message")
        .collect();
    assert!(
        polls
            .iter()
            .all(|c| c.header("x-scalesetmaxcapacity") == Some("10"))
    );
    assert!(
        !polls[0].query.as_deref().unwrap().contains("lastMessageId"),
        "lastMessageId 0 is omitted"
    );
    assert!(polls.iter().any(|c| {
        c.query
            .as_deref()
            .unwrap()
            .contains(&format!("lastMessageId={}", msg.message_id))
    }));
    let acks: Vec<_> = calls
        .iter()
        .filter(|c| c.method == "DELETE" && c.path.starts_with("/broker/"))
        .collect();
    assert_eq!(
        acks[0].path,
        format!("/broker/scalesets/message/{}", msg.message_id)
    );
    assert!(
        acks[0].query.as_deref().unwrap().contains("sessionId="),
        "query kept on ack"
    );
    let reg = calls
        .iter()
        .find(|c| c.path == "/api/v3/actions/runner-registration")
        .unwrap();
    assert_eq!(reg.header("authorization"), Some("RemoteAuth"));

    // Metrics per endpoint and status class.
    assert!(client.metrics().count("get_message", "2xx") >= 5);
    assert_eq!(client.metrics().count("remove_runner", "4xx"), 1);
}

fn job_id(j: &rssc_github::JobInfo) -> i64 {
    j.runner_request_id
}

#[tokio::test]
async fn query_values_are_escaped() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let name = "odd &name=#1+%";
    let ss = make_scale_set(&client, name, &[]).await;
    assert_eq!(ss.name, name);
    assert_eq!(
        client.get_scale_set_by_name(1, name).await.unwrap().unwrap().id,
        ss.id
    );
    assert!(client.get_scale_set_by_name(1, "odd ").await.unwrap().is_none());
    let jit = client.generate_jit_config(ss.id, "r&x=1", "_work").await.unwrap();
    assert_eq!(
        client.get_runner_by_name("r&x=1").await.unwrap().unwrap().id,
        jit.runner.id
    );
    assert!(matches!(
        client.get_runner_group_by_name("a&groupName=Default").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn typed_errors() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;

    let dup = client
        .create_scale_set(&rssc_github::NewScaleSet {
            name: "set".into(),
            runner_group_id: 1,
            labels: vec![],
            disable_update: true,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(dup, Error::UnexpectedStatus { status: 409, .. }),
        "{dup:?}"
    );

    let _s = client.create_session(ss.id, "a").await.unwrap();
    let e = client.create_session(ss.id, "b").await.unwrap_err();
    assert!(matches!(e, Error::SessionConflict { .. }), "{e:?}");
    assert_eq!(e.category(), "session_conflict");

    client.generate_jit_config(ss.id, "dup", "_work").await.unwrap();
    let e = client
        .generate_jit_config(ss.id, "dup", "_work")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RunnerExists { .. }), "{e:?}");
    assert!(matches!(
        client.get_runner(999_999).await,
        Err(Error::RunnerNotFound { .. })
    ));
    assert!(matches!(
        client.get_runner_group_by_name("nope").await,
        Err(Error::NotFound { .. })
    ));
    let e = client.get_scale_set(424_242).await.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { type_name: Some(t), .. } if t == "RunnerScaleSetNotFoundException"),
        "{e:?}"
    );
}

#[tokio::test]
async fn github_app_auth_and_rejections() {
    let fake = start(fast_fake()).await;
    let client = app_client(&fake, APP_KEY, fast_opts());
    client.get_runner_group_by_name("Default").await.unwrap();
    assert_eq!(fake.with_state(|s| s.installation_tokens_issued), 1);

    let wrong = app_client(&fake, WRONG_KEY, fast_opts());
    let e = wrong.get_runner_group_by_name("Default").await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { status: 401, .. }), "{e:?}");
    assert!(!e.to_string().contains("PRIVATE KEY"));

    // Unknown installation for this app → 404 from the fake.
    let config = rssc_github::GitHubConfig::parse_with(&fake.config_url("octo-org"), false).unwrap();
    let creds = rssc_github::Credentials::app(APP_ID, 1, rssc_github::Secret::new(APP_KEY.into())).unwrap();
    let other = rssc_github::ActionsClient::new(config, creds, fast_opts()).unwrap();
    assert!(matches!(
        other.get_runner_group_by_name("Default").await,
        Err(Error::NotFound { .. })
    ));

    // A bad PAT.
    let config = rssc_github::GitHubConfig::parse_with(&fake.config_url("octo-org"), false).unwrap();
    let bad = rssc_github::ActionsClient::new(
        config,
        rssc_github::Credentials::token(rssc_github::Secret::new("ghp_wrong".into())).unwrap(),
        fast_opts(),
    )
    .unwrap();
    let e = bad.get_runner_group_by_name("Default").await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }));
    assert!(!e.to_string().contains("ghp_wrong"));
    assert!(!format!("{e:?}").contains("ghp_wrong"));
}

#[tokio::test]
async fn fake_rejects_expired_and_future_app_jwts() {
    let fake = start(fast_fake()).await;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(APP_KEY.as_bytes()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!(
        "{}/api/v3/app/installations/{INSTALLATION_ID}/access_tokens",
        fake.base_url()
    );
    let mut statuses = Vec::new();
    for (iat, exp) in [
        (now - 60, now + 480),
        (now - 1200, now - 700),
        (now + 300, now + 600),
        (now - 60, now + 3600),
    ] {
        let claims = serde_json::json!({"iat": iat, "exp": exp, "iss": APP_ID});
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap();
        let r = http.post(&url).bearer_auth(jwt).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [201, 401, 401, 401]);
}

#[tokio::test]
async fn fake_requires_api_version_and_auth() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let conn = client.admin_connection().await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = conn.value.url.as_str();
    let no_version = http
        .get(format!("{base}_apis/runtime/runnergroups/?groupName=Default"))
        .bearer_auth(conn.value.token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status().as_u16(), 400);
    let no_auth = http
        .get(format!(
            "{base}_apis/runtime/runnergroups/?groupName=Default&api-version=6.0-preview"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status().as_u16(), 401);
}

#[tokio::test]
async fn message_batches_hold_at_most_50_jobs_and_redeliver_until_acked() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    for _ in 0..60 {
        fake.queue_job(JobSpec::for_labels(["set"]));
    }
    let m1 = client.get_message(&mut session, 0, 100).await.unwrap().unwrap();
    assert_eq!(m1.jobs.len(), 50);
    assert_eq!(m1.statistics.total_available_jobs, 60);
    // Without an ack and lastMessageId, the same message comes again (as after a restart).
    let again = client.get_message(&mut session, 0, 100).await.unwrap().unwrap();
    assert_eq!(again.message_id, m1.message_id);
    client.delete_message(&mut session, m1.message_id).await.unwrap();
    let m2 = client
        .get_message(&mut session, m1.message_id, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m2.jobs.len(), 10);
    let ids: Vec<i64> = m1
        .jobs
        .iter()
        .chain(&m2.jobs)
        .map(|j| j.job().runner_request_id)
        .collect();
    assert_eq!(client.acquire_jobs(&mut session, &ids).await.unwrap().len(), 60);
}

#[tokio::test]
async fn max_capacity_header_limits_assignment() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    let a = fake.queue_job(JobSpec::for_labels(["set"]));
    let b = fake.queue_job(JobSpec::for_labels(["set"]));
    let m = client.get_message(&mut session, 0, 1).await.unwrap().unwrap();
    client.delete_message(&mut session, m.message_id).await.unwrap();
    client.acquire_jobs(&mut session, &[a, b]).await.unwrap();
    let st = fake.statistics(ss.id);
    assert_eq!((st.total_assigned_jobs, st.total_acquired_jobs), (1, 1));
}

#[tokio::test]
async fn unpicked_jobs_are_canceled_and_reoffered() {
    let mut cfg = fast_fake();
    cfg.assign_timeout = Duration::from_millis(100);
    cfg.requeue_delays = [
        Duration::from_millis(10),
        Duration::from_millis(20),
        Duration::from_millis(30),
    ];
    let fake = start(cfg).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    let job = fake.queue_job(JobSpec::for_labels(["set"]));
    let mut last = 0;
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline && !seen.iter().any(|k: &String| k == "Available#2") {
        let Some(m) = client.get_message(&mut session, last, 10).await.unwrap() else {
            continue;
        };
        client.delete_message(&mut session, m.message_id).await.unwrap();
        last = m.message_id;
        let mut avail = seen
            .iter()
            .filter(|k: &&String| k.starts_with("Available"))
            .count();
        for j in &m.jobs {
            match j {
                JobMessage::Available { .. } => {
                    avail += 1;
                    seen.push(format!("Available#{avail}"));
                    client.acquire_jobs(&mut session, &[job]).await.unwrap();
                }
                JobMessage::Assigned { .. } => seen.push("Assigned".into()),
                JobMessage::Completed { result, .. } => seen.push(format!("Completed:{result}")),
                JobMessage::Started { .. } => seen.push("Started".into()),
            }
        }
    }
    assert_eq!(
        seen,
        ["Available#1", "Assigned", "Completed:canceled", "Available#2"]
    );
    assert_eq!(fake.with_state(|s| s.jobs[&job].reoffers), 1);
}

#[tokio::test]
async fn scenario_jobs_run_exactly_once() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let scenario = rssc_sim_github::Scenario {
        arrival: rssc_sim_github::Arrival::Poisson {
            count: 8,
            mean_interval: Duration::from_millis(10),
        },
        duration: rssc_sim_github::JobDuration::Fixed(Duration::from_millis(1)),
        labels: vec!["set".into()],
    };
    let ids = fake.run_scenario(scenario).await.unwrap();
    assert_eq!(ids.len(), 8);
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    let mut last = 0;
    let mut runners = 0;
    let deadline = Instant::now() + WAIT;
    let all_done = |fake: &rssc_sim_github::FakeGitHub| {
        fake.with_state(|s| ids.iter().all(|id| s.jobs[id].state == JobState::Completed))
    };
    while !all_done(&fake) && Instant::now() < deadline {
        let Some(m) = client.get_message(&mut session, last, 100).await.unwrap() else {
            continue;
        };
        client.delete_message(&mut session, m.message_id).await.unwrap();
        last = m.message_id;
        let avail: Vec<i64> = m
            .jobs
            .iter()
            .filter(|j| matches!(j, JobMessage::Available { .. }))
            .map(|j| j.job().runner_request_id)
            .collect();
        if !avail.is_empty() {
            client.acquire_jobs(&mut session, &avail).await.unwrap();
        }
        let st = fake.statistics(ss.id);
        for _ in 0..st.total_assigned_jobs - st.total_running_jobs {
            runners += 1;
            let jit = client
                .generate_jit_config(ss.id, &format!("r{runners}"), "_w")
                .await
                .unwrap();
            let r = fake.runner_start(jit.encoded_jit_config.expose()).unwrap();
            if fake.runner_take_job(r.runner_id).unwrap().is_some() {
                fake.runner_finish(r.runner_id, "succeeded").unwrap();
            } else {
                client.remove_runner(r.runner_id).await.unwrap();
            }
        }
    }
    let done = all_done(&fake);
    assert!(done, "all scenario jobs complete");
    fake.with_state(|s| {
        for id in &ids {
            assert_eq!(s.jobs[id].run_count, 1);
            assert_eq!(s.jobs[id].result.as_deref(), Some("succeeded"));
        }
    });
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    fake.inject(FaultKind::Status(503), 2, Some("/runnerscalesets/"));
    assert_eq!(client.get_scale_set(ss.id).await.unwrap().id, ss.id);
    let statuses: Vec<u16> = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with(&format!("/runnerscalesets/{}", ss.id)))
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(client.metrics().count("get_scale_set", "5xx"), 2);
    assert!(client.metrics().retries().contains(&("get_scale_set", 2)));

    fake.inject(FaultKind::Status(500), 100, Some("/runnerscalesets/"));
    let e = client.get_scale_set(ss.id).await.unwrap_err();
    assert!(matches!(e, Error::Server { status: 500, .. }), "{e:?}");
    assert_eq!(e.category(), "server_error");
    fake.clear_faults();

    // 501 is not retried.
    fake.clear_calls();
    fake.inject(FaultKind::Status(501), 5, Some("/runnerscalesets/"));
    assert!(client.get_scale_set(ss.id).await.is_err());
    assert_eq!(fake.calls().iter().filter(|c| c.status == 501).count(), 1);
    fake.clear_faults();

    // A random 5xx rate is survived by retries.
    fake.set_server_error_rate(0.3);
    for _ in 0..10 {
        client.get_scale_set(ss.id).await.unwrap();
    }
    fake.set_server_error_rate(0.0);
}

#[tokio::test]
async fn rate_limits_honour_retry_after_and_github_headers() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;

    fake.inject(
        FaultKind::RateLimit { retry_after_secs: 1 },
        1,
        Some("/runnerscalesets/"),
    );
    let t = Instant::now();
    client.get_scale_set(ss.id).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        t.elapsed()
    );

    // `x-ratelimit-reset` is in whole Unix seconds, so "in 2 s" is between 1 and 2 s away.
    fake.inject(
        FaultKind::GitHubRateLimit { reset_in_secs: 2 },
        1,
        Some("/runnerscalesets/"),
    );
    let t = Instant::now();
    client.get_scale_set(ss.id).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        t.elapsed()
    );

    // Asked to wait longer than we are willing to: reported, not slept on.
    fake.inject(
        FaultKind::RateLimit {
            retry_after_secs: 3600,
        },
        1,
        Some("/runnerscalesets/"),
    );
    let t = Instant::now();
    let e = client.get_scale_set(ss.id).await.unwrap_err();
    assert!(
        matches!(e, Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3600)),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn truncated_bodies_are_retried() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    fake.queue_job(JobSpec::for_labels(["set"]));
    fake.inject(FaultKind::Truncate, 1, Some("/broker/"));
    fake.inject(FaultKind::Truncate, 1, Some("/runnerscalesets/"));
    let m = client.get_message(&mut session, 0, 10).await.unwrap().unwrap();
    assert_eq!(m.jobs.len(), 1);
    client.get_scale_set(ss.id).await.unwrap();
    assert!(
        client
            .metrics()
            .retries()
            .iter()
            .any(|(e, n)| *e == "get_message" && *n == 1)
    );
    assert!(
        client
            .metrics()
            .retries()
            .iter()
            .any(|(e, n)| *e == "get_scale_set" && *n == 1)
    );
}

#[tokio::test]
async fn latency_and_timeouts() {
    let fake = start(fast_fake()).await;
    let mut opts = fast_opts();
    opts.request_timeout = Duration::from_millis(150);
    opts.retry.max_retries = 1;
    let client = pat_client(&fake, opts);
    client.get_runner_group_by_name("Default").await.unwrap();
    fake.set_latency(Duration::from_millis(50));
    client.get_runner_group_by_name("Default").await.unwrap();
    fake.set_latency(Duration::from_millis(400));
    let e = client.get_runner_group_by_name("Default").await.unwrap_err();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert_eq!(client.metrics().count("get_runner_group", "error"), 2);
    fake.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn long_poll_timeout_exceeds_the_server_window() {
    let mut cfg = fast_fake();
    cfg.long_poll_window = Duration::from_millis(600);
    let fake = start(cfg).await;
    let mut opts = fast_opts();
    opts.request_timeout = Duration::from_millis(200);
    opts.long_poll_timeout = Duration::from_secs(3);
    let client = pat_client(&fake, opts);
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    assert!(client.get_message(&mut session, 0, 1).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_queue_token_mid_poll_refreshes_session_once() {
    let mut cfg = fast_fake();
    cfg.long_poll_window = Duration::from_secs(3);
    let fake = start(cfg).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    let old_token = session.session.message_queue_access_token.clone();
    let poll = {
        let client = client.clone();
        tokio::spawn(async move {
            let r = client.get_message(&mut session, 0, 10).await;
            (r, session)
        })
    };
    // Wait until the poll is parked, then expire the token under it.
    assert!(
        fake.wait_until(WAIT, |s| s.sessions.values().any(|x| x.max_capacity == Some(10)))
            .await
    );
    fake.expire_message_queue_tokens();
    // The refreshed poll then gets a job.
    assert!(
        fake.wait_until(WAIT, |s| s
            .calls
            .iter()
            .any(|c| c.method == "PATCH" && c.path.contains("/sessions/")))
            .await
    );
    let job = fake.queue_job(JobSpec::for_labels(["set"]));
    let (r, mut session) = poll.await.unwrap();
    let m = r.unwrap().unwrap();
    assert_eq!(m.jobs[0].job().runner_request_id, job);
    assert_ne!(session.session.message_queue_access_token, old_token);
    let statuses: Vec<u16> = fake
        .calls()
        .iter()
        .filter(|c| c.path == "/broker/scalesets/message")
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [401, 200]);

    // acquire and ack also refresh on 401.
    fake.expire_message_queue_tokens();
    client.delete_message(&mut session, m.message_id).await.unwrap();
    fake.expire_message_queue_tokens();
    assert_eq!(
        client.acquire_jobs(&mut session, &[job]).await.unwrap(),
        vec![job]
    );
    let patches = fake
        .calls()
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.contains("/sessions/"))
        .count();
    assert_eq!(patches, 3);
}

#[tokio::test]
async fn evicted_session_is_reported_distinctly() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    fake.evict_sessions(Some(ss.id));
    let e = client.get_message(&mut session, 0, 10).await.unwrap_err();
    assert!(matches!(e, Error::SessionNotFound { .. }), "{e:?}");
    assert_eq!(e.category(), "session_not_found");
    // The listener recreates the session and carries on.
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    assert!(client.get_message(&mut session, 0, 10).await.unwrap().is_none());
}

#[tokio::test]
async fn scale_set_deleted_server_side() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    fake.delete_scale_set_server_side(ss.id).unwrap();
    assert!(matches!(
        client.get_scale_set(ss.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        client.get_message(&mut session, 0, 10).await,
        Err(Error::SessionNotFound { .. })
    ));
    assert!(client.get_scale_set_by_name(1, "set").await.unwrap().is_none());
    assert!(matches!(
        client.create_session(ss.id, "me").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn refused_connections_are_retried_until_they_recover() {
    let fake = start(fast_fake()).await;
    let mut opts = fast_opts();
    opts.retry.max_retries = 2;
    let client = pat_client(&fake, opts.clone());
    client.get_runner_group_by_name("Default").await.unwrap();
    fake.set_refuse_connections(true);
    let e = client.get_runner_group_by_name("Default").await.unwrap_err();
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert_eq!(e.category(), "connection");

    opts.retry.max_retries = 50;
    opts.retry.max_delay = Duration::from_millis(20);
    let patient = pat_client(&fake, opts);
    let call = {
        let c = patient.clone();
        tokio::spawn(async move { c.get_runner_group_by_name("Default").await })
    };
    assert!(
        eventually(WAIT, || async {
            patient.metrics().count("registration_token", "error") >= 2
        })
        .await
    );
    fake.set_refuse_connections(false);
    assert_eq!(call.await.unwrap().unwrap().id, 1);
}

#[tokio::test]
async fn admin_token_refresh_single_flight_under_100_callers() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    assert_eq!(fake.with_state(|s| s.registration_tokens_issued), 1);
    fake.expire_admin_tokens();
    // Expired server-side while cached: the client sees 401, drops the token, refreshes once.
    let fresh = app_client(&fake, APP_KEY, fast_opts());
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = if i % 2 == 0 { client.clone() } else { fresh.clone() };
        tasks.push(tokio::spawn(
            async move { c.get_scale_set(ss.id).await.map(|s| s.id) },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), ss.id);
    }
    assert_eq!(
        fresh.admin_refresh_count(),
        1,
        "one refresh for 50 concurrent callers of a new client"
    );
    assert_eq!(
        client.admin_refresh_count(),
        2,
        "one refresh after the 401 for 50 concurrent callers"
    );
    assert_eq!(fake.with_state(|s| s.installation_tokens_issued), 1);
    assert_eq!(fake.with_state(|s| s.admin_tokens_issued), 3);
}

#[tokio::test]
async fn token_near_expiry_is_refreshed_by_exactly_one_of_100_callers() {
    let mut cfg = fast_fake();
    cfg.admin_token_ttl = Duration::from_secs(30);
    let fake = start(cfg).await;
    let mut opts = fast_opts();
    // Anything expiring within a minute is stale, so every fetch is immediately due again.
    opts.token_refresh_margin = Duration::from_secs(60);
    let client = app_client(&fake, APP_KEY, opts);
    let ss = make_scale_set(&client, "set", &[]).await;
    let before = client.admin_refresh_count();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = client.clone();
        tasks.push(tokio::spawn(
            async move { c.admin_connection().await.map(|_| ()) },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        client.admin_refresh_count(),
        before + 1,
        "exactly one refresh for 100 callers"
    );
    let calls = fake.calls();
    let regs = calls
        .iter()
        .filter(|c| c.path.ends_with("/registration-token"))
        .count();
    assert_eq!(regs as u64, before + 1);
    assert_eq!(
        fake.with_state(|s| s.installation_tokens_issued),
        1,
        "installation token cached"
    );
    assert_eq!(client.get_scale_set(ss.id).await.unwrap().id, ss.id);
}

#[tokio::test]
async fn jit_generation_is_concurrent_but_bounded() {
    let fake = start(fast_fake()).await;
    fake.set_latency(Duration::from_millis(40));
    // 100 runners at once: never more than the limit in flight, and no lock serialising them.
    for (limit, expect_min) in [(4usize, 2usize), (32, 8)] {
        let mut opts = fast_opts();
        opts.jit_concurrency = limit;
        let client = pat_client(&fake, opts);
        let ss = make_scale_set(&client, &format!("set-{limit}"), &[]).await;
        fake.clear_calls();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                c.generate_jit_config(ss.id, &format!("r-{limit}-{i}"), "_w")
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let calls: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.path.ends_with("/generatejitconfig"))
            .collect();
        assert_eq!(calls.len(), 100);
        let max = max_overlap(&calls);
        assert!(max <= limit, "limit {limit}: {max} in flight");
        assert!(max >= expect_min, "limit {limit}: only {max} in flight");
    }
}

fn max_overlap(calls: &[rssc_sim_github::CallRecord]) -> usize {
    let mut events: Vec<(std::time::SystemTime, i32)> = Vec::new();
    for c in calls {
        events.push((c.at, 1));
        events.push((c.at + c.elapsed, -1));
    }
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output() {
    let fake = start(fast_fake()).await;
    let client = app_client(&fake, APP_KEY, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let session = client.create_session(ss.id, "me").await.unwrap();
    let jit = client.generate_jit_config(ss.id, "r", "_w").await.unwrap();
    let conn = client.admin_connection().await.unwrap();
    let debug = format!("{session:?} {jit:?} {conn:?} {client:?}");
    assert!(!debug.contains(session.session.message_queue_access_token.expose().as_str()));
    assert!(!debug.contains(jit.encoded_jit_config.expose().as_str()));
    assert!(!debug.contains(conn.value.token.expose().as_str()));
    assert!(!debug.contains("BEGIN RSA"));
}

#[tokio::test]
async fn admin_token_is_refreshed_before_it_expires() {
    let mut cfg = fast_fake();
    cfg.admin_token_ttl = Duration::from_secs(2);
    let fake = start(cfg).await;
    let mut opts = fast_opts();
    opts.token_refresh_margin = Duration::from_millis(500);
    let client = pat_client(&fake, opts);
    // Keep calling; the client must swap tokens on its own, never sending an expired one.
    let refreshed = eventually(WAIT, || async {
        client.get_runner_group_by_name("Default").await.unwrap();
        fake.with_state(|s| s.admin_tokens_issued) >= 2
    })
    .await;
    assert!(refreshed);
    assert!(
        fake.calls().iter().all(|c| c.status != 401),
        "no call was rejected"
    );
}

#[tokio::test]
async fn expired_registration_tokens_are_rejected() {
    let mut cfg = fast_fake();
    cfg.registration_token_ttl = Duration::ZERO;
    let fake = start(cfg).await;
    let client = pat_client(&fake, fast_opts());
    let e = client.get_runner_group_by_name("Default").await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { status: 401, .. }), "{e:?}");
    // The reference client retries the exchange on 401/403 (1 + 4 attempts here), then gives up.
    let exchanges = fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/runner-registration"))
        .count();
    assert_eq!(exchanges, 5);
}

#[tokio::test]
async fn queue_401_is_retried_only_once() {
    let fake = start(fast_fake()).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    fake.inject(FaultKind::Status(401), 2, Some("/broker/"));
    let e = client.get_message(&mut session, 0, 1).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { status: 401, .. }), "{e:?}");
    let broker: Vec<u16> = fake
        .calls()
        .iter()
        .filter(|c| c.path.starts_with("/broker/"))
        .map(|c| c.status)
        .collect();
    assert_eq!(broker, [401, 401]);
    let refreshes = fake
        .calls()
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.contains("/sessions/"))
        .count();
    assert_eq!(refreshes, 1);
}

#[tokio::test]
async fn a_parked_long_poll_blocks_no_other_call() {
    let mut cfg = fast_fake();
    cfg.long_poll_window = Duration::from_secs(5);
    let fake = start(cfg).await;
    let client = pat_client(&fake, fast_opts());
    let ss = make_scale_set(&client, "set", &[]).await;
    let mut session = client.create_session(ss.id, "me").await.unwrap();
    let poll = {
        let client = client.clone();
        tokio::spawn(async move { client.get_message(&mut session, 0, 3).await })
    };
    assert!(
        fake.wait_until(WAIT, |s| s.sessions.values().any(|x| x.max_capacity == Some(3)))
            .await
    );
    let t = Instant::now();
    client.get_scale_set(ss.id).await.unwrap();
    client.generate_jit_config(ss.id, "r", "_w").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "calls waited behind the poll: {:?}",
        t.elapsed()
    );
    assert!(!poll.is_finished());
    fake.queue_job(JobSpec::for_labels(["set"]));
    assert_eq!(poll.await.unwrap().unwrap().unwrap().jobs.len(), 1);
}
