//! The listener's session loop against the fake GitHub over loopback HTTP, with an in-memory
//! record of what it writes to Kubernetes. Runners are simulated the way a node would run
//! them: a JIT configuration per runner, which takes a job and finishes it.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use prometheus_client::registry::Registry;
use rssc_api::v1alpha1::RunnerJob;
use rssc_github::{
    ActionsClient, ClientOptions, Credentials, GitHubConfig, NewScaleSet, Secret, backoff::RetryPolicy,
};
use rssc_listener::{
    cluster::{Cluster, ClusterError, StoredState},
    metrics::{ListenerMetrics, ScaleSetLabels},
    patches::SessionState,
    scaler::{Decision, Limits},
    service::{Listener, Settings, checks},
};
use rssc_runtime::health::Health;
use rssc_sim_github::{FakeConfig, FakeGitHub, FaultKind, JobSpec, JobState, StartedRunner};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
    time::timeout,
};

const PAT: &str = "ghp_listener_test_token";
const SCALE_SET: &str = "linux-x64";
const WAIT: Duration = Duration::from_secs(30);

/// What the listener wrote, as a Kubernetes API server would keep it.
#[derive(Clone, Debug, Default)]
struct Written {
    decisions: Vec<Decision>,
    /// When each decision was written (on the clock the fake GitHub records its calls by).
    decided_at: Vec<SystemTime>,
    session: SessionState,
    busy_runners: BTreeSet<String>,
    finished_runners: BTreeSet<String>,
}

/// An in-memory EphemeralRunnerSet and its runners' job marks.
#[derive(Clone)]
struct MemoryCluster {
    written: Arc<Mutex<Written>>,
    changes: watch::Sender<Written>,
}

impl MemoryCluster {
    fn new() -> Self {
        Self {
            written: Arc::default(),
            changes: watch::channel(Written::default()).0,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Written)) {
        let mut written = self.written.lock().unwrap();
        f(&mut written);
        self.changes.send_replace(written.clone());
    }

    fn snapshot(&self) -> Written {
        self.written.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&Written) -> bool) -> Written {
        let mut rx = self.changes.subscribe();
        let found = timeout(WAIT, rx.wait_for(|w| pred(w))).await;
        match found {
            Ok(Ok(w)) => w.clone(),
            _ => panic!(
                "timed out waiting for {what}; last written: {:?}",
                self.snapshot()
            ),
        }
    }

    fn last_replicas(&self) -> Option<i32> {
        self.snapshot().decisions.last().map(|d| d.replicas)
    }
}

impl Cluster for MemoryCluster {
    async fn read_state(&self) -> Result<StoredState, ClusterError> {
        let w = self.snapshot();
        Ok(StoredState {
            last_sequence: w.decisions.last().map_or(0, |d| d.sequence),
            replicas: w.decisions.last().map_or(0, |d| d.replicas),
            beyond_max: w.decisions.last().map_or(0, |d| d.beyond_max),
            job_ends: w.decisions.last().map_or(0, |d| d.job_ends),
            job_ends_through: w.decisions.last().and_then(|d| d.job_ends_through),
            session: w.session,
        })
    }

    async fn write_decision(&self, decision: Decision, _traceparents: &[String]) -> Result<(), ClusterError> {
        self.update(|w| {
            w.decisions.push(decision);
            w.decided_at.push(SystemTime::now());
        });
        Ok(())
    }

    async fn write_decision_after(&self, decision: Decision, previous: i64) -> Result<bool, ClusterError> {
        let mut applied = false;
        self.update(|w| {
            if w.decisions.last().map_or(0, |d| d.sequence) == previous {
                w.decisions.push(decision);
                w.decided_at.push(SystemTime::now());
                applied = true;
            }
        });
        Ok(applied)
    }

    async fn write_session_state(&self, state: &SessionState) -> Result<(), ClusterError> {
        self.update(|w| w.session = state.clone());
        Ok(())
    }

    async fn record_job_completed(
        &self,
        runner_name: &str,
        _result: &str,
        _finished_at: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    ) -> Result<(), ClusterError> {
        let name = runner_name.to_owned();
        self.update(|w| {
            w.finished_runners.insert(name);
        });
        Ok(())
    }

    async fn record_job_started(&self, runner_name: &str, job: &RunnerJob) -> Result<(), ClusterError> {
        let name = runner_name.to_owned();
        self.update(|w| {
            // A job that ended within the same message is recorded with its end.
            if job.result.is_some() {
                w.finished_runners.insert(name.clone());
            }
            w.busy_runners.insert(name);
        });
        Ok(())
    }
}

