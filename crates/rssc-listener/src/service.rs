//! The listener's loop: open a message session, long-poll, act on each message, write
//! decisions, and survive everything GitHub and the network do to it.
//!
//! For each message: acquire the jobs offered, record jobs that runners started (the busy mark
//! that protects them from scale-down), decide and write the replica count, then acknowledge
//! the message and write the cursor. Acknowledging last means a crash before the ack replays
//! the message, so nothing is lost. Every step is idempotent: the writes are, and the job-end
//! count goes with the last message it counts, so a message delivered again (after a failed
//! ack, or to the next listener after a crash) is not counted twice.
//!
//! Errors never end the process: transient ones back off and retry; an evicted session is
//! created again; a session held by someone else (usually a predecessor that died) backs off
//! with jitter while `/readyz` says why; a deleted scale set is retried until the controller
//! registers it again (and restarts the listener with the new ID).

use std::{future::Future, time::Duration};

use futures::{StreamExt, stream};

use rssc_api::v1alpha1::MessageMark;
use rssc_github::{
    ActionsClient, Error as GitHubError, MessageSession, ScaleSetMessage, Statistics, backoff::RetryPolicy,
};
use rssc_runtime::health::Health;
use tokio::{sync::watch, time::Instant};
use tracing::{debug, error, info, warn};

use crate::{
    assigned::AssignedJobs,
    cluster::Cluster,
    handler::{Handled, handle, only_progress},
    job_records::{self, RunnerRecord},
    metrics::ListenerMetrics,
    patches::SessionState,
    scaler::{Decider, Limits, beyond_max, desired_runners, jobs_counted_by},
    traces::JobTraces,
};

/// Health check names on `/readyz`.
pub mod checks {
    /// The message session is open.
    pub const SESSION: &str = "session";
    /// A long poll completed recently.
    pub const POLL: &str = "poll";
    /// The Kubernetes API answers.
    pub const KUBERNETES: &str = "kubernetes";
}

/// How the loop behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// ID of the scale set on GitHub.
    pub scale_set_id: i64,
    /// Owner name of the message session.
    pub session_owner: String,
    /// Decisions are written again after this long even if unchanged.
    pub heartbeat: Duration,
    /// Decisions that only lower the count or report job ends while no job waits follow the
    /// last write by at least this long (see [`crate::scaler`]).
    pub decision_pace: Duration,
    /// After a message that only reported jobs starting or ending, the next poll begins at
    /// least this long after the previous one did, so that GitHub's next message gathers more
    /// events (see [`crate::handler::only_progress`]); zero polls again at once.
    pub progress_gather: Duration,
    /// `/readyz` fails when no poll completed for this long.
    pub poll_stale_after: Duration,
    /// Backoff between failed attempts (GitHub, Kubernetes, session conflicts).
    pub retry: RetryPolicy,
    /// Time allowed for closing the session on shutdown.
    pub shutdown_timeout: Duration,
}

