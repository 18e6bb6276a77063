//! The EphemeralRunnerSet and EphemeralRunner controllers against the Kubernetes API (test
//! server or `RSSC_E2E_KUBECONFIG`) and the fake GitHub: decisions become registered runners
//! with JIT Secrets and Pods; finished runners go; scale-down asks GitHub first and keeps a
//! runner with a job; a new template replaces idle and pending runners while busy ones finish.

mod support;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use rssc_api::{
    consts::labels,
    v1alpha1::{EphemeralRunner, EphemeralRunnerSet},
};
use rssc_controller::context::{Context, Settings};
use rssc_sim_github::JobSpec;
use support::{Controllers, PAT, Reconciler, Target, eventually, github, github_options};

async fn runners(t: &Target) -> Vec<EphemeralRunner> {
    t.api::<EphemeralRunner>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

async fn decide(t: &Target, replicas: i32, sequence: i64) {
    decide_spec(
        t,
        serde_json::json!({"replicas": replicas, "patchSequence": sequence}),
    )
    .await;
}

/// Writes a listener decision: the fields of `spec` given.
async fn decide_spec(t: &Target, spec: serde_json::Value) {
    let patch = serde_json::json!({ "spec": spec });
    t.api::<EphemeralRunnerSet>()
        .patch("ci", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

async fn observed(t: &Target) -> i64 {
    let set = t.api::<EphemeralRunnerSet>().get("ci").await.unwrap();
    set.status.map_or(0, |s| s.observed_patch_sequence)
}

/// Makes a runner's Pod report the runner exited with `code`, as a kubelet would.
async fn exit(t: &Target, pod: &str, code: i32) {
    let status = serde_json::json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{"name": "runner", "image": "runner", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}}]
    }});
    t.api::<Pod>()
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_become_runners_and_scale_down_keeps_busy_ones() {
    let t = Target::new("runners").await;
    let (fake, ca) = github().await;
    let settings = Settings {
        pending_grace: Duration::ZERO,
        ..support::settings()
    };
    let ctx = Arc::new(Context::new(t.client.clone(), settings));
    let controllers = Controllers::start(
        &ctx,
        &[
            Reconciler::AutoscaleSets,
            Reconciler::EphemeralRunnerSets,
            Reconciler::EphemeralRunners,
        ],
    );
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    let scale_set_id = asss.status.as_ref().unwrap().scale_set_id.unwrap();
    support::create_runner_set(&t, &asss, 0).await;

    // A decision for two runners: two registered runners, each with its JIT Secret and Pod.
    decide(&t, 2, 1).await;
    eventually("two registered runners with Pods", || async {
        let rs = runners(&t).await;
        let mut ready = 0;
        for r in &rs {
            let registered = support::registered_id(&t, &r.name_any()).await.is_some();
            let has_pod = t.api::<Pod>().get_opt(&r.name_any()).await.unwrap().is_some();
            if registered && has_pod {
                ready += 1;
            }
        }
        rs.len() == 2 && ready == 2
    })
    .await;
    let all = runners(&t).await;
    for r in &all {
        let name = r.name_any();
        assert!(name.starts_with("ci-runner-") && name.len() <= 63, "{name}");
        let secret = t.api::<Secret>().get(&name).await.unwrap();
        assert!(secret.data.unwrap().contains_key("jitToken"));
        let pod = t.api::<Pod>().get(&name).await.unwrap();
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let jit = env
            .iter()
            .find(|e| e.name == "ACTIONS_RUNNER_INPUT_JITCONFIG")
            .unwrap();
        assert!(jit.value.is_none(), "the JIT configuration is only referenced");
        assert_eq!(
            jit.value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            name
        );
        assert_eq!(pod.metadata.labels.unwrap()[labels::RUNNER_NAME], name);
    }
    assert_eq!(
        fake.with_state(|s| s.runners.len()),
        2,
        "both registered with GitHub"
    );
    eventually("the decision is recorded as acted on", || async {
        observed(&t).await == 1
    })
    .await;

    // Both runners start; a listener acquires two jobs, which GitHub assigns to them.
    let listener = rssc_github::ActionsClient::new(
        rssc_github::GitHubConfig::parse(&asss.spec.github_config_url).unwrap(),
        rssc_github::Credentials::token(rssc_github::Secret::new(PAT.into())).unwrap(),
        rssc_github::ClientOptions {
            root_ca_pem: vec![ca.clone()],
            ..github_options()
        },
    )
    .unwrap();
    let mut ids = Vec::new();
    for r in &all {
        let name = r.name_any();
        let jit = String::from_utf8(
            t.api::<Secret>().get(&name).await.unwrap().data.unwrap()["jitToken"]
                .0
                .clone(),
        )
        .unwrap();
        let started = fake.runner_start(&jit).unwrap();
        assert_eq!(Some(started.runner_id), support::registered_id(&t, &name).await);
        ids.push((name, started.runner_id));
        fake.queue_job(JobSpec::for_labels(["linux"]));
    }
    let mut session = listener.create_session(scale_set_id, "test").await.unwrap();
    let mut offered = Vec::new();
    while offered.len() < 2 {
        let message = listener.get_message(&mut session, 0, 5).await.unwrap();
        if let Some(message) = message {
            offered.extend(
                message
                    .jobs
                    .iter()
                    .filter(|j| matches!(j, rssc_github::JobMessage::Available { .. }))
                    .map(|j| j.job().runner_request_id),
            );
            listener
                .delete_message(&mut session, message.message_id)
                .await
                .unwrap();
        }
    }
    listener.acquire_jobs(&mut session, &offered).await.unwrap();
    for (_, runner_id) in &ids {
        tokio::time::timeout(support::WAIT, async {
            while fake.runner_take_job(*runner_id).unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("each runner takes a job");
    }

    // The first finishes its job and exits: it goes, and the same decision does not bring it back.
    let (first, first_id) = ids[0].clone();
    fake.runner_finish(first_id, "succeeded").unwrap();
    exit(&t, &first, 0).await;
    eventually("the finished runner is deleted", || async {
        t.api::<EphemeralRunner>()
            .get_opt(&first)
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert_eq!(
        runners(&t).await.len(),
        1,
        "no replacement without a new decision"
    );
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with(&format!("/agents/{first_id}"))),
        "a runner that exited 0 deregistered itself: removing it asks GitHub nothing"
    );

    // A new decision from statistics the listener fetched before the runner finished still
    // counts its job (the listener has counted no job end yet): it does not bring it back...
    decide_spec(
        &t,
        serde_json::json!({"replicas": 2, "patchSequence": 2, "jobEnds": 0}),
    )
    .await;
    eventually("the new decision is acted on", || async {
        observed(&t).await == 2
    })
    .await;
    assert_eq!(
        runners(&t).await.len(),
        1,
        "no runner for a job that already ended"
    );
    // ...unless jobs wait beyond the maximum: then it is replaced for one of them.
    decide_spec(
        &t,
        serde_json::json!({"replicas": 2, "beyondMax": 1, "patchSequence": 3, "jobEnds": 0}),
    )
    .await;
    eventually("a runner for the job waiting beyond the maximum", || async {
        runners(&t).await.len() == 2 && observed(&t).await == 3
    })
    .await;

    // The other still has its job: scale-down asks GitHub, which refuses, and the runner stays.
    let (busy, busy_id) = ids[1].clone();
    // The listener would record the job on the runner; here the controller relies on GitHub's refusal.
    decide(&t, 0, 4).await;
    // Scale-down asked GitHub to remove it and was refused...
    eventually("GitHub refused to remove the busy runner", || async {
        fake.calls().iter().any(|c| {
            c.method == "DELETE" && c.path.ends_with(&format!("/agents/{busy_id}")) && c.status == 400
        })
    })
    .await;
    // ...so the runner stays, and the decision waits to be carried out.
    assert!(
        t.api::<EphemeralRunner>().get_opt(&busy).await.unwrap().is_some(),
        "the busy runner was kept"
    );
    assert_eq!(observed(&t).await, 3, "a decision is done only when carried out");

    // Its job ends; the runner exits and goes, and GitHub has no runner left.
    fake.runner_finish(busy_id, "succeeded").unwrap();
    exit(&t, &busy, 0).await;
    eventually("no runner left", || async { runners(&t).await.is_empty() }).await;
    eventually("the decision to scale to zero is carried out", || async {
        observed(&t).await == 4
    })
    .await;
    assert!(
        fake.with_state(|s| s.runners.is_empty()),
        "no registration left on GitHub"
    );

    controllers.stop().await;
}

fn template_hash(runner: &EphemeralRunner) -> String {
    runner
        .labels()
        .get(labels::POD_SPEC_HASH)
        .cloned()
        .unwrap_or_default()
}

/// A RunnerSet being deleted asks for no runners under the sequence after the listener's last,
/// and the listener, still stopping, may write its own last decision under that same sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_written_again_with_another_count_is_a_new_decision() {
    let t = Target::new("rewritten-sequence").await;
    let (fake, ca) = github().await;
    let settings = Settings {
        pending_grace: Duration::ZERO,
        ..support::settings()
    };
    let ctx = Arc::new(Context::new(t.client.clone(), settings));
    let _controllers = Controllers::start(
        &ctx,
        &[
            Reconciler::AutoscaleSets,
            Reconciler::EphemeralRunnerSets,
            Reconciler::EphemeralRunners,
        ],
    );
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    support::create_runner_set(&t, &asss, 0).await;

    decide(&t, 2, 4).await;
    eventually("two runners for decision 4", || async {
        runners(&t).await.len() == 2 && observed(&t).await == 4
    })
    .await;
    decide(&t, 0, 4).await;
    eventually("decision 4 asking for none removes both", || async {
        runners(&t).await.is_empty()
    })
    .await;
    decide(&t, 1, 4).await;
    eventually("and asking for one again makes one", || async {
        runners(&t).await.len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_template_replaces_idle_and_pending_runners_while_busy_ones_finish_their_job() {
    let t = Target::new("rollout").await;
    let support::RunnerSetup {
        fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, support::settings()).await;
    let set = support::runner_set_for(&t, &asss, 0);
    let old_hash = set.spec.runner_template.metadata.as_ref().unwrap().labels[labels::POD_SPEC_HASH].clone();
    t.api::<EphemeralRunnerSet>()
        .create(&PostParams::default(), &set)
        .await
        .unwrap();

    // A burst: four runners on the old template; one of them takes a job.
    decide(&t, 4, 1).await;
    eventually("four registered runners with Pods", || async {
        let rs = runners(&t).await;
        let mut with_pods = 0;
        for r in &rs {
            if t.api::<Pod>().get_opt(&r.name_any()).await.unwrap().is_some() {
                with_pods += 1;
            }
        }
        rs.len() == 4 && with_pods == 4
    })
    .await;
    let busy = runners(&t).await[0].name_any();
    // As the listener records a job GitHub assigned to the runner.
    let job = serde_json::json!({"status": {"job": {"requestId": 7, "jobId": "job-7", "repository": "octo-org/app"}}});
    t.api::<EphemeralRunner>()
        .patch_status(&busy, &PatchParams::default(), &Patch::Merge(job))
        .await
        .unwrap();

    // The template changes (as when an AutoscaleSet's runner image changes) with a new decision.
    let mut new_template = set.spec.runner_template.clone();
    let metadata = new_template.metadata.as_mut().unwrap();
    metadata
        .labels
        .insert(labels::POD_SPEC_HASH.to_owned(), "rolled-out".to_owned());
    let patch =
        serde_json::json!({"spec": {"runnerTemplate": new_template, "replicas": 4, "patchSequence": 2}});
    t.api::<EphemeralRunnerSet>()
        .patch("ci", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();

    eventually(
        "the idle and pending runners are replaced by new-template ones",
        || async {
            let rs: Vec<_> = runners(&t)
                .await
                .into_iter()
                .filter(|r| r.metadata.deletion_timestamp.is_none())
                .collect();
            let new = rs.iter().filter(|r| template_hash(r) == "rolled-out").count();
            let old: Vec<_> = rs.iter().filter(|r| template_hash(r) == old_hash).collect();
            new == 3 && old.len() == 1 && old[0].name_any() == busy
        },
    )
    .await;
    eventually("GitHub holds only the busy runner and the new ones", || async {
        fake.with_state(|s| s.runners.len()) == 4
    })
    .await;
    let kept = t.api::<EphemeralRunner>().get(&busy).await.unwrap();
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "the busy runner keeps running its job on the old template"
    );
    for r in runners(&t)
        .await
        .iter()
        .filter(|r| template_hash(r) == "rolled-out")
    {
        let pod = t.api::<Pod>().get_opt(&r.name_any()).await.unwrap();
        if let Some(pod) = pod {
            assert_eq!(
                pod.labels().get(labels::POD_SPEC_HASH).map(String::as_str),
                Some("rolled-out"),
                "new runners' Pods use the new template"
            );
        }
    }

    // Its job ends and it exits: it goes, and is not replaced on the old template.
    exit(&t, &busy, 0).await;
    eventually("only new-template runners remain", || async {
        let rs = runners(&t).await;
        !rs.is_empty() && rs.iter().all(|r| template_hash(r) == "rolled-out")
    })
    .await;

    controllers.stop().await;
}

/// Below `maxRunners`, a job that comes while another's runner is being torn down gets its
/// runner at once: the finishing runner's Pod only holds a place at the maximum, or while the
/// decision still counts its job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_below_the_maximum_does_not_wait_for_a_finishing_runner() {
    let t = Target::new("finishing").await;
    let support::RunnerSetup {
        fake: _fake,
        controllers,
        asss,
        ..
    } = support::runner_setup(&t, support::settings()).await;
    let set = support::create_runner_set(&t, &asss, 0).await;
    assert!(
        set.spec.max_runners.is_some_and(|max| max > 1),
        "the set records the AutoscaleSet's maxRunners"
    );

    decide(&t, 1, 1).await;
    eventually("a runner with a Pod", || async {
        let rs = runners(&t).await;
        rs.len() == 1 && t.api::<Pod>().get_opt(&rs[0].name_any()).await.unwrap().is_some()
    })
    .await;
    let first = runners(&t).await[0].name_any();
    // As the listener records the runner's job and then its end; the runner's Pod still runs.
    let ended =
        serde_json::json!({"status": {"job": {"requestId": 7, "jobId": "job-7", "result": "succeeded"}}});
    t.api::<EphemeralRunner>()
        .patch_status(&first, &PatchParams::default(), &Patch::Merge(ended))
        .await
        .unwrap();

    // The listener's next decision counts the end and a new job.
    decide_spec(
        &t,
        serde_json::json!({"replicas": 1, "patchSequence": 2, "jobEnds": 1}),
    )
    .await;
    eventually("a runner for the new job beside the finishing one", || async {
        let rs = runners(&t).await;
        rs.len() == 2 && observed(&t).await == 2
    })
    .await;
    let finishing = t.api::<EphemeralRunner>().get(&first).await.unwrap();
    assert!(
        finishing.metadata.deletion_timestamp.is_none(),
        "the finishing runner was still there"
    );

    controllers.stop().await;
}

/// A runner the set made in this process is registered and recorded `Running` without a read
/// of its JIT Secret: nobody can have written that Secret before its first reconcile, and the
/// registration it holds is the one this process made. Those were two reads per runner, a
/// quarter of the controller's requests in a burst. Runners a controller did not make (after a
/// restart, or created directly as the tests in `runner_failures.rs` do) still have it read.
/// The answers to the runner creates are held back, so the watch brings each runner to its
/// reconcile before the set has noted it, as it sometimes does unprompted. The runners' Pods
/// running come by the controller's watch of Pods, which reads them lean, without a new list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_made_here_are_registered_and_run_without_reading_their_secrets_or_listing_pods_again() {
    let t = Target::new("fresh-runners").await;
    let (fake, ca) = github().await;
    let proxy = rssc_test_support::fault_proxy::FaultProxy::in_front_of(&t.kubeconfig)
        .await
        .unwrap();
    proxy.faults().delay_answers(
        "create",
        "ephemeralrunners",
        std::time::Duration::from_millis(300),
    );
    let ctx = Arc::new(Context::new(proxy.client(&t.namespace), support::settings()));
    let controllers = Controllers::start(
        &ctx,
        &[
            Reconciler::AutoscaleSets,
            Reconciler::EphemeralRunnerSets,
            Reconciler::EphemeralRunners,
        ],
    );
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    support::create_runner_set(&t, &asss, 0).await;
    decide(&t, 2, 1).await;
    eventually("two runners with Pods", || async {
        let rs = runners(&t).await;
        let mut with_pods = 0;
        for r in &rs {
            if t.api::<Pod>().get_opt(&r.name_any()).await.unwrap().is_some() {
                with_pods += 1;
            }
        }
        rs.len() == 2 && with_pods == 2
    })
    .await;
    let names: Vec<String> = runners(&t).await.iter().map(ResourceExt::name_any).collect();
    let pod_lists = || {
        let requests = proxy.faults().requests();
        requests
            .iter()
            .filter(|r| r.verb == "list" && r.resource == "pods")
            .count()
    };
    let pod_lists_before = pod_lists();
    for name in &names {
        support::pod_runs(&t, name).await;
    }
    let recorded = || async {
        let mut ids = Vec::new();
        for r in runners(&t).await {
            let status = r.status.unwrap_or_default();
            if status.phase == Some(rssc_api::v1alpha1::EphemeralRunnerPhase::Running) {
                ids.extend(status.runner_id);
            }
        }
        ids
    };
    eventually(
        "both runners recorded Running with their registration",
        || async { recorded().await.len() == 2 },
    )
    .await;
    let mut ids = recorded().await;
    ids.sort_unstable();
    let mut registered: Vec<i64> = fake.with_state(|s| s.runners.keys().copied().collect());
    registered.sort_unstable();
    assert_eq!(ids, registered, "the registrations made are the ones recorded");
    let secret_reads: Vec<_> = proxy
        .faults()
        .requests()
        .into_iter()
        .filter(|r| r.verb == "get" && r.resource == "secrets" && names.contains(&r.name))
        .collect();
    assert!(
        secret_reads.is_empty(),
        "no runner's Secret was read: {secret_reads:?}"
    );
    // A watch event the controller cannot follow (one without a resource version) ends the
    // watch, and the watcher lists every Pod again.
    assert_eq!(
        pod_lists(),
        pod_lists_before,
        "the Pods' changes came by their watch"
    );
    controllers.stop().await;
}

/// A Kubernetes 1.30 API server answers `AlreadyExists` when the name it generated for a new
/// runner is taken (it does not try another, as later ones do). The set sends the create
/// again at once: the runner comes with the same reconcile, which counts no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_runner_name_already_taken_is_generated_again() {
    let t = Target::new("name-taken").await;
    let (fake, ca) = github().await;
    let proxy = rssc_test_support::fault_proxy::FaultProxy::in_front_of(&t.kubeconfig)
        .await
        .unwrap();
    let ctx = Arc::new(Context::new(proxy.client(&t.namespace), support::settings()));
    let _controllers = Controllers::start(
        &ctx,
        &[Reconciler::AutoscaleSets, Reconciler::EphemeralRunnerSets],
    );
    let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
    support::create_runner_set(&t, &asss, 0).await;

    proxy.faults().refuse_generated_name("ephemeralrunners", 2);
    decide(&t, 3, 1).await;
    eventually("three runners for the decision", || async {
        runners(&t).await.len() == 3 && observed(&t).await == 1
    })
    .await;
    let creates = proxy.faults().codes("create", "ephemeralrunners");
    assert_eq!(
        (creates.iter().filter(|c| **c == 409).count(), creates.len()),
        (2, 5),
        "two names taken, each tried again: {creates:?}"
    );
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &ctx.registry).unwrap();
    let errors =
        r#"rssc_controller_reconcile_errors_total{kind="EphemeralRunnerSet",category="kubernetes"} 0"#;
    assert!(metrics.contains(errors), "{metrics}");
}

