//! The fake's state: credentials, scale sets, sessions, the message queue, runners and the job
//! model. Pure state transitions; the HTTP layer in `server` calls these under one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::time::{ZERO_TIME, rfc3339};
use crate::wire::*;

/// Settings of the fake.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// How long a message long poll waits before answering 202.
    pub long_poll_window: Duration,
    /// How long an assigned job waits for a runner before it is un-assigned (`canceled`).
    pub assign_timeout: Duration,
    /// Delays before the 1st, 2nd and 3rd re-offer of an un-assigned job.
    pub requeue_delays: [Duration; 3],
    /// Installation token lifetime.
    pub installation_token_ttl: Duration,
    /// Registration token lifetime.
    pub registration_token_ttl: Duration,
    /// Admin (Actions Service) token lifetime.
    pub admin_token_ttl: Duration,
    /// Message-queue token lifetime.
    pub message_queue_token_ttl: Duration,
    /// Most job messages in one message.
    pub max_jobs_per_message: usize,
    /// Background tick (assignment, re-offers, scenario timers).
    pub tick: Duration,
    /// RNG seed (tokens, ids, fault rates, scenarios).
    pub seed: u64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            long_poll_window: Duration::from_secs(50),
            assign_timeout: Duration::from_secs(60),
            requeue_delays: [
                Duration::from_secs(5),
                Duration::from_secs(15),
                Duration::from_secs(30),
            ],
            installation_token_ttl: Duration::from_secs(3600),
            registration_token_ttl: Duration::from_secs(3600),
            admin_token_ttl: Duration::from_secs(3600),
            message_queue_token_ttl: Duration::from_secs(3600),
            max_jobs_per_message: 50,
            tick: Duration::from_millis(20),
            seed: 42,
        }
    }
}

/// What a queued job looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// `runs-on` labels; a scale set whose labels include all of them gets the job.
    pub labels: Vec<String>,
    /// `owner/repo`.
    pub repository: String,
    /// Display name.
    pub display_name: String,
    /// Workflow ref.
    pub workflow_ref: String,
    /// Event.
    pub event_name: String,
    /// How long the job runs once a runner takes it (for the node simulator).
    pub duration: Duration,
}

impl JobSpec {
    /// A job for these labels with defaults for the rest.
    pub fn for_labels<S: Into<String>>(labels: impl IntoIterator<Item = S>) -> Self {
        Self {
            labels: labels.into_iter().map(Into::into).collect(),
            repository: "octo-org/octo-repo".into(),
            display_name: "build".into(),
            workflow_ref: "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main".into(),
            event_name: "push".into(),
            duration: Duration::from_secs(1),
        }
    }

    /// Sets the duration.
    pub fn with_duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a matching scale set (or a re-offer delay).
    Queued,
    /// Offered to a scale set (`JobAvailable`).
    Available,
    /// Acquired by the scale set, waiting for capacity.
    Acquired,
    /// Assigned to the scale set (`JobAssigned`), waiting for a runner.
    Assigned,
    /// Running on a runner (`JobStarted`).
    Running,
    /// Finished (`JobCompleted`).
    Completed,
}

impl JobState {
    /// Counted in the scale set's `totalAssignedJobs` (a running job stays assigned).
    fn is_assigned(self) -> bool {
        matches!(self, JobState::Assigned | JobState::Running)
    }
}

/// A job as the fake tracks it.
#[derive(Debug, Clone)]
pub struct Job {
    /// `runnerRequestId`.
    pub id: i64,
    /// `jobId`.
    pub job_id: String,
    /// What was queued.
    pub spec: JobSpec,
    /// Run id.
    pub workflow_run_id: i64,
    /// State.
    pub state: JobState,
    /// Scale set it is offered/assigned to.
    pub scale_set_id: Option<i64>,
    /// Runner running it.
    pub runner_id: Option<i64>,
    /// How many times it was re-offered after an un-assignment.
    pub reoffers: u32,
    /// Result once completed.
    pub result: Option<String>,
    /// How many runners have run it (must end at 1).
    pub run_count: u32,
    queue_time: SystemTime,
    scale_set_assign_time: Option<SystemTime>,
    runner_assign_time: Option<SystemTime>,
    finish_time: Option<SystemTime>,
    assigned_at: Option<Instant>,
    requeue_at: Option<Instant>,
}

impl Job {
    /// When the job was queued (`queueTime`).
    pub fn queue_time(&self) -> SystemTime {
        self.queue_time
    }

    /// When the job was last assigned to a scale set (`scaleSetAssignTime`).
    pub fn scale_set_assign_time(&self) -> Option<SystemTime> {
        self.scale_set_assign_time
    }

    /// When a runner took the job (`runnerAssignTime`, the job started).
    pub fn runner_assign_time(&self) -> Option<SystemTime> {
        self.runner_assign_time
    }

    /// When the job finished (`finishTime`).
    pub fn finish_time(&self) -> Option<SystemTime> {
        self.finish_time
    }
}

/// A registered runner.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Scale set.
    pub scale_set_id: i64,
    /// Whether the simulated runner started with its JIT config.
    pub started: bool,
    /// Whether it ever took a job: its JIT config is spent then.
    pub took_job: bool,
    /// The job it runs.
    pub job: Option<i64>,
    jit: String,
}

/// A scale set.
#[derive(Debug, Clone)]
pub struct ScaleSet {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Runner group.
    pub group_id: i64,
    /// Labels (names), matched against jobs' `runs-on`.
    pub labels: Vec<String>,
    /// Each label's type (`System` or `User`), as registered.
    pub label_types: Vec<String>,
    /// Disable update.
    pub disable_update: bool,
    created_on: SystemTime,
    outbox: VecDeque<JobMessageJson>,
    /// Messages delivered but not acknowledged. They belong to the scale set's queue, not to
    /// the session that read them: a listener that died holding one gets it again through its
    /// successor's session.
    unacked: BTreeMap<i64, MessageJson>,
}

impl ScaleSet {
    /// Whether job events wait for a message, or a delivered message for its acknowledgement.
    pub fn messages_pending(&self) -> bool {
        !self.outbox.is_empty() || !self.unacked.is_empty()
    }
}