struct Harness {
    fake: Arc<FakeGitHub>,
    client: ActionsClient,
    scale_set_id: i64,
    cluster: MemoryCluster,
    limits: watch::Sender<Limits>,
}

fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        long_poll_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_server_delay: Duration::from_secs(2),
        },
        ..ClientOptions::default()
    }
}

async fn harness(limits: Limits) -> Harness {
    let fake = FakeGitHub::start(FakeConfig {
        long_poll_window: Duration::from_millis(200),
        tick: Duration::from_millis(5),
        assign_timeout: Duration::from_secs(20),
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_pat(PAT);
    let config = GitHubConfig::parse_with(&fake.config_url("octo-org"), false).unwrap();
    let client = ActionsClient::new(
        config,
        Credentials::token(Secret::new(PAT.into())).unwrap(),
        options(),
    )
    .unwrap();
    let set = client
        .create_scale_set(&NewScaleSet {
            name: SCALE_SET.into(),
            runner_group_id: 1,
            labels: vec![],
            disable_update: true,
        })
        .await
        .unwrap();
    Harness {
        fake: Arc::new(fake),
        client,
        scale_set_id: set.id,
        cluster: MemoryCluster::new(),
        limits: watch::channel(limits).0,
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    health: Health,
    /// The listener's metrics.
    registry: Registry,
}

impl Harness {
    fn start_listener(&self) -> Running {
        self.start_listener_with(|_| {})
    }

    /// Starts a listener with the test settings, changed by `adjust`.
    fn start_listener_with(&self, adjust: impl FnOnce(&mut Settings)) -> Running {
        let health = Health::default();
        let mut settings = Settings::new(self.scale_set_id, "ci/linux-x64");
        settings.heartbeat = Duration::from_millis(500);
        settings.retry.base_delay = Duration::from_millis(20);
        settings.retry.max_delay = Duration::from_millis(200);
        adjust(&mut settings);
        let labels = ScaleSetLabels::new(
            SCALE_SET,
            "ci",
            &rssc_github::Scope::Organization("octo-org".into()),
        );
        let mut registry = Registry::default();
        let metrics = ListenerMetrics::register(&mut registry, labels, self.client.clone());
        let listener = Listener {
            client: self.client.clone(),
            cluster: self.cluster.clone(),
            settings,
            limits: self.limits.subscribe(),
            metrics,
            health: health.clone(),
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(listener.run(async move {
            let _ = stopped.await;
        }));
        Running {
            stop,
            task,
            health,
            registry,
        }
    }

    fn queue(&self, n: usize) -> Vec<i64> {
        (0..n)
            .map(|_| self.fake.queue_job(JobSpec::for_labels([SCALE_SET])))
            .collect()
    }

    /// Keeps as many runners as the listener last asked for, like a node would: each gets a
    /// JIT configuration, takes a job when one is assigned, and finishes it.
    fn run_runners(&self) -> (JoinHandle<()>, oneshot::Sender<()>) {
        let (fake, client, cluster, id) = (
            self.fake.clone(),
            self.client.clone(),
            self.cluster.clone(),
            self.scale_set_id,
        );
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Runners finish their job at once, so every live runner is idle between ticks.
            let mut idle: Vec<StartedRunner> = Vec::new();
            let mut next = 0;
            loop {
                let want = usize::try_from(cluster.last_replicas().unwrap_or(0)).unwrap_or(0);
                while idle.len() < want {
                    next += 1;
                    let jit = client
                        .generate_jit_config(id, &format!("runner-{next}"), "_work")
                        .await
                        .unwrap();
                    idle.push(fake.runner_start(jit.encoded_jit_config.expose()).unwrap());
                }
                let mut still_idle = Vec::new();
                for runner in idle.drain(..) {
                    match fake.runner_take_job(runner.runner_id).unwrap() {
                        Some(_) => {
                            fake.runner_finish(runner.runner_id, "succeeded").unwrap();
                        }
                        None => still_idle.push(runner),
                    }
                }
                idle = still_idle;
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        });
        (task, stop)
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        timeout(WAIT, self.task)
            .await
            .expect("the listener stops promptly on shutdown")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_jobs_never_asks_for_more_than_max_and_all_run_once() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 50,
    })
    .await;
    let listener = h.start_listener();
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    let jobs = h.queue(200);
    let (runners, stop_runners) = h.run_runners();
    let all_done = h
        .fake
        .wait_until(Duration::from_secs(60), |s| {
            jobs.iter().all(|id| s.jobs[id].state == JobState::Completed)
        })
        .await;
    assert!(all_done, "all 200 jobs complete");
    // Statistics are current in every message while job messages queue up to 50 per message,
    // so the last JobStarted records may arrive after the decision to scale to zero.
    let written = h
        .cluster
        .wait_for(
            "scale back to zero with every job recorded and counted once",
            |w| {
                w.decisions
                    .last()
                    .is_some_and(|d| d.replicas == 0 && d.job_ends == 200)
                    && w.busy_runners.len() == 200
                    && w.finished_runners.len() == 200
            },
        )
        .await;
    let _ = stop_runners.send(());
    runners.await.unwrap();

    assert!(
        written.decisions.iter().all(|d| d.replicas <= 50),
        "never more than maxRunners"
    );
    assert!(
        written.decisions.iter().any(|d| d.replicas == 50),
        "used the full capacity"
    );
    let sequences: Vec<i64> = written.decisions.iter().map(|d| d.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "each decision has the next sequence"
    );
    assert!(
        written
            .decisions
            .windows(2)
            .all(|w| w[1].job_ends >= w[0].job_ends),
        "the sum of job ends never goes back"
    );

    h.fake.with_state(|s| {
        for id in &jobs {
            assert_eq!(s.jobs[id].run_count, 1, "job {id} ran exactly once");
        }
    });
    listener.stop().await;
    assert!(
        h.cluster.snapshot().session.last_message_id.is_some(),
        "the cursor is kept, at the latest on shutdown"
    );
}

/// The long polls the fake GitHub saw, in order of arrival: when each came and its status.
fn polls(h: &Harness) -> Vec<(std::time::SystemTime, u16)> {
    h.fake
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.ends_with("/message"))
        .map(|c| (c.at, c.status))
        .collect()
}

/// When the jobs' acquisitions arrived at the fake GitHub, in order.
fn acquisitions(h: &Harness) -> Vec<SystemTime> {
    h.fake
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/acquirejobs"))
        .map(|c| c.at)
        .collect()
}

/// A message's decision is written before the jobs it offers are acquired: the decision
/// follows the statistics alone, and the jobs offered count only once GitHub reports them
/// assigned, so it need not wait for GitHub to answer the acquisition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_does_not_wait_for_the_acquisition_of_its_messages_offers() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 10,
    })
    .await;
    // Every answer takes this long, as GitHub's do, so the second offers below arrive while
    // the first are being acquired. The first three wait before the listener starts, so its
    // first message offers all of them.
    h.fake.set_latency(Duration::from_millis(300));
    h.queue(3);
    let listener = h.start_listener();
    eventually("the first offers delivered", || {
        polls(&h).iter().any(|(_, status)| *status == 200)
    })
    .await;
    // The next message reports the first three assigned and offers these.
    h.queue(3);
    eventually("the second offers acquired", || acquisitions(&h).len() >= 2).await;
    let written = h
        .cluster
        .wait_for("a decision for the three assigned", |w| {
            w.decisions.iter().any(|d| d.replicas >= 3)
        })
        .await;
    let first = written
        .decisions
        .iter()
        .position(|d| d.replicas >= 3)
        .expect("waited for above");
    let second_acquisition = acquisitions(&h)[1];
    assert!(
        written.decided_at[first] < second_acquisition,
        "the decision for the assigned jobs waited for the next offers' acquisition ({:?} after it)",
        written.decided_at[first]
            .duration_since(second_acquisition)
            .unwrap_or_default()
    );
    h.fake.set_latency(Duration::ZERO);
    listener.stop().await;
}