/// The AutoscaleSet and EphemeralRunnerSet reconcilers behind a fault proxy whose runner
/// watches come 3 s late (well within the patience after which a set stops trusting its cache
/// and lists), with the `ci` set at no runners.
struct LaggingCache {
    t: Target,
    proxy: rssc_test_support::fault_proxy::FaultProxy,
    ctx: Arc<Context>,
    /// The set's key in the controller's expectations.
    key: String,
    _controllers: Controllers,
    _fake: Arc<rssc_sim_github::FakeGitHub>,
}

impl LaggingCache {
    async fn start(test: &str, settings: Settings) -> Self {
        let t = Target::new(test).await;
        let (fake, ca) = github().await;
        let proxy = rssc_test_support::fault_proxy::FaultProxy::in_front_of(&t.kubeconfig)
            .await
            .unwrap();
        proxy
            .faults()
            .delay_watch_events("ephemeralrunners", Duration::from_secs(3));
        let ctx = Arc::new(Context::new(proxy.client(&t.namespace), settings));
        let controllers = Controllers::start(
            &ctx,
            &[Reconciler::AutoscaleSets, Reconciler::EphemeralRunnerSets],
        );
        let asss = support::registered_autoscale_set(&t, &fake, &ca).await;
        support::create_runner_set(&t, &asss, 0).await;
        let key = rssc_controller::fresh_runners::set_key(&t.namespace, "ci");
        Self {
            t,
            proxy,
            ctx,
            key,
            _controllers: controllers,
            _fake: fake,
        }
    }