/// A message session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Id.
    pub id: String,
    /// Scale set.
    pub scale_set_id: i64,
    /// Owner.
    pub owner: String,
    /// The `X-ScaleSetMaxCapacity` last sent on a poll.
    pub max_capacity: Option<u32>,
    token: String,
    token_expiry: Instant,
}

/// One HTTP call as the fake saw it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// Method.
    pub method: String,
    /// Path (no query).
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Status sent.
    pub status: u16,
    /// When the request arrived.
    pub at: SystemTime,
    /// How long the answer took.
    pub elapsed: Duration,
    /// Selected request headers (User-Agent, X-ScaleSetMaxCapacity, Accept, Content-Type, and
    /// only the scheme of Authorization).
    pub headers: Vec<(String, String)>,
    /// The request body (lossy UTF-8, at most 64 KiB).
    pub body: String,
}

impl CallRecord {
    /// A recorded header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An error the model returns, turned into an HTTP answer by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Exception type name.
    pub type_name: Option<&'static str>,
    /// Message.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, type_name: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            status,
            type_name,
            message: message.into(),
        }
    }
    pub(crate) fn unauthorized(msg: &str) -> Self {
        Self::new(401, None, msg)
    }
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, None, msg)
    }
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        Self::new(404, None, msg)
    }
}

/// What the simulated runner gets when it takes a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenJob {
    /// `runnerRequestId`.
    pub runner_request_id: i64,
    /// How long the job should run.
    pub duration: Duration,
}

/// A runner the simulated node started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRunner {
    /// Runner id.
    pub runner_id: i64,
    /// Runner name.
    pub name: String,
    /// Scale set.
    pub scale_set_id: i64,
}

/// All state.
#[derive(Debug)]
pub struct State {
    pub(crate) cfg: FakeConfig,
    pub(crate) rng: StdRng,
    pub(crate) base_url: String,
    pub(crate) apps: HashMap<String, String>,
    pub(crate) installations: HashMap<i64, String>,
    pub(crate) pats: HashSet<String>,
    installation_tokens: HashMap<String, Instant>,
    registration_tokens: HashMap<String, (Instant, String)>,
    admin_tokens: HashMap<String, Instant>,
    pub(crate) admin_signing_secret: Vec<u8>,
    groups: BTreeMap<i64, String>,
    /// Scale sets by id.
    pub scale_sets: BTreeMap<i64, ScaleSet>,
    /// Sessions by id.
    pub sessions: HashMap<String, Session>,
    /// Jobs by request id.
    pub jobs: BTreeMap<i64, Job>,
    /// Runners by id.
    pub runners: BTreeMap<i64, Runner>,
    /// Runner ids by name, lowercased, and by JIT configuration, so registering and starting a
    /// runner does not scan every runner under the lock. Entries are checked against `runners`
    /// when read: a runner removed from `runners` directly (tests do) leaves a stale one behind.
    runner_index: HashMap<RunnerKey, i64>,
    /// Jobs in the order they were assigned, by scale set, so an idle runner asking for work
    /// does not scan every job ever queued; entries whose job has moved on are dropped lazily.
    assignment_order: HashMap<i64, BTreeSet<(Instant, i64)>>,
    /// Every call.
    pub calls: Vec<CallRecord>,
    /// Installation tokens issued.
    pub installation_tokens_issued: u64,
    /// Registration tokens issued.
    pub registration_tokens_issued: u64,
    /// Admin connections issued.
    pub admin_tokens_issued: u64,
    next_id: i64,
    next_message_id: i64,
    events: u64,
}

/// How [`State::runner_index`] finds a runner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RunnerKey {
    /// The runner's name, lowercased.
    Name(String),
    /// The runner's encoded JIT configuration.
    Jit(String),
}

impl RunnerKey {
    fn name(name: &str) -> Self {
        Self::Name(name.to_ascii_lowercase())
    }
}

impl State {
    pub(crate) fn new(cfg: FakeConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let secret: [u8; 32] = rng.random();
        let mut groups = BTreeMap::new();
        groups.insert(1, "Default".to_owned());
        Self {
            cfg,
            rng,
            base_url: String::new(),
            apps: HashMap::new(),
            installations: HashMap::new(),
            pats: HashSet::new(),
            installation_tokens: HashMap::new(),
            registration_tokens: HashMap::new(),
            admin_tokens: HashMap::new(),
            admin_signing_secret: secret.to_vec(),
            groups,
            scale_sets: BTreeMap::new(),
            sessions: HashMap::new(),
            jobs: BTreeMap::new(),
            runners: BTreeMap::new(),
            runner_index: HashMap::new(),
            assignment_order: HashMap::new(),
            calls: Vec::new(),
            installation_tokens_issued: 0,
            registration_tokens_issued: 0,
            admin_tokens_issued: 0,
            next_id: 100,
            next_message_id: 1,
            events: 0,
        }
    }