impl Settings {
    /// Defaults for scale set `scale_set_id`.
    pub fn new(scale_set_id: i64, session_owner: impl Into<String>) -> Self {
        Self {
            scale_set_id,
            session_owner: session_owner.into(),
            heartbeat: Duration::from_secs(50),
            decision_pace: Duration::from_secs(1),
            // In a burst GitHub answers each poll with whatever few events came meanwhile:
            // about one message per job, and an acknowledgement each. Starts and ends need no
            // haste (decisions that only count down follow the pace anyway); a quarter second
            // made the 1,000-job benchmark's messages several times fuller.
            progress_gather: Duration::from_millis(250),
            // The server answers within ~50 s even when idle.
            poll_stale_after: Duration::from_secs(150),
            retry: RetryPolicy {
                max_retries: u32::MAX,
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
                max_server_delay: Duration::from_secs(300),
            },
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// One scale set's listener.
pub struct Listener<C> {
    /// GitHub.
    pub client: ActionsClient,
    /// Kubernetes.
    pub cluster: C,
    /// Behaviour.
    pub settings: Settings,
    /// The limits in force, updated live.
    pub limits: watch::Receiver<Limits>,
    /// Metrics.
    pub metrics: ListenerMetrics,
    /// Readiness checks.
    pub health: Health,
}

/// Whether a decision that can wait follows the pace.
#[derive(Clone, Copy)]
enum Pace {
    Keep,
    /// The listener stops: write the decision held back, unless another was written meanwhile.
    Skip,
}

/// What ended a wait.
enum Event<T> {
    Shutdown,
    LimitsChanged,
    /// A decision held back for the pace is due.
    DecisionDue,
    Done(T),
}

/// The loop's memory between messages.
struct State {
    session: SessionState,
    decider: Decider,
    statistics: Option<Statistics>,
    /// The assigned jobs to decide on (the statistics' count, less only the job ends read).
    assigned: AssignedJobs,
    sessions_created: u64,
    state_written: Option<Instant>,
    traces: JobTraces,
    /// The last message this process handled: one delivered again (its ack failed) does not
    /// count its jobs in the metrics and traces again.
    handled_through: Option<i64>,
}

impl<C: Cluster> Listener<C> {
    /// Runs until `shutdown` completes, then closes the session and returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let Some(stored) = self.read_stored_state(&mut shutdown).await else {
            return;
        };
        // A predecessor's unread messages may hold the ends of jobs the statistics have
        // dropped already: start from the jobs its last decision counted.
        let assigned = if stored.last_sequence > 0 {
            let limits = *self.limits.borrow();
            AssignedJobs::resumed(jobs_counted_by(limits, stored.replicas, stored.beyond_max))
        } else {
            AssignedJobs::default()
        };
        let mut state = State {
            decider: Decider::new(
                self.settings.heartbeat,
                self.settings.decision_pace,
                stored.last_sequence,
                stored.job_ends,
            )
            .counted_through(stored.job_ends_through),
            session: stored.session,
            statistics: None,
            assigned,
            sessions_created: 0,
            state_written: None,
            traces: JobTraces::default(),
            handled_through: None,
        };
        self.close_left_over_session(&mut state.session).await;

        let client = self.client.clone();
        let mut failures = 0u32;
        'session: loop {
            let create = client.create_session(self.settings.scale_set_id, &self.settings.session_owner);
            let mut session = match wait(&mut shutdown, &mut self.limits, None, create).await {
                Event::Shutdown => break 'session,
                Event::LimitsChanged | Event::DecisionDue => continue 'session,
                Event::Done(Ok(session)) => session,
                Event::Done(Err(err)) => {
                    self.session_failed(&err);
                    if matches!(err, GitHubError::NotFound { .. }) {
                        self.report_not_ready(&mut state).await;
                    }
                    if self.pause(&mut shutdown, &mut failures).await {
                        break 'session;
                    }
                    continue 'session;
                }
            };
            failures = 0;
            self.session_opened(&session, &mut state).await;

            // When the next poll may begin: later than now only after a message of progress.
            let mut poll_not_before = Instant::now();
            loop {
                let last = state.session.last_message_id.unwrap_or(0);
                let capacity = u32::try_from(self.limits.borrow().max_runners.max(0)).unwrap_or(0);
                let started = poll_not_before.max(Instant::now());
                let event = {
                    // A held-back decision is written while the poll (or the wait before it)
                    // goes on, and shutdown and limit changes end either.
                    let poll = async {
                        tokio::time::sleep_until(started).await;
                        client.get_message(&mut session, last, capacity).await
                    };
                    tokio::pin!(poll);
                    loop {
                        let due = state.decider.held_until().map(Instant::from_std);
                        match wait(&mut shutdown, &mut self.limits, due, poll.as_mut()).await {
                            Event::DecisionDue => self.decide(&mut state, "paced").await,
                            other => break other,
                        }
                    }
                };
                if matches!(event, Event::Done(_)) {
                    self.metrics
                        .poll_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                match event {
                    Event::Shutdown => {
                        self.write_decision(&mut state, "stopping", Pace::Skip).await;
                        self.close_session(&session, &mut state).await;
                        break 'session;
                    }
                    // Written while the poll went on.
                    Event::DecisionDue => {}
                    Event::LimitsChanged => {
                        info!(limits = ?*self.limits.borrow(), "limits changed");
                        self.decide(&mut state, "limits changed").await;
                    }
                    Event::Done(Ok(None)) => {
                        self.metrics.polls.inc();
                        self.health
                            .heartbeat(checks::POLL, self.settings.poll_stale_after);
                        failures = 0;
                        state.session.last_successful_poll = Some(now());
                        state.assigned.caught_up();
                        self.decide(&mut state, "heartbeat").await;
                        let due = state
                            .state_written
                            .is_none_or(|at| at.elapsed() >= self.settings.heartbeat);
                        if due {
                            self.write_session_state(&mut state).await;
                        }
                    }
                    Event::Done(Ok(Some(message))) => {
                        self.metrics.polls.inc();
                        self.health
                            .heartbeat(checks::POLL, self.settings.poll_stale_after);
                        failures = 0;
                        if self.process(&mut session, message, &mut state).await {
                            poll_not_before = started + self.settings.progress_gather;
                        }
                    }
                    Event::Done(Err(
                        err @ (GitHubError::SessionNotFound { .. } | GitHubError::Unauthorized { .. }),
                    )) => {
                        warn!(error = %err, category = err.category(), "message session lost; creating a new one");
                        state.session.ready = false;
                        continue 'session;
                    }
                    Event::Done(Err(err @ GitHubError::NotFound { .. })) => {
                        self.scale_set_missing(&err);
                        self.report_not_ready(&mut state).await;
                        if self.pause(&mut shutdown, &mut failures).await {
                            break 'session;
                        }
                        continue 'session;
                    }
                    Event::Done(Err(err)) => {
                        warn!(error = %err, category = err.category(), "long poll failed; retrying");
                        if self.pause(&mut shutdown, &mut failures).await {
                            self.close_session(&session, &mut state).await;
                            break 'session;
                        }
                    }
                }
            }
        }
        // Stopping without a session (lost, or never opened): job ends counted meanwhile
        // are written all the same.
        self.write_decision(&mut state, "stopping", Pace::Skip).await;
        info!("listener stopped");
    }

    /// Sleeps the backoff for the next failure; true if shutdown came first.
    async fn pause(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        failures: &mut u32,
    ) -> bool {
        let delay = self.settings.retry.backoff(*failures, rand::random::<f64>());
        *failures = failures.saturating_add(1);
        debug!(delay_ms = delay.as_millis() as u64, "backing off");
        tokio::select! {
            biased;
            () = shutdown.as_mut() => true,
            () = tokio::time::sleep(delay) => false,
        }
    }

    async fn read_stored_state(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<crate::cluster::StoredState> {
        let mut failures = 0;
        loop {
            match self.cluster.read_state().await {
                Ok(stored) => {
                    self.health.set(checks::KUBERNETES, Ok(()));
                    return Some(stored);
                }
                Err(err) => {
                    warn!(error = %err, category = err.category(), "cannot read the EphemeralRunnerSet; retrying");
                    self.health.set(checks::KUBERNETES, Err(err.to_string()));
                    if self.pause(shutdown, &mut failures).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Closes a session a previous listener recorded but did not close (it crashed, or its
    /// node went away), so ours does not wait out a conflict.
    async fn close_left_over_session(&self, session: &mut SessionState) {
        let Some(old) = session.session_id.take() else {
            return;
        };
        match self
            .client
            .delete_session_by_id(self.settings.scale_set_id, &old)
            .await
        {
            Ok(()) => info!(session_id = %old, "closed the message session a previous listener left open"),
            Err(GitHubError::NotFound { .. }) => {
                debug!(session_id = %old, "the previous session is already gone")
            }
            Err(err) => warn!(error = %err, session_id = %old, "could not close the previous session"),
        }
    }

    fn session_failed(&self, err: &GitHubError) {
        match err {
            GitHubError::SessionConflict { .. } => {
                self.metrics.session_conflicts.inc();
                warn!(error = %err, scale_set_id = self.settings.scale_set_id,
                    "another message session holds this scale set (a listener that did not shut down cleanly, or another cluster using the same scale set name and runner group); retrying");
                self.health.set(
                    checks::SESSION,
                    Err("another message session holds this scale set; retrying until it is released".into()),
                );
            }
            GitHubError::NotFound { .. } => self.scale_set_missing(err),
            _ => {
                warn!(error = %err, category = err.category(), "cannot create the message session; retrying");
                self.health.set(
                    checks::SESSION,
                    Err(format!("cannot create the message session: {}", err.category())),
                );
            }
        }
    }

    fn scale_set_missing(&self, err: &GitHubError) {
        error!(error = %err, scale_set_id = self.settings.scale_set_id,
            "the scale set is gone on GitHub; waiting for the controller to register it again");
        self.health.set(
            checks::SESSION,
            Err(format!(
                "scale set {} not found on GitHub; waiting for it to be registered again",
                self.settings.scale_set_id
            )),
        );
    }

    /// Records on the EphemeralRunnerSet that the listener has no session (the scale set is gone
    /// on GitHub), which also prompts the controller to check the registration now.
    async fn report_not_ready(&self, state: &mut State) {
        // Written on every attempt (they are backed off): a lost session may have marked the
        // state not ready without writing it.
        state.session.ready = false;
        self.write_session_state(state).await;
    }

    async fn session_opened(&mut self, session: &MessageSession, state: &mut State) {
        self.metrics.session_creations.inc();
        if state.sessions_created > 0 {
            state.session.session_restarts += 1;
        }
        state.sessions_created += 1;
        state.session.session_id = Some(session.session_id().to_owned());
        state.session.ready = true;
        self.health.set(checks::SESSION, Ok(()));
        self.health
            .heartbeat(checks::POLL, self.settings.poll_stale_after);
        info!(session_id = session.session_id(), owner = %self.settings.session_owner, "message session open");
        // Scale on the session's statistics before the first message arrives.
        if let Some(statistics) = session.session.statistics {
            self.metrics.record_statistics(&statistics);
            state.statistics = Some(statistics);
            state
                .assigned
                .session(statistics.total_assigned_jobs, statistics.total_acquired_jobs);
        }
        self.decide(state, "session opened").await;
        self.write_session_state(state).await;
    }

    /// Acts on one message; whether it only reported progress (the next poll may wait).
    async fn process(
        &mut self,
        session: &mut MessageSession,
        message: ScaleSetMessage,
        state: &mut State,
    ) -> bool {
        let handled = handle(&message);
        let progress = only_progress(&message, &handled);
        let again = state.handled_through.is_some_and(|id| message.message_id <= id);
        state.handled_through = Some(state.handled_through.unwrap_or(0).max(message.message_id));
        self.metrics.record_statistics(&handled.statistics);
        if again {
            debug!(message_id = message.message_id, "a message delivered again");
        } else {
            self.metrics.record_jobs(&handled);
        }
        self.record_jobs(&handled).await;
        state.statistics = Some(handled.statistics);
        let ends_read = if again { 0 } else { handled.completed.len() };
        state.assigned.message(
            handled.statistics.total_assigned_jobs,
            handled.statistics.total_acquired_jobs,
            ends_read,
            message.jobs.len(),
        );
        if !handled.completed.is_empty() {
            let on_runners = handled
                .completed
                .iter()
                .filter(|c| !c.runner_name.is_empty())
                .count();
            let mark = MessageMark {
                scale_set_id: self.settings.scale_set_id,
                message_id: message.message_id,
            };
            if !state.decider.jobs_ended(mark, on_runners) {
                debug!(
                    message_id = message.message_id,
                    "the job ends of this message are counted already"
                );
            }
        }
        // The decision follows the statistics alone; the jobs offered in this message count
        // only once GitHub reports them assigned, a poll or so later, so it is written before
        // they are acquired rather than after (against GitHub, that call takes a round trip
        // of its own).
        self.decide(state, "message").await;
        let mut acquired = Vec::new();
        if !handled.acquire.is_empty() {
            match self.client.acquire_jobs(session, &handled.acquire).await {
                Ok(ids) => {
                    debug!(
                        offered = handled.acquire.len(),
                        acquired = ids.len(),
                        "acquired jobs"
                    );
                    state.assigned.acquired(ids.len());
                    acquired = ids;
                }
                Err(err) => {
                    warn!(error = %err, offered = handled.acquire.len(), "acquiring jobs failed; GitHub offers them again")
                }
            }
        }
        if !again {
            state
                .traces
                .observe(self.settings.scale_set_id, &message, &acquired);
        }
        match self.client.delete_message(session, message.message_id).await {
            Ok(()) => state.session.last_message_id = Some(message.message_id),
            Err(err) => {
                warn!(error = %err, message_id = message.message_id, "acknowledging the message failed; it will come again")
            }
        }
        state.session.last_successful_poll = Some(now());
        // A message moves only the cursor and the poll time. The cursor need not be current
        // in the status: GitHub redelivers whatever was not acknowledged, whichever cursor a
        // restarted listener starts from. So these are written at most every
        // STATE_REFRESH, not once per message (that was one status write per job or so).
        if state.state_written.is_none_or(|at| at.elapsed() >= STATE_REFRESH) {
            self.write_session_state(state).await;
        }
        progress
    }

    /// Records on their runners the jobs that started and ended: each runner's records in
    /// message order (a start before its end, in one write when both came together), several
    /// runners at once, so a message reporting hundreds of jobs does not hold the decision back
    /// by hundreds of sequential writes.
    async fn record_jobs(&self, handled: &Handled) {
        stream::iter(job_records::by_runner(handled))
            .for_each_concurrent(RECORD_CONCURRENCY, |(runner, records)| async move {
                for record in records {
                    let result = match record {
                        RunnerRecord::Started(job) => self.cluster.record_job_started(runner, &job).await,
                        RunnerRecord::Completed(completed) => {
                            self.cluster
                                .record_job_completed(
                                    runner,
                                    &completed.result,
                                    completed.finished_at.as_ref(),
                                )
                                .await
                        }
                    };
                    // The controller also asks GitHub before removing a runner, so a missed
                    // record cannot remove a busy runner; it only delays the status.
                    if let Err(err) = result {
                        warn!(error = %err, %runner, "cannot record the job on its runner");
                    }
                }
            })
            .await;
    }

    /// Decides and, when due, writes the replica count.
    async fn decide(&mut self, state: &mut State, reason: &'static str) {
        self.write_decision(state, reason, Pace::Keep).await;
    }

    /// Decides and writes the replica count when due; stopping (`Pace::Skip`), writes only the
    /// decision held back for the pace, and only if no other was written since.
    async fn write_decision(&mut self, state: &mut State, reason: &'static str, pace: Pace) {
        let Some(statistics) = state.statistics else {
            return;
        };
        let limits = *self.limits.borrow();
        self.metrics.record_limits(limits);
        let assigned = state.assigned.count();
        let desired = desired_runners(limits, assigned);
        self.metrics.record_desired(desired);
        let beyond = beyond_max(limits, assigned);
        let decision = match pace {
            Pace::Keep => state.decider.decide(desired, beyond, Instant::now().into_std()),
            Pace::Skip => state.decider.take_held(desired, beyond),
        };
        let Some(decision) = decision else {
            return;
        };
        let previous = state.decider.last_replicas();
        // A scale-up makes runners for the jobs just acquired: they carry those jobs' traces.
        let traceparents = if decision.replicas > previous.unwrap_or(0) {
            state.traces.take_for_scale_up()
        } else {
            Vec::new()
        };
        let written = match pace {
            Pace::Keep => self
                .cluster
                .write_decision(decision, &traceparents)
                .await
                .map(|()| true),
            Pace::Skip => {
                self.cluster
                    .write_decision_after(decision, decision.sequence - 1)
                    .await
            }
        };
        match written {
            Ok(false) => {
                info!(
                    sequence = decision.sequence,
                    "another decision was written meanwhile (the RunnerSet is being deleted); leaving it"
                );
            }
            Ok(true) => {
                state.decider.written(decision, Instant::now().into_std());
                self.metrics.decisions.inc();
                self.health.set(checks::KUBERNETES, Ok(()));
                info!(
                    reason,
                    desired = decision.replicas,
                    previous,
                    sequence = decision.sequence,
                    job_ends = decision.job_ends,
                    beyond_max = decision.beyond_max,
                    min_runners = limits.min_runners,
                    max_runners = limits.max_runners,
                    assigned_jobs = statistics.total_assigned_jobs,
                    ends_unread = state.assigned.ends_unread(),
                    running_jobs = statistics.total_running_jobs,
                    available_jobs = statistics.total_available_jobs,
                    registered_runners = statistics.total_registered_runners,
                    busy_runners = statistics.total_busy_runners,
                    idle_runners = statistics.total_idle_runners,
                    "decision"
                );
            }
            Err(err) => {
                warn!(error = %err, category = err.category(), desired = decision.replicas, "cannot write the decision; retrying with the next one");
                self.health.set(checks::KUBERNETES, Err(err.to_string()));
            }
        }
    }

    async fn write_session_state(&self, state: &mut State) {
        match self.cluster.write_session_state(&state.session).await {
            Ok(()) => state.state_written = Some(Instant::now()),
            Err(err) => warn!(error = %err, category = err.category(), "cannot write the session state"),
        }
    }

    async fn close_session(&self, session: &MessageSession, state: &mut State) {
        let close = self.client.delete_session(session);
        match tokio::time::timeout(self.settings.shutdown_timeout, close).await {
            Ok(Ok(())) => {
                info!(session_id = session.session_id(), "message session closed");
                state.session.session_id = None;
            }
            Ok(Err(err)) => {
                warn!(error = %err, "closing the message session failed; the next listener closes it")
            }
            Err(_) => warn!("closing the message session timed out; the next listener closes it"),
        }
        state.session.ready = false;
        self.write_session_state(state).await;
    }
}

/// Waits for `work`, the shutdown signal, a change of limits or the `due` time of a held-back
/// decision, whichever comes first.
async fn wait<T>(
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    limits: &mut watch::Receiver<Limits>,
    due: Option<Instant>,
    work: impl Future<Output = T>,
) -> Event<T> {
    let limits_changed = async {
        if limits.changed().await.is_err() {
            // The source of limits is gone; they cannot change any more.
            std::future::pending::<()>().await;
        }
    };
    let decision_due = async {
        match due {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        biased;
        () = shutdown.as_mut() => Event::Shutdown,
        () = limits_changed => Event::LimitsChanged,
        () = decision_due => Event::DecisionDue,
        result = work => Event::Done(result),
    }
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::chrono::Utc::now())
}

/// How often the session state is written while messages arrive (idle polls write it every
/// heartbeat, and any other change at once).
const STATE_REFRESH: Duration = Duration::from_secs(5);

/// Job records written at once.
const RECORD_CONCURRENCY: usize = 16;