    fn creates(&self) -> usize {
        self.proxy.faults().codes("create", "ephemeralrunners").len()
    }

    /// Decides on two runners and waits until they are made and the cache shows neither.
    async fn two_runners_not_cached_yet(&self) {
        decide(&self.t, 2, 1).await;
        eventually("two runners made, and the cache shows neither yet", || async {
            self.creates() == 2 && self.ctx.runner_expectations.unmet(&self.key) == 2
        })
        .await;
    }
}

/// The set reads its runners from a cache, which a watch fills a moment after each write. A
/// runner the set has just made counts before the cache shows it: with the cache seconds
/// behind, a second decision right after the first makes only the runner it adds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_behind_the_sets_own_creates_makes_no_runner_twice() {
    let lag = LaggingCache::start("cache-behind", support::settings()).await;
    let t = &lag.t;
    lag.two_runners_not_cached_yet().await;
    decide(t, 3, 2).await;
    eventually("the second decision carried out", || async {
        observed(t).await == 2
    })
    .await;
    assert_eq!(runners(t).await.len(), 3, "each runner made once");

    // Once the cache shows them, the reconciles their events bring make none either.
    eventually("the cache shows every runner made", || async {
        lag.ctx.runner_expectations.unmet(&lag.key) == 0
    })
    .await;
    assert_eq!((runners(t).await.len(), lag.creates()), (3, 3));
}

/// The cache may not show yet the job records the listener wrote just before a decision, and
/// a set that took such runners for live ones would remove runners the jobs still need. So a
/// plan read from the cache that removes live runners is made again from a list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_is_planned_from_the_runners_as_stored() {
    // Pending runners may go at once.
    let settings = Settings {
        pending_grace: Duration::ZERO,
        ..support::settings()
    };
    let lag = LaggingCache::start("scale-down-listed", settings).await;
    let t = &lag.t;
    let lists = || {
        let counts = lag.proxy.faults().counts();
        counts
            .get(&("list".to_owned(), "ephemeralrunners".to_owned()))
            .copied()
            .unwrap_or(0)
    };
    lag.two_runners_not_cached_yet().await;
    let listed_before = lists();
    decide(t, 0, 2).await;
    // Held by their finalizers: no runner reconciler runs here to release them.
    eventually("both runners being deleted", || async {
        runners(t)
            .await
            .iter()
            .all(|r| r.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(
        lists() > listed_before,
        "the scale-down read the runners from the API server"
    );
}