/// While the listener is behind the messages, the first jobs of a burst end while later ones
/// are assigned, and the statistics can stay level through both. Every decision must still
/// count, with the job ends it reports, every job GitHub had assigned when the decision before
/// it was written (its statistics came after that): the controller holds a runner back for each
/// runner that finished a job the decisions have not counted as ended, so a decision that left
/// such jobs out made no runners for the jobs assigned meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_messages_every_decision_counts_the_jobs_assigned_before_it() {
    const IDLE: usize = 100;
    const JOBS: usize = 300;
    let h = harness(Limits {
        min_runners: IDLE as i32,
        max_runners: 1000,
    })
    .await;
    let listener = h.start_listener_with(no_pace);
    let (runners, stop_runners) = h.run_runners();
    eventually("the idle runners up", || {
        h.fake.with_state(|s| s.runners.len()) >= IDLE
    })
    .await;
    // The jobs are offered 50 a message; idle runners take and end the first ones at once,
    // while the later ones are still being offered and assigned, and those ends come in
    // messages behind all the offers. Answers a little late, as GitHub's are.
    h.fake.set_latency(Duration::from_millis(10));
    let jobs = h.queue(JOBS);
    let written = h
        .cluster
        .wait_for("every job's end counted", |w| {
            w.decisions
                .last()
                .is_some_and(|d| usize::try_from(d.job_ends).unwrap() >= JOBS)
        })
        .await;
    let _ = stop_runners.send(());
    runners.await.unwrap();
    h.fake.set_latency(Duration::ZERO);
    let assigned_at: Vec<SystemTime> = h.fake.with_state(|s| {
        jobs.iter()
            .filter_map(|id| s.jobs.get(id).and_then(|j| j.scale_set_assign_time()))
            .collect()
    });
    assert_eq!(assigned_at.len(), JOBS, "every job was assigned");
    for k in 1..written.decisions.len() {
        let decision = written.decisions[k];
        let assigned = assigned_at
            .iter()
            .filter(|at| **at <= written.decided_at[k - 1])
            .count();
        let jobs_counted = usize::try_from(decision.replicas).unwrap() - IDLE;
        let ends = usize::try_from(decision.job_ends).unwrap();
        assert!(
            jobs_counted + ends >= assigned,
            "decision {} counts {jobs_counted} jobs and {ends} ends, but {assigned} jobs had \
             been assigned before the decision ahead of it: {:?}",
            decision.sequence,
            written.decisions
        );
    }
    listener.stop().await;
}