    /// How many job messages were emitted so far.
    pub fn event_count(&self) -> u64 {
        self.events
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn random_token(&mut self, prefix: &str) -> String {
        let bytes: [u8; 24] = self.rng.random();
        format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    fn uuid(&mut self) -> String {
        let b: [u8; 16] = self.rng.random();
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    // ---- credentials ----

    pub(crate) fn issue_installation_token(&mut self) -> TokenResponse {
        let token = self.random_token("ghs_");
        let ttl = self.cfg.installation_token_ttl;
        self.installation_tokens
            .insert(token.clone(), Instant::now() + ttl);
        self.installation_tokens_issued += 1;
        TokenResponse {
            token,
            expires_at: rfc3339(SystemTime::now() + ttl),
        }
    }

    pub(crate) fn bearer_is_valid_github_token(&self, token: &str) -> bool {
        self.pats.contains(token)
            || self
                .installation_tokens
                .get(token)
                .is_some_and(|e| *e > Instant::now())
    }

    pub(crate) fn issue_registration_token(&mut self, scope: String) -> TokenResponse {
        let token = self.random_token("REG");
        let ttl = self.cfg.registration_token_ttl;
        self.registration_tokens
            .insert(token.clone(), (Instant::now() + ttl, scope));
        self.registration_tokens_issued += 1;
        TokenResponse {
            token,
            expires_at: rfc3339(SystemTime::now() + ttl),
        }
    }

    pub(crate) fn registration_scope(&self, token: &str) -> Option<&str> {
        self.registration_tokens
            .get(token)
            .filter(|(e, _)| *e > Instant::now())
            .map(|(_, s)| s.as_str())
    }

    pub(crate) fn add_admin_token(&mut self, token: String, ttl: Duration) {
        self.admin_tokens.insert(token, Instant::now() + ttl);
        self.admin_tokens_issued += 1;
    }

    pub(crate) fn admin_token_valid(&self, token: &str) -> bool {
        self.admin_tokens.get(token).is_some_and(|e| *e > Instant::now())
    }

    /// Expires every admin token now.
    pub fn expire_admin_tokens(&mut self) {
        let past = Instant::now();
        self.admin_tokens.values_mut().for_each(|e| *e = past);
    }

    /// Expires every message-queue token now.
    pub fn expire_message_queue_tokens(&mut self) {
        let past = Instant::now();
        self.sessions.values_mut().for_each(|s| s.token_expiry = past);
    }

    // ---- groups and scale sets ----

    pub(crate) fn add_group(&mut self, name: &str) -> i64 {
        if let Some((id, _)) = self.groups.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)) {
            return *id;
        }
        let id = self.groups.keys().max().copied().unwrap_or(0) + 1;
        self.groups.insert(id, name.to_owned());
        id
    }

    pub(crate) fn groups_named(&self, name: &str) -> Vec<RunnerGroupJson> {
        self.groups
            .iter()
            .filter(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(id, n)| RunnerGroupJson {
                id: *id,
                name: n.clone(),
                size: self.scale_sets.values().filter(|s| s.group_id == *id).count() as i64,
                is_default_group: *id == 1,
            })
            .collect()
    }

    /// Current statistics of a scale set.
    pub fn statistics(&self, scale_set_id: i64) -> StatisticsJson {
        let jobs = self
            .jobs
            .values()
            .filter(|j| j.scale_set_id == Some(scale_set_id));
        let mut s = StatisticsJson::default();
        for j in jobs {
            s.total_assigned_jobs += i64::from(j.state.is_assigned());
            match j.state {
                JobState::Available => s.total_available_jobs += 1,
                JobState::Acquired => s.total_acquired_jobs += 1,
                JobState::Running => s.total_running_jobs += 1,
                _ => {}
            }
        }
        for r in self.runners.values().filter(|r| r.scale_set_id == scale_set_id) {
            s.total_registered_runners += 1;
            if r.job.is_some() {
                s.total_busy_runners += 1;
            } else {
                s.total_idle_runners += 1;
            }
        }
        s
    }

    pub(crate) fn scale_set_json(&self, ss: &ScaleSet) -> ScaleSetJson {
        ScaleSetJson {
            id: ss.id,
            name: ss.name.clone(),
            runner_group_id: ss.group_id,
            runner_group_name: self.groups.get(&ss.group_id).cloned().unwrap_or_default(),
            labels: ss
                .labels
                .iter()
                .zip(&ss.label_types)
                .map(|(name, type_)| LabelJson {
                    label_type: Some(type_.clone()),
                    name: name.clone(),
                })
                .collect(),
            runner_setting: RunnerSettingJson {
                disable_update: ss.disable_update,
            },
            created_on: rfc3339(ss.created_on),
            runner_jit_config_url: format!(
                "{}_apis/runtime/runnerscalesets/{}/generatejitconfig",
                self.service_url(),
                ss.id
            ),
            statistics: self.statistics(ss.id),
        }
    }

    pub(crate) fn service_url(&self) -> String {
        format!("{}/_services/pipelines/", self.base_url)
    }

    pub(crate) fn scale_set(&self, id: i64) -> Result<&ScaleSet, ApiError> {
        self.scale_sets.get(&id).ok_or_else(|| {
            ApiError::new(
                404,
                Some("RunnerScaleSetNotFoundException"),
                format!("No RunnerScaleSet found with id {id}."),
            )
        })
    }

    pub(crate) fn create_scale_set(&mut self, req: ScaleSetRequest) -> Result<ScaleSetJson, ApiError> {
        let name = req
            .name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request("name is required"))?;
        let group_id = req.runner_group_id.unwrap_or(1);
        if !self.groups.contains_key(&group_id) {
            return Err(ApiError::not_found(format!("runner group {group_id} not found")));
        }
        if self
            .scale_sets
            .values()
            .any(|s| s.group_id == group_id && s.name.eq_ignore_ascii_case(&name))
        {
            return Err(ApiError::new(
                409,
                None,
                format!("A runner scale set named '{name}' already exists in runner group {group_id}."),
            ));
        }
        let mut labels: Vec<String> = Vec::new();
        let mut label_types: Vec<String> = Vec::new();
        for l in req.labels.unwrap_or_default() {
            if !labels.iter().any(|x| x.eq_ignore_ascii_case(&l.name)) {
                labels.push(l.name);
                // The service defaults a label's type to System.
                label_types.push(l.label_type.unwrap_or_else(|| "System".into()));
            }
        }
        if labels.is_empty() {
            labels.push(name.clone());
            label_types.push("System".into());
        }
        let id = self.id();
        let ss = ScaleSet {
            id,
            name,
            group_id,
            labels,
            label_types,
            disable_update: req.runner_setting.map(|r| r.disable_update).unwrap_or(false),
            created_on: SystemTime::now(),
            outbox: VecDeque::new(),
            unacked: BTreeMap::new(),
        };
        let json = self.scale_set_json(&ss);
        self.scale_sets.insert(id, ss);
        self.dispatch_queued();
        Ok(json)
    }

    pub(crate) fn update_scale_set(
        &mut self,
        id: i64,
        req: ScaleSetRequest,
    ) -> Result<ScaleSetJson, ApiError> {
        let cur = self.scale_set(id)?.clone();
        let group_id = req.runner_group_id.unwrap_or(cur.group_id);
        let name = req.name.unwrap_or(cur.name.clone());
        if !self.groups.contains_key(&group_id) {
            return Err(ApiError::not_found(format!("runner group {group_id} not found")));
        }
        if self
            .scale_sets
            .values()
            .any(|s| s.id != id && s.group_id == group_id && s.name.eq_ignore_ascii_case(&name))
        {
            return Err(ApiError::new(
                409,
                None,
                format!("A runner scale set named '{name}' already exists."),
            ));
        }
        let ss = self.scale_sets.get_mut(&id).expect("checked");
        ss.group_id = group_id;
        ss.name = name;
        if let Some(rs) = req.runner_setting {
            ss.disable_update = rs.disable_update;
        }
        let ss = ss.clone();
        Ok(self.scale_set_json(&ss))
    }

    /// Deletes a scale set: its sessions and runners go, its jobs go back to the queue. Refused
    /// while one of its runners runs a job, as the service does.
    pub fn delete_scale_set(&mut self, id: i64) -> Result<(), ApiError> {
        self.scale_set(id)?;
        if self
            .runners
            .values()
            .any(|r| r.scale_set_id == id && r.job.is_some())
        {
            return Err(ApiError::bad_request(format!(
                "The runner scale set {id} cannot be deleted while its runners are running jobs."
            )));
        }
        self.scale_sets.remove(&id);
        self.sessions.retain(|_, s| s.scale_set_id != id);
        let gone: Vec<i64> = self
            .runners
            .values()
            .filter(|r| r.scale_set_id == id)
            .map(|r| r.id)
            .collect();
        for runner in gone {
            self.drop_runner(runner);
        }
        for j in self.jobs.values_mut() {
            if j.scale_set_id == Some(id) && j.state != JobState::Completed {
                j.state = JobState::Queued;
                j.scale_set_id = None;
                j.runner_id = None;
                j.requeue_at = None;
            }
        }
        Ok(())
    }

    // ---- sessions and messages ----

    pub(crate) fn create_session(
        &mut self,
        scale_set_id: i64,
        owner: String,
    ) -> Result<SessionJson, ApiError> {
        let ss = self.scale_set(scale_set_id)?.clone();
        if self.sessions.values().any(|s| s.scale_set_id == scale_set_id) {
            return Err(ApiError::new(
                409,
                Some("RunnerScaleSetSessionConflictException"),
                format!(
                    "The runner scale set {} already has an active session for owner {owner}.",
                    ss.name
                ),
            ));
        }
        let id = self.uuid();
        let token = self.random_token("MQ");
        let session = Session {
            id: id.clone(),
            scale_set_id,
            owner,
            max_capacity: None,
            token,
            token_expiry: Instant::now() + self.cfg.message_queue_token_ttl,
        };
        self.sessions.insert(id.clone(), session);
        Ok(self.session_json(&id))
    }

    pub(crate) fn session_json(&self, id: &str) -> SessionJson {
        let s = &self.sessions[id];
        let ss = &self.scale_sets[&s.scale_set_id];
        SessionJson {
            session_id: s.id.clone(),
            owner_name: s.owner.clone(),
            runner_scale_set: self.scale_set_json(ss),
            message_queue_url: format!("{}/broker/scalesets/message?sessionId={}", self.base_url, s.id),
            message_queue_access_token: s.token.clone(),
            statistics: self.statistics(s.scale_set_id),
        }
    }