/// After a message that only reports jobs starting and ending, the next poll waits to gather
/// more of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_message_of_starts_and_ends_the_next_poll_waits_to_gather_more() {
    let gather = Duration::from_millis(1500);
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 5,
    })
    .await;
    let listener = h.start_listener_with(|s| s.progress_gather = gather);
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    h.queue(1);
    let (runners, stop_runners) = h.run_runners();
    h.cluster
        .wait_for("the job's end recorded", |w| w.finished_runners.len() == 1)
        .await;
    // The job's start and end were the last events, so the last message delivered carried
    // progress only; the poll after it must wait.
    let last_message = || polls(&h).iter().rposition(|(_, status)| *status == 200);
    let delivered = last_message().expect("a message was delivered");
    eventually("the poll after the last message", || {
        polls(&h).len() > delivered + 1
    })
    .await;
    let _ = stop_runners.send(());
    runners.await.unwrap();
    let seen = polls(&h);
    let gap = seen[delivered + 1]
        .0
        .duration_since(seen[delivered].0)
        .unwrap_or_default();
    // Less a margin for the request's way from the listener to the fake.
    assert!(
        gap >= gather - Duration::from_millis(300),
        "the next poll came {gap:?} after the message of progress"
    );
    assert_eq!(last_message(), Some(delivered), "no message came meanwhile");
    listener.stop().await;
}

/// Jobs offered or assigned are fetched without waiting, however long the wait after progress
/// is, and a listener waiting to poll stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_is_fetched_at_once_and_shutdown_ends_the_wait_to_gather() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 5,
    })
    .await;
    // Longer than any wait below: a wait after demand would time them out.
    let listener = h.start_listener_with(|s| s.progress_gather = Duration::from_secs(600));
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    h.queue(2);
    let (runners, stop_runners) = h.run_runners();
    // The job offered, acquired, assigned (a decision for it) and started on a runner: each
    // step needs the message after the one before.
    h.cluster
        .wait_for("a runner recorded with its job", |w| {
            w.decisions.iter().any(|d| d.replicas >= 1) && !w.busy_runners.is_empty()
        })
        .await;
    let _ = stop_runners.send(());
    runners.await.unwrap();
    // `stop` fails the test unless the listener returns within WAIT.
    listener.stop().await;
}