    pub(crate) fn refresh_session(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
    ) -> Result<SessionJson, ApiError> {
        self.scale_set(scale_set_id)?;
        let token = self.random_token("MQ");
        let ttl = self.cfg.message_queue_token_ttl;
        let s = self
            .sessions
            .get_mut(session_id)
            .filter(|s| s.scale_set_id == scale_set_id)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    Some("RunnerAdminException"),
                    "runner referenced a session ID that doesn't exist in redis",
                )
            })?;
        s.token = token;
        s.token_expiry = Instant::now() + ttl;
        Ok(self.session_json(session_id))
    }

    pub(crate) fn delete_session(&mut self, scale_set_id: i64, session_id: &str) -> Result<(), ApiError> {
        match self.sessions.get(session_id) {
            Some(s) if s.scale_set_id == scale_set_id => {
                self.sessions.remove(session_id);
                Ok(())
            }
            _ => Err(ApiError::not_found(format!("session {session_id} not found"))),
        }
    }

    /// Drops sessions (all, or one scale set's) as if the backend evicted them.
    pub fn evict_sessions(&mut self, scale_set_id: Option<i64>) {
        self.sessions
            .retain(|_, s| scale_set_id.is_some_and(|id| id != s.scale_set_id));
    }

    /// The session a message-queue token belongs to, if the token is valid.
    pub(crate) fn session_for_queue_token(
        &self,
        token: &str,
        session_id: Option<&str>,
    ) -> Result<String, ApiError> {
        let s = self
            .sessions
            .values()
            .find(|s| s.token == token)
            .filter(|s| s.token_expiry > Instant::now())
            .ok_or_else(|| ApiError::unauthorized("message queue token is invalid or expired"))?;
        if session_id.is_some_and(|q| q != s.id) {
            return Err(ApiError::unauthorized("token does not belong to this session"));
        }
        Ok(s.id.clone())
    }

    /// A message for the session, if one is ready (redelivering unacked ones first, whichever
    /// session they were first delivered to).
    pub(crate) fn next_message(
        &mut self,
        session_id: &str,
        last_message_id: i64,
        max_capacity: Option<u32>,
    ) -> Option<MessageJson> {
        let max_jobs = self.cfg.max_jobs_per_message;
        let s = self.sessions.get_mut(session_id)?;
        if max_capacity.is_some() {
            s.max_capacity = max_capacity;
        }
        let ss_id = s.scale_set_id;
        let stats = self.statistics(ss_id);
        let ss = self.scale_sets.get_mut(&ss_id)?;
        ss.unacked.retain(|id, _| *id > last_message_id);
        if let Some((_, m)) = ss.unacked.iter().next() {
            let mut m = m.clone();
            m.statistics = stats;
            return Some(m);
        }
        if ss.outbox.is_empty() {
            return None;
        }
        let n = ss.outbox.len().min(max_jobs);
        let batch: Vec<JobMessageJson> = ss.outbox.drain(..n).collect();
        let id = self.next_message_id;
        self.next_message_id += 1;
        let m = MessageJson {
            message_id: id,
            message_type: "RunnerScaleSetJobMessages".into(),
            body: serde_json::to_string(&batch).unwrap_or_else(|_| "[]".into()),
            statistics: stats,
        };
        ss.unacked.insert(id, m.clone());
        Some(m)
    }

    pub(crate) fn ack_message(&mut self, session_id: &str, message_id: i64) -> Result<(), ApiError> {
        let ss_id = self
            .sessions
            .get(session_id)
            .ok_or_else(|| ApiError::not_found("session not found"))?
            .scale_set_id;
        if let Some(ss) = self.scale_sets.get_mut(&ss_id) {
            ss.unacked.remove(&message_id);
        }
        Ok(())
    }

    // ---- jobs ----

    /// Queues a job; returns its `runnerRequestId`.
    pub fn queue_job(&mut self, spec: JobSpec) -> i64 {
        let id = self.id();
        let job_id = self.uuid();
        let run_id = self.rng.random_range(1_000_000..9_000_000);
        self.jobs.insert(
            id,
            Job {
                id,
                job_id,
                spec,
                workflow_run_id: run_id,
                state: JobState::Queued,
                scale_set_id: None,
                runner_id: None,
                reoffers: 0,
                result: None,
                run_count: 0,
                queue_time: SystemTime::now(),
                scale_set_assign_time: None,
                runner_assign_time: None,
                finish_time: None,
                assigned_at: None,
                requeue_at: None,
            },
        );
        self.dispatch_queued();
        id
    }

    fn job_message(&self, job: &Job, kind: &str) -> JobMessageJson {
        let t = |x: Option<SystemTime>| x.map(rfc3339).unwrap_or_else(|| ZERO_TIME.into());
        let owner = job
            .spec
            .repository
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let runner = job.runner_id.and_then(|r| self.runners.get(&r));
        let with_runner = kind == "JobStarted" || kind == "JobCompleted";
        JobMessageJson {
            message_type: kind.into(),
            runner_request_id: job.id,
            repository_name: job
                .spec
                .repository
                .split('/')
                .nth(1)
                .unwrap_or_default()
                .to_owned(),
            owner_name: owner,
            job_id: job.job_id.clone(),
            job_workflow_ref: job.spec.workflow_ref.clone(),
            job_display_name: job.spec.display_name.clone(),
            workflow_run_id: job.workflow_run_id,
            event_name: job.spec.event_name.clone(),
            request_labels: job.spec.labels.clone(),
            queue_time: rfc3339(job.queue_time),
            scale_set_assign_time: t(job.scale_set_assign_time),
            runner_assign_time: t(job.runner_assign_time),
            finish_time: t(job.finish_time),
            acquire_job_url: (kind == "JobAvailable").then(|| {
                format!(
                    "{}_apis/runtime/runnerscalesets/{}/acquirejobs",
                    self.service_url(),
                    job.scale_set_id.unwrap_or_default()
                )
            }),
            runner_id: with_runner.then(|| job.runner_id.unwrap_or_default()),
            runner_name: with_runner.then(|| runner.map(|r| r.name.clone()).unwrap_or_default()),
            result: (kind == "JobCompleted").then(|| job.result.clone().unwrap_or_default()),
        }
    }

    fn emit(&mut self, job_id: i64, kind: &str) {
        let Some(job) = self.jobs.get(&job_id) else { return };
        let Some(ss_id) = job.scale_set_id else { return };
        let msg = self.job_message(job, kind);
        self.events += 1;
        if let Some(ss) = self.scale_sets.get_mut(&ss_id) {
            ss.outbox.push_back(msg);
        }
    }

    fn matching_scale_set(&self, labels: &[String]) -> Option<i64> {
        self.scale_sets
            .values()
            .find(|ss| {
                labels
                    .iter()
                    .all(|l| ss.labels.iter().any(|x| x.eq_ignore_ascii_case(l)))
            })
            .map(|ss| ss.id)
    }

    /// Offers queued jobs whose re-offer delay passed to a matching scale set.
    fn dispatch_queued(&mut self) {
        let now = Instant::now();
        let ready: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued && j.requeue_at.is_none_or(|t| t <= now))
            .map(|j| j.id)
            .collect();
        for id in ready {
            let labels = self.jobs[&id].spec.labels.clone();
            if let Some(ss) = self.matching_scale_set(&labels) {
                let j = self.jobs.get_mut(&id).expect("exists");
                j.state = JobState::Available;
                j.scale_set_id = Some(ss);
                j.requeue_at = None;
                self.emit(id, "JobAvailable");
            }
        }
    }

    pub(crate) fn acquire(&mut self, scale_set_id: i64, ids: &[i64]) -> Vec<i64> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(j) = self.jobs.get_mut(id)
                && j.state == JobState::Available
                && j.scale_set_id == Some(scale_set_id)
            {
                j.state = JobState::Acquired;
                out.push(*id);
            }
        }
        self.assign_acquired();
        out
    }

    pub(crate) fn acquirable(&self, scale_set_id: i64) -> Vec<AcquirableJobJson> {
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Available && j.scale_set_id == Some(scale_set_id))
            .map(|j| {
                let m = self.job_message(j, "JobAvailable");
                AcquirableJobJson {
                    acquire_job_url: m.acquire_job_url.unwrap_or_default(),
                    message_type: m.message_type,
                    runner_request_id: j.id,
                    repository_name: m.repository_name,
                    owner_name: m.owner_name,
                    job_workflow_ref: m.job_workflow_ref,
                    event_name: m.event_name,
                    request_labels: m.request_labels,
                }
            })
            .collect()
    }

    /// Assigns acquired jobs while the scale set's max capacity allows.
    fn assign_acquired(&mut self) {
        let acquired: Vec<(i64, i64)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Acquired)
            .filter_map(|j| j.scale_set_id.map(|s| (j.id, s)))
            .collect();
        if acquired.is_empty() {
            return;
        }
        // Each scale set's assigned jobs, counted once a tick rather than once per waiting job
        // (a thousand jobs waiting for capacity made that a million steps every tick).
        let mut assigned: HashMap<i64, i64> = HashMap::new();
        for job in self.jobs.values() {
            if let Some(ss) = job.scale_set_id
                && job.state.is_assigned()
            {
                *assigned.entry(ss).or_default() += 1;
            }
        }
        for (id, ss) in acquired {
            let cap = self
                .sessions
                .values()
                .find(|s| s.scale_set_id == ss)
                .and_then(|s| s.max_capacity);
            let assigned = assigned.entry(ss).or_default();
            if cap.is_some_and(|c| *assigned >= i64::from(c)) {
                continue;
            }
            *assigned += 1;
            let j = self.jobs.get_mut(&id).expect("exists");
            let at = Instant::now();
            j.state = JobState::Assigned;
            j.scale_set_assign_time = Some(SystemTime::now());
            j.assigned_at = Some(at);
            self.assignment_order.entry(ss).or_default().insert((at, id));
            self.emit(id, "JobAssigned");
        }
    }

    /// Periodic work: assignment, un-assignment of jobs no runner took, re-offers.
    pub(crate) fn tick(&mut self) {
        self.assign_acquired();
        let now = Instant::now();
        let timeout = self.cfg.assign_timeout;
        let expired: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| {
                j.state == JobState::Assigned
                    && j.assigned_at.is_some_and(|t| now.duration_since(t) >= timeout)
            })
            .map(|j| j.id)
            .collect();
        for id in expired {
            {
                let j = self.jobs.get_mut(&id).expect("exists");
                j.result = Some("canceled".into());
                j.finish_time = Some(SystemTime::now());
            }
            self.emit(id, "JobCompleted");
            let delays = self.cfg.requeue_delays;
            let j = self.jobs.get_mut(&id).expect("exists");
            if (j.reoffers as usize) < delays.len() {
                j.requeue_at = Some(now + delays[j.reoffers as usize]);
                j.reoffers += 1;
                j.state = JobState::Queued;
                j.scale_set_id = None;
                j.result = None;
                j.finish_time = None;
                j.scale_set_assign_time = None;
                j.assigned_at = None;
            } else {
                j.state = JobState::Completed;
            }
        }
        self.dispatch_queued();
    }

    // ---- runners ----

    pub(crate) fn generate_jit(
        &mut self,
        scale_set_id: i64,
        name: &str,
    ) -> Result<JitResponseJson, ApiError> {
        self.scale_set(scale_set_id)?;
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("runner name is required"));
        }
        if self.runner_named(name).is_some() {
            return Err(ApiError::new(
                409,
                Some("GitHub.DistributedTask.WebApi.AgentExistsException"),
                format!("A runner with the name {name} already exists."),
            ));
        }
        let id = self.id();
        let secret = self.random_token("");
        let cfg = serde_json::json!({".runner": {"agentId": id, "agentName": name, "poolId": 0}, ".credentials": secret});
        let jit = base64::engine::general_purpose::STANDARD.encode(cfg.to_string());
        self.runner_index.insert(RunnerKey::name(name), id);
        self.runner_index.insert(RunnerKey::Jit(jit.clone()), id);
        self.runners.insert(
            id,
            Runner {
                id,
                name: name.to_owned(),
                scale_set_id,
                started: false,
                took_job: false,
                job: None,
                jit: jit.clone(),
            },
        );
        Ok(JitResponseJson {
            runner: RunnerJson {
                id,
                name: name.to_owned(),
                runner_scale_set_id: scale_set_id,
            },
            encoded_jit_config: jit,
        })
    }

    pub(crate) fn runner_json(r: &Runner) -> RunnerJson {
        RunnerJson {
            id: r.id,
            name: r.name.clone(),
            runner_scale_set_id: r.scale_set_id,
        }
    }

    pub(crate) fn get_runner(&self, id: i64) -> Result<RunnerJson, ApiError> {
        self.runners.get(&id).map(Self::runner_json).ok_or_else(|| {
            ApiError::new(
                404,
                Some("GitHub.DistributedTask.WebApi.AgentNotFoundException"),
                format!("No agent found in pool 0 with identifier {id}."),
            )
        })
    }

    pub(crate) fn remove_runner(&mut self, id: i64) -> Result<(), ApiError> {
        if let Some(r) = self.runners.get(&id)
            && let Some(job) = r.job
        {
            return Err(ApiError::new(
                400,
                Some("GitHub.DistributedTask.WebApi.JobStillRunningException"),
                format!("Runner {} is still running job {job}.", r.name),
            ));
        }
        self.drop_runner(id);
        Ok(())
    }

    /// The runner registered under `name` (GitHub compares runner names case-insensitively).
    pub(crate) fn runner_named(&self, name: &str) -> Option<&Runner> {
        let id = self.runner_index.get(&RunnerKey::name(name))?;
        self.runners.get(id).filter(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// Removes a runner's registration and its index entries.
    fn drop_runner(&mut self, id: i64) {
        if let Some(r) = self.runners.remove(&id) {
            self.runner_index.remove(&RunnerKey::name(&r.name));
            self.runner_index.remove(&RunnerKey::Jit(r.jit));
        }
    }

    /// The simulated runner starts with its JIT config. A runner that crashed before taking a
    /// job may start again with the same configuration (its Pod is retried); once it took a job
    /// the configuration is spent.
    pub fn runner_start(&mut self, encoded_jit_config: &str) -> Result<StartedRunner, ApiError> {
        let r = self
            .runner_index
            .get(&RunnerKey::Jit(encoded_jit_config.to_owned()))
            .and_then(|id| self.runners.get_mut(id))
            .filter(|r| r.jit == encoded_jit_config)
            .ok_or_else(|| ApiError::unauthorized("JIT config is not valid"))?;
        if r.took_job {
            return Err(ApiError::unauthorized("JIT config was already used"));
        }
        r.started = true;
        Ok(StartedRunner {
            runner_id: r.id,
            name: r.name.clone(),
            scale_set_id: r.scale_set_id,
        })
    }

    /// The runner takes the oldest job assigned to its scale set, if any.
    pub fn runner_take_job(&mut self, runner_id: i64) -> Result<Option<TakenJob>, ApiError> {
        let r = self
            .runners
            .get(&runner_id)
            .ok_or_else(|| ApiError::not_found("runner not found"))?;
        if !r.started {
            return Err(ApiError::bad_request("runner has not started"));
        }
        if r.job.is_some() {
            return Err(ApiError::bad_request("runner is busy"));
        }
        let ss = r.scale_set_id;
        // The longest-assigned job of the scale set that is still assigned and waiting.
        let order = self.assignment_order.entry(ss).or_default();
        let id = loop {
            let Some(&(at, id)) = order.first() else {
                return Ok(None);
            };
            let waiting = self.jobs.get(&id).is_some_and(|j| {
                j.state == JobState::Assigned && j.scale_set_id == Some(ss) && j.assigned_at == Some(at)
            });
            if waiting {
                break id;
            }
            order.pop_first();
        };
        let j = self.jobs.get_mut(&id).expect("exists");
        j.state = JobState::Running;
        j.runner_id = Some(runner_id);
        j.runner_assign_time = Some(SystemTime::now());
        j.run_count += 1;
        let duration = j.spec.duration;
        let r = self.runners.get_mut(&runner_id).expect("exists");
        r.job = Some(id);
        r.took_job = true;
        self.emit(id, "JobStarted");
        Ok(Some(TakenJob {
            runner_request_id: id,
            duration,
        }))
    }

    /// The runner process died while running its job (crash, OOM kill, eviction, deletion):
    /// the service ends the job as `failed` (it is not run again) and the registration stays,
    /// offline and without a job, until it is removed. Returns the job, if the runner had one.
    pub fn runner_lost(&mut self, runner_id: i64) -> Result<Option<i64>, ApiError> {
        let r = self
            .runners
            .get_mut(&runner_id)
            .ok_or_else(|| ApiError::not_found("runner not found"))?;
        let Some(id) = r.job.take() else {
            return Ok(None);
        };
        let j = self.jobs.get_mut(&id).expect("exists");
        j.state = JobState::Completed;
        j.result = Some("failed".into());
        j.finish_time = Some(SystemTime::now());
        self.emit(id, "JobCompleted");
        Ok(Some(id))
    }

    /// The runner finishes its job with `result`; the ephemeral runner then deregisters.
    pub fn runner_finish(&mut self, runner_id: i64, result: &str) -> Result<i64, ApiError> {
        let r = self
            .runners
            .get(&runner_id)
            .ok_or_else(|| ApiError::not_found("runner not found"))?;
        let id = r.job.ok_or_else(|| ApiError::bad_request("runner has no job"))?;
        let j = self.jobs.get_mut(&id).expect("exists");
        j.state = JobState::Completed;
        j.result = Some(result.to_owned());
        j.finish_time = Some(SystemTime::now());
        self.emit(id, "JobCompleted");
        self.drop_runner(runner_id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        let mut s = State::new(FakeConfig {
            assign_timeout: Duration::ZERO,
            requeue_delays: [Duration::ZERO; 3],
            ..Default::default()
        });
        s.base_url = "http://127.0.0.1:1".into();
        s
    }

    fn system_label(name: &str) -> LabelJson {
        LabelJson {
            label_type: Some("System".into()),
            name: name.into(),
        }
    }

    fn make_set(s: &mut State, name: &str, labels: &[&str]) -> i64 {
        s.create_scale_set(ScaleSetRequest {
            name: Some(name.into()),
            runner_group_id: Some(1),
            labels: Some(labels.iter().map(|l| system_label(l)).collect()),
            ..Default::default()
        })
        .unwrap()
        .id
    }

    fn kinds(s: &mut State, ss: i64) -> Vec<String> {
        s.scale_sets
            .get_mut(&ss)
            .unwrap()
            .outbox
            .drain(..)
            .map(|m| m.message_type)
            .collect()
    }

    #[test]
    fn job_lifecycle() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &["set", "linux"]);
        let job = s.queue_job(JobSpec::for_labels(["linux"]));
        assert_eq!(s.statistics(ss).total_available_jobs, 1);
        assert_eq!(s.acquire(ss, &[job, 9999]), vec![job]);
        assert_eq!(s.statistics(ss).total_assigned_jobs, 1);
        let jit = s.generate_jit(ss, "r1").unwrap();
        s.runner_start(&jit.encoded_jit_config).unwrap();
        let started = s.runner_start(&jit.encoded_jit_config).unwrap();
        assert_eq!(
            started.name, "r1",
            "a runner restarted before a job reuses its JIT config"
        );
        let taken = s.runner_take_job(started.runner_id).unwrap().unwrap();
        assert!(
            s.runner_start(&jit.encoded_jit_config).is_err(),
            "a JIT config is spent once its runner took a job"
        );
        assert_eq!(taken.runner_request_id, job);
        assert_eq!(s.statistics(ss).total_busy_runners, 1);
        assert_eq!(s.remove_runner(started.runner_id).unwrap_err().status, 400);
        s.runner_finish(started.runner_id, "succeeded").unwrap();
        assert_eq!(
            kinds(&mut s, ss),
            ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted"]
        );
        assert_eq!(s.jobs[&job].run_count, 1);
        assert_eq!(s.statistics(ss), StatisticsJson::default());
    }

    #[test]
    fn runner_names_are_taken_until_the_runner_goes_whatever_their_case() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &["set"]);
        let first = s.generate_jit(ss, "Runner-1").unwrap();
        let taken = s.generate_jit(ss, "runner-1").unwrap_err();
        assert_eq!(taken.status, 409);
        assert_eq!(s.runner_named("RUNNER-1").map(|r| r.id), Some(first.runner.id));
        s.remove_runner(first.runner.id).unwrap();
        assert!(s.runner_named("runner-1").is_none());
        assert!(
            s.runner_start(&first.encoded_jit_config).is_err(),
            "a removed runner's JIT config starts nothing"
        );
        let second = s.generate_jit(ss, "runner-1").unwrap();
        // Tests remove registrations behind the fake's back; the name is free again.
        s.runners.remove(&second.runner.id);
        assert!(s.runner_named("runner-1").is_none());
        let third = s.generate_jit(ss, "runner-1").unwrap();
        assert_eq!(
            s.runner_start(&third.encoded_jit_config).unwrap().runner_id,
            third.runner.id
        );
    }

    #[test]
    fn runners_take_the_longest_assigned_job_of_their_scale_set_once() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &["set"]);
        let other = make_set(&mut s, "other", &["other"]);
        let first = s.queue_job(JobSpec::for_labels(["set"]));
        let elsewhere = s.queue_job(JobSpec::for_labels(["other"]));
        s.acquire(other, &[elsewhere]);
        s.acquire(ss, &[first]);
        let second = s.queue_job(JobSpec::for_labels(["set"]));
        s.acquire(ss, &[second]);
        let mut take = |name: &str| {
            let jit = s.generate_jit(ss, name).unwrap();
            let runner = s.runner_start(&jit.encoded_jit_config).unwrap().runner_id;
            s.runner_take_job(runner).unwrap().map(|j| j.runner_request_id)
        };
        assert_eq!(take("r1"), Some(first));
        assert_eq!(take("r2"), Some(second));
        assert_eq!(
            take("r3"),
            None,
            "the other scale set's job is not ours, and none is left"
        );
    }

    #[test]
    fn a_runner_lost_mid_job_fails_the_job_and_stays_registered_idle() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &[]);
        let job = s.queue_job(JobSpec::for_labels(["set"]));
        s.acquire(ss, &[job]);
        let jit = s.generate_jit(ss, "r1").unwrap();
        let runner = s.runner_start(&jit.encoded_jit_config).unwrap().runner_id;
        s.runner_take_job(runner).unwrap().unwrap();
        assert_eq!(s.runner_lost(runner).unwrap(), Some(job));
        let j = &s.jobs[&job];
        assert_eq!(
            (j.state, j.result.as_deref(), j.run_count),
            (JobState::Completed, Some("failed"), 1)
        );
        assert!(s.runners[&runner].job.is_none());
        s.remove_runner(runner).unwrap();
        assert_eq!(s.runner_lost(runner).unwrap_err().status, 404);
    }

    #[test]
    fn unpicked_assigned_jobs_are_reoffered_three_times() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &[]);
        let job = s.queue_job(JobSpec::for_labels(["set"]));
        for round in 0..4 {
            assert_eq!(s.acquire(ss, &[job]), vec![job], "round {round}");
            s.tick();
        }
        assert_eq!(s.jobs[&job].state, JobState::Completed);
        assert_eq!(s.jobs[&job].result.as_deref(), Some("canceled"));
        let k = kinds(&mut s, ss);
        assert_eq!(k.iter().filter(|k| *k == "JobAvailable").count(), 4);
        assert_eq!(k.iter().filter(|k| *k == "JobCompleted").count(), 4);
    }

    #[test]
    fn max_capacity_limits_assignment() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &[]);
        let sid = s.create_session(ss, "me".into()).unwrap().session_id;
        s.next_message(&sid, 0, Some(1));
        let a = s.queue_job(JobSpec::for_labels(["set"]));
        let b = s.queue_job(JobSpec::for_labels(["set"]));
        s.acquire(ss, &[a, b]);
        let st = s.statistics(ss);
        assert_eq!((st.total_assigned_jobs, st.total_acquired_jobs), (1, 1));
    }

    #[test]
    fn batches_hold_at_most_50_and_redeliver_until_acked() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &[]);
        let sid = s.create_session(ss, "me".into()).unwrap().session_id;
        for _ in 0..60 {
            s.queue_job(JobSpec::for_labels(["set"]));
        }
        let m1 = s.next_message(&sid, 0, None).unwrap();
        let batch: Vec<serde_json::Value> = serde_json::from_str(&m1.body).unwrap();
        assert_eq!(batch.len(), 50);
        assert_eq!(m1.statistics.total_available_jobs, 60);
        // Not acked: delivered again.
        assert_eq!(s.next_message(&sid, 0, None).unwrap().message_id, m1.message_id);
        s.ack_message(&sid, m1.message_id).unwrap();
        let m2 = s.next_message(&sid, m1.message_id, None).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<serde_json::Value>>(&m2.body)
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn a_message_left_unacked_by_a_closed_session_goes_to_the_next_one() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &[]);
        s.queue_job(JobSpec::for_labels(["set"]));
        let first = s.create_session(ss, "a".into()).unwrap().session_id;
        let m = s.next_message(&first, 0, None).unwrap();
        s.delete_session(ss, &first).unwrap();
        let second = s.create_session(ss, "b".into()).unwrap().session_id;
        assert_eq!(s.next_message(&second, 0, None).unwrap().body, m.body);
        s.evict_sessions(Some(ss));
        let third = s.create_session(ss, "c".into()).unwrap().session_id;
        let again = s.next_message(&third, 0, None).unwrap();
        assert_eq!(again.message_id, m.message_id);
        s.ack_message(&third, again.message_id).unwrap();
        assert!(s.next_message(&third, 0, None).is_none(), "acked: gone for good");
    }

    #[test]
    fn one_session_per_scale_set() {
        let mut s = state();
        let ss = make_set(&mut s, "set", &[]);
        s.create_session(ss, "a".into()).unwrap();
        let e = s.create_session(ss, "b".into()).unwrap_err();
        assert_eq!(
            (e.status, e.type_name),
            (409, Some("RunnerScaleSetSessionConflictException"))
        );
    }

    #[test]
    fn scale_set_names_unique_per_group() {
        let mut s = state();
        make_set(&mut s, "set", &[]);
        let g2 = s.add_group("other");
        assert!(
            s.create_scale_set(ScaleSetRequest {
                name: Some("set".into()),
                runner_group_id: Some(1),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            s.create_scale_set(ScaleSetRequest {
                name: Some("set".into()),
                runner_group_id: Some(g2),
                ..Default::default()
            })
            .is_ok()
        );
    }
}