/// As jobs end one by one, the decisions that only lower the count while nothing waits are
/// merged: each follows the last write by at least the pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_that_only_lower_the_count_follow_the_pace() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 40,
    })
    .await;
    let listener = h.start_listener();
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    let jobs = h.queue(40);
    let (runners, stop_runners) = h.run_runners();
    let written = h
        .cluster
        .wait_for("every job counted and back to zero", |w| {
            w.decisions
                .last()
                .is_some_and(|d| d.replicas == 0 && d.job_ends == 40)
        })
        .await;
    let _ = stop_runners.send(());
    runners.await.unwrap();
    listener.stop().await;
    assert!(
        h.fake
            .with_state(|s| jobs.iter().all(|id| s.jobs[id].state == JobState::Completed)),
        "every job ran"
    );

    let pace = Settings::new(h.scale_set_id, "-").decision_pace;
    let mut paced = 0;
    for (i, pair) in written.decisions.windows(2).enumerate() {
        let (before, after) = (pair[0], pair[1]);
        let ends = after.job_ends - before.job_ends;
        let can_wait = i64::from(after.replicas) <= i64::from(before.replicas) - ends
            && before.beyond_max == 0
            && after.beyond_max == 0;
        if can_wait {
            paced += 1;
            let gap = written.decided_at[i + 1]
                .duration_since(written.decided_at[i])
                .unwrap_or_default();
            assert!(
                gap >= pace,
                "decision {} followed {} after {gap:?}: {:?}",
                after.sequence,
                before.sequence,
                written.decisions
            );
        }
    }
    assert!(
        paced > 0,
        "some decisions only lowered the count: {:?}",
        written.decisions
    );
}

/// A listener that stops while a decision waits for the pace writes it first: the job ends it
/// counted would go with it otherwise (their messages are acknowledged), and the controller
/// would hold a runner back for each until it gave up on their ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_listener_writes_the_job_ends_the_pace_held_back() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 5,
    })
    .await;
    let listener = h.start_listener_with(|s| s.decision_pace = Duration::from_secs(600));
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    let jobs = h.queue(1);
    let (runners, stop_runners) = h.run_runners();
    h.cluster
        .wait_for("the job's end recorded on its runner", |w| {
            !w.finished_runners.is_empty()
        })
        .await;
    let _ = stop_runners.send(());
    runners.await.unwrap();
    assert_eq!(
        h.cluster.snapshot().decisions.last().map(|d| d.job_ends),
        Some(0),
        "the decision counting the end waits for the pace"
    );

    listener.stop().await;
    let last = *h.cluster.snapshot().decisions.last().unwrap();
    assert_eq!(
        (last.replicas, last.job_ends),
        (0, 1),
        "written before the listener stopped"
    );
    assert!(
        h.fake
            .with_state(|s| s.jobs[&jobs[0]].state == JobState::Completed)
    );
}

/// GitHub delivers a message again until it is acknowledged, and the listener acknowledges
/// after writing its decision. A message whose acknowledgement failed, or whose listener died
/// before acknowledging it, comes again: its job ends are in `jobEnds` already and must not be
/// counted twice (the controller would take a second end for a runner that never finished).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_again_does_not_count_its_job_ends_twice() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 5,
    })
    .await;
    // Every decision is written before its message is acknowledged.
    let first = h.start_listener_with(no_pace);
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    h.queue(1);
    h.cluster
        .wait_for("a runner for the job", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 1)
        })
        .await;
    let jit = h
        .client
        .generate_jit_config(h.scale_set_id, "runner-1", "_work")
        .await
        .unwrap();
    let runner = h.fake.runner_start(jit.encoded_jit_config.expose()).unwrap();
    eventually("the runner takes the job", || {
        h.fake.runner_take_job(runner.runner_id).unwrap().is_some()
    })
    .await;
    h.cluster
        .wait_for("the job's start recorded", |w| {
            w.busy_runners.contains("runner-1")
        })
        .await;
    eventually("every message so far acknowledged", || {
        !h.fake
            .with_state(|s| s.scale_sets[&h.scale_set_id].messages_pending())
    })
    .await;

    // Every acknowledgement fails from now on (the client retries each a few times).
    let acks = "/scalesets/message/";
    h.fake.inject(FaultKind::Status(500), u32::MAX, Some(acks));
    h.fake.runner_finish(runner.runner_id, "succeeded").unwrap();
    let counted = h
        .cluster
        .wait_for("the decision counting the job's end", |w| {
            w.decisions.last().is_some_and(|d| d.job_ends > 0)
        })
        .await;
    let through = counted.decisions.last().unwrap().job_ends_through.unwrap();
    assert_eq!(through.scale_set_id, h.scale_set_id);
    let ack_path = format!("{acks}{}", through.message_id);
    let failed_acks = || {
        h.fake
            .calls()
            .iter()
            .filter(|c| c.method == "DELETE" && c.path.ends_with(&ack_path) && c.status == 500)
            .count()
    };
    // Each delivery is acknowledged (and retried) at least twice.
    eventually("the message delivered three times", || failed_acks() >= 6).await;
    let again = h.cluster.snapshot();
    assert_eq!(
        again.decisions.iter().map(|d| d.job_ends).max(),
        Some(1),
        "the listener that counted it: {:?}",
        again.decisions
    );
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &first.registry).unwrap();
    let completed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("gha_completed_jobs_total{"))
        .collect();
    assert!(
        completed.len() == 1 && completed[0].ends_with(" 1"),
        "the job counted once in the metrics: {completed:?}"
    );

    // The listener dies before any acknowledgement goes through; the next one gets the
    // message and counts its end only if the stored count does not hold it.
    first.task.abort();
    let _ = first.task.await;
    h.fake.clear_faults();
    let decisions_before = h.cluster.snapshot().decisions.len();
    let second = h.start_listener_with(no_pace);
    eventually("the message acknowledged after the restart", || {
        h.fake
            .calls()
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with(&ack_path) && c.status == 204)
    })
    .await;
    second.stop().await;
    let after = h.cluster.snapshot();
    let restarted = &after.decisions[decisions_before..];
    assert!(!restarted.is_empty(), "the restarted listener decided");
    assert!(
        restarted
            .iter()
            .all(|d| d.job_ends == 1 && d.job_ends_through == Some(through)),
        "the restarted listener: {restarted:?}"
    );
}

/// Decisions are written at once, so none is merged into a later one.
fn no_pace(settings: &mut Settings) {
    settings.decision_pace = Duration::ZERO;
}

/// Starts a listener (no pace) for a scale set of at most 60 runners, queues 60 jobs, waits
/// for the decision that asks for them, and starts a runner for each with every message so
/// far acknowledged; returns the runners' IDs.
async fn sixty_jobs_assigned_and_sixty_runners_up() -> (Harness, Running, Vec<i64>) {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 60,
    })
    .await;
    let listener = h.start_listener_with(no_pace);
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    h.queue(60);
    h.cluster
        .wait_for("a runner for every job", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 60)
        })
        .await;
    let mut runners = Vec::new();
    for i in 0..60 {
        let jit = h
            .client
            .generate_jit_config(h.scale_set_id, &format!("runner-{i}"), "_work")
            .await
            .unwrap();
        runners.push(
            h.fake
                .runner_start(jit.encoded_jit_config.expose())
                .unwrap()
                .runner_id,
        );
    }
    eventually("every message so far acknowledged", || {
        !h.fake
            .with_state(|s| s.scale_sets[&h.scale_set_id].messages_pending())
    })
    .await;
    (h, listener, runners)
}

/// 60 starts, then 30 ends, all at once: the next message holds 50 starts, and its statistics
/// already leave out the 30 jobs that ended.
fn sixty_start_and_thirty_end_at_once(h: &Harness, runners: &[i64]) {
    h.fake.with_state(|s| {
        for id in runners {
            assert!(
                s.runner_take_job(*id).unwrap().is_some(),
                "a job for every runner"
            );
        }
        for id in &runners[..30] {
            s.runner_finish(*id, "succeeded").unwrap();
        }
    });
}

/// Waits for the decision that counts the 30 ends and checks that none before it, from the
/// first that asked for 60 runners on, dropped jobs whose ends it had not counted.
async fn no_decision_dropped_unread_ends(h: &Harness) {
    let written = h
        .cluster
        .wait_for("the decision counting the 30 ends", |w| {
            w.decisions.last().is_some_and(|d| d.job_ends == 30)
        })
        .await;
    assert_eq!(written.decisions.last().unwrap().replicas, 30);
    let at_60 = written.decisions.iter().position(|d| d.replicas == 60).unwrap();
    for d in &written.decisions[at_60..] {
        assert!(
            i64::from(d.replicas) + d.job_ends >= 60,
            "decision {} dropped jobs whose ends were not read: {:?}",
            d.sequence,
            written.decisions
        );
    }
}

/// GitHub's statistics are current, but a message holds at most 50 events: while more wait, a
/// message can count fewer assigned jobs than before without the ends of the jobs it dropped.
/// A decision written from those statistics alone reaches the controller before the ends that
/// explain it, and the controller takes it for fewer jobs: it scales down idle runners that
/// the remaining jobs are about to take. So the count comes down only by the ends read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_behind_the_messages_lowers_the_count_only_by_the_job_ends_it_read() {
    let (h, listener, runners) = sixty_jobs_assigned_and_sixty_runners_up().await;
    sixty_start_and_thirty_end_at_once(&h, &runners);
    no_decision_dropped_unread_ends(&h).await;
    listener.stop().await;
}

/// The same after a restart: the messages a stopped listener had not read wait for the next
/// one, whose session's statistics already leave out the jobs that ended meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_listener_lowers_the_count_only_by_the_job_ends_it_read() {
    let (h, first, runners) = sixty_jobs_assigned_and_sixty_runners_up().await;
    first.stop().await;
    sixty_start_and_thirty_end_at_once(&h, &runners);
    assert_eq!(h.fake.statistics(h.scale_set_id).total_assigned_jobs, 30);

    let second = h.start_listener_with(no_pace);
    no_decision_dropped_unread_ends(&h).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_runners_are_idle_headroom_and_limit_changes_apply_live() {
    let h = harness(Limits {
        min_runners: 2,
        max_runners: 10,
    })
    .await;
    let listener = h.start_listener();
    h.cluster
        .wait_for("min runners", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 2)
        })
        .await;
    h.queue(3);
    h.cluster
        .wait_for("min + assigned", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 5)
        })
        .await;
    h.limits.send_replace(Limits {
        min_runners: 4,
        max_runners: 10,
    });
    h.cluster
        .wait_for("new min without a restart", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 7)
        })
        .await;
    h.limits.send_replace(Limits {
        min_runners: 4,
        max_runners: 6,
    });
    h.cluster
        .wait_for("new max", |w| w.decisions.last().is_some_and(|d| d.replicas == 6))
        .await;
    assert_eq!(
        h.fake.with_state(|s| s.sessions.len()),
        1,
        "one session throughout"
    );
    let capacities: Vec<String> = h
        .fake
        .calls()
        .iter()
        .filter(|c| c.path.contains("/broker/"))
        .filter_map(|c| {
            c.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-scalesetmaxcapacity"))
        })
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(
        capacities.first().map(String::as_str),
        Some("10"),
        "polls announce maxRunners"
    );
    eventually("polls announce the new maxRunners", || {
        h.fake
            .calls()
            .iter()
            .rev()
            .filter(|c| c.path.contains("/broker/"))
            .any(|c| {
                c.headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("x-scalesetmaxcapacity") && v == "6")
            })
    })
    .await;
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_every_fault_the_fake_injects() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 100,
    })
    .await;
    let listener = h.start_listener();
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    let mut queued = 0;
    let mut expect_more = |h: &Harness, n: usize| {
        h.queue(n);
        queued += n;
        queued as i32
    };

    h.fake.inject(FaultKind::Status(503), 3, Some("/broker/"));
    let want = expect_more(&h, 1);
    h.cluster
        .wait_for("after 503s", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == want)
        })
        .await;

    h.fake
        .inject(FaultKind::RateLimit { retry_after_secs: 1 }, 1, Some("/broker/"));
    let want = expect_more(&h, 1);
    h.cluster
        .wait_for("after a 429", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == want)
        })
        .await;

    h.fake.inject(FaultKind::Truncate, 2, Some("/broker/"));
    let want = expect_more(&h, 1);
    h.cluster
        .wait_for("after truncated bodies", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == want)
        })
        .await;

    h.fake.expire_message_queue_tokens();
    let want = expect_more(&h, 1);
    h.cluster
        .wait_for("after token expiry mid-poll", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == want)
        })
        .await;

    let restarts = h.cluster.snapshot().session.session_restarts;
    h.fake.evict_sessions(Some(h.scale_set_id));
    h.fake.expire_message_queue_tokens();
    let want = expect_more(&h, 1);
    let w = h
        .cluster
        .wait_for("a new session after eviction", |w| {
            w.session.session_restarts > restarts && w.decisions.last().is_some_and(|d| d.replicas == want)
        })
        .await;
    assert!(w.session.ready);

    let connection_errors = || -> u64 {
        h.client
            .metrics()
            .snapshot()
            .iter()
            .filter(|r| r.status_class == "error")
            .map(|r| r.stats.requests)
            .sum()
    };
    let before = connection_errors();
    h.fake.set_refuse_connections(true);
    let want = expect_more(&h, 1);
    eventually("requests failing while connections are refused", || {
        connection_errors() > before + 2
    })
    .await;
    h.fake.set_refuse_connections(false);
    h.cluster
        .wait_for("after refused connections", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == want)
        })
        .await;

    h.fake.set_server_error_rate(0.3);
    let want = expect_more(&h, 2);
    h.cluster
        .wait_for("under a 30% error rate", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == want)
        })
        .await;
    h.fake.set_server_error_rate(0.0);

    assert!(
        listener.health.readiness().ready,
        "{}",
        listener.health.readiness().report
    );
    listener.stop().await;
    assert!(
        h.fake.with_state(|s| s.sessions.is_empty()),
        "the session is closed on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_burst_neither_loses_nor_replays_decisions() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 30,
    })
    .await;
    let first = h.start_listener();
    h.cluster
        .wait_for("the first decision", |w| !w.decisions.is_empty())
        .await;
    h.queue(20);
    h.cluster
        .wait_for("scale up", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 20)
        })
        .await;
    first.stop().await;
    let before = h.cluster.snapshot();
    assert!(
        before.session.session_id.is_none(),
        "a clean shutdown closes the session"
    );
    assert!(before.session.last_message_id.is_some());

    h.queue(5);
    let second = h.start_listener();
    let after = h
        .cluster
        .wait_for("the restarted listener's view", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 25)
        })
        .await;
    let new: Vec<_> = after.decisions[before.decisions.len()..].to_vec();
    assert!(!new.is_empty());
    assert_eq!(
        new[0].sequence,
        before.decisions.last().unwrap().sequence + 1,
        "sequence continues after a restart"
    );
    assert!(
        new.iter().all(|d| d.replicas >= 20),
        "no decision from an older state is replayed: {new:?}"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_left_by_a_crashed_listener_is_closed_instead_of_looping_on_409() {
    let h = harness(Limits {
        min_runners: 1,
        max_runners: 5,
    })
    .await;
    // A predecessor opened a session, recorded it, and died without closing it.
    let stale = h
        .client
        .create_session(h.scale_set_id, "ci/linux-x64")
        .await
        .unwrap();
    h.cluster
        .update(|w| w.session.session_id = Some(stale.session_id().to_owned()));
    let listener = h.start_listener();
    h.cluster
        .wait_for("a decision from a fresh session", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 1)
        })
        .await;
    let sessions: Vec<String> = h.fake.with_state(|s| s.sessions.keys().cloned().collect());
    assert_eq!(sessions.len(), 1);
    assert_ne!(sessions[0], stale.session_id());
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_conflicting_session_is_retried_and_reported_until_released() {
    let h = harness(Limits {
        min_runners: 1,
        max_runners: 5,
    })
    .await;
    let other = h
        .client
        .create_session(h.scale_set_id, "another-cluster")
        .await
        .unwrap();
    let listener = h.start_listener();
    let health = listener.health.clone();
    eventually("readiness explains the conflict", || {
        let r = health.readiness();
        !r.ready && r.report.contains("another message session holds this scale set")
    })
    .await;
    assert!(h.cluster.snapshot().decisions.is_empty());

    h.client.delete_session(&other).await.unwrap();
    h.cluster
        .wait_for("the session once released", |w| {
            w.decisions.last().is_some_and(|d| d.replicas == 1)
        })
        .await;
    assert!(health.readiness().report.contains("session: ok"));
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_session_and_returns() {
    let h = harness(Limits {
        min_runners: 0,
        max_runners: 5,
    })
    .await;
    let listener = h.start_listener();
    h.cluster.wait_for("a session", |w| w.session.ready).await;
    listener.stop().await;
    assert!(h.fake.with_state(|s| s.sessions.is_empty()));
    let w = h.cluster.snapshot();
    assert!(!w.session.ready && w.session.session_id.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_scale_set_is_reported_and_retried() {
    let h = harness(Limits {
        min_runners: 1,
        max_runners: 5,
    })
    .await;
    let listener = h.start_listener();
    h.cluster.wait_for("a session", |w| w.session.ready).await;
    h.fake.delete_scale_set_server_side(h.scale_set_id).unwrap();
    h.fake.expire_message_queue_tokens();
    let health = listener.health.clone();
    eventually("readiness reports the missing scale set", || {
        health
            .readiness()
            .report
            .contains(&format!("{}: scale set", checks::SESSION))
    })
    .await;
    assert!(!listener.task.is_finished(), "the listener keeps running");
    listener.stop().await;
}

/// Waits until `cond` holds, checking every few milliseconds, for at most [`WAIT`].
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let waited = timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}
