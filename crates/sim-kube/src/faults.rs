//! Run-time fault injection and the request log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast;

/// Faults currently injected; change them at any time through [`Faults`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Added to every request before it is handled.
    pub latency: Duration,
    /// Fraction (0..=1) of writes answered with 409 Conflict without being applied.
    pub write_conflict_rate: f64,
    /// Fraction (0..=1) of writes answered with 500 InternalError without being applied.
    pub write_error_rate: f64,
}

/// One handled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or
    /// `discovery` for everything else.
    pub verb: String,
    /// Plural resource (with `/status` for the subresource), or the path for discovery.
    pub resource: String,
    /// Namespace, empty for cluster scope.
    pub namespace: String,
    /// Object name, empty for collections.
    pub name: String,
    /// HTTP status code of the response (200 for watches).
    pub code: u16,
}

/// The most recent requests (at most [`LOG_LIMIT`]) and counts over all of them.
#[derive(Debug, Default)]
struct Log {
    recent: VecDeque<RequestRecord>,
    counts: BTreeMap<(String, String), usize>,
}

/// How many requests the log keeps; counts cover every request.
pub const LOG_LIMIT: usize = 100_000;

/// How a write refused on purpose is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 409 `Conflict`: the object changed meanwhile.
    Conflict,
    /// 500 `InternalError`.
    ServerError,
    /// 409 `AlreadyExists` on a create with `generateName`: what an API server answers when
    /// the name it generated is taken, unless its `RetryGenerateName` feature (on by default
    /// from Kubernetes 1.31) tries other names first.
    NameTaken,
    /// 429 Too Many Requests with `Retry-After: 1` and a plain-text body: how API Priority and
    /// Fairness (and `--max-requests-inflight`) rejects a request it will not queue.
    TooManyRequests,
}

/// The `Retry-After` seconds of a [`Refused::TooManyRequests`] answer.
pub const TOO_MANY_REQUESTS_RETRY_AFTER: &str = "1";
/// The plain-text body of a [`Refused::TooManyRequests`] answer, as flow control writes it.
pub const TOO_MANY_REQUESTS_BODY: &str = "Too many requests, please try again later.\n";

/// Requests of one kind to refuse, a set number of times.
#[derive(Debug)]
struct Refusal {
    verb: String,
    resource: String,
    answer: Refused,
    left: usize,
}

/// Fault switches and the request log, shared by every connection.
#[derive(Debug)]
pub struct Faults {
    config: Mutex<FaultConfig>,
    refusals: Mutex<Vec<Refusal>>,
    answer_delays: Mutex<Vec<AnswerDelay>>,
    watch_delays: Mutex<Vec<(String, Duration)>>,
    log: Mutex<Log>,
    drop_watches: broadcast::Sender<()>,
}

/// Answers of one kind to hold back after they were made.
#[derive(Debug)]
struct AnswerDelay {
    verb: String,
    resource: String,
    delay: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            config: Mutex::default(),
            refusals: Mutex::default(),
            answer_delays: Mutex::default(),
            watch_delays: Mutex::default(),
            log: Mutex::default(),
            drop_watches: broadcast::channel(16).0,
        }
    }
}

impl Faults {
    /// The current fault configuration.
    pub fn config(&self) -> FaultConfig {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the fault configuration.
    pub fn set(&self, config: FaultConfig) {
        *self
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// Answers the next `times` writes with `verb` (`create`, `patch`, ...) on `resource`
    /// (plural, `pods/status` for a subresource) with `code` (409 Conflict, 429 Too Many
    /// Requests, or 500) without applying them, whatever the rates say: for tests that need one
    /// particular write to fail.
    pub fn refuse(&self, verb: &str, resource: &str, code: u16, times: usize) {
        let answer = match code {
            409 => Refused::Conflict,
            429 => Refused::TooManyRequests,
            _ => Refused::ServerError,
        };
        self.push_refusal(verb, resource, answer, times);
    }

    /// Answers the next `times` creates of `resource` with 409 `AlreadyExists`, as when the
    /// name generated for `generateName` is taken (see [`Refused::NameTaken`]).
    pub fn refuse_generated_name(&self, resource: &str, times: usize) {
        self.push_refusal("create", resource, Refused::NameTaken, times);
    }

    fn push_refusal(&self, verb: &str, resource: &str, answer: Refused, times: usize) {
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Refusal {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                answer,
                left: times,
            });
    }

    /// How to refuse this write, if [`Faults::refuse`] or [`Faults::refuse_generated_name`]
    /// asked for it; counts it.
    pub fn take_refusal(&self, verb: &str, resource: &str) -> Option<Refused> {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = refusals
            .iter()
            .position(|r| r.left > 0 && r.verb == verb && r.resource == resource)?;
        refusals[i].left -= 1;
        let answer = refusals[i].answer;
        refusals.retain(|r| r.left > 0);
        Some(answer)
    }

    /// Holds back the answers to `verb` requests on `resource` by `delay` after the API server
    /// made them, as a slow or congested connection does: the change is stored and its watch
    /// event goes out at once, so clients see the event before the answer. Applied by the fault
    /// proxy, which sees the answers of a real API server too.
    pub fn delay_answers(&self, verb: &str, resource: &str, delay: Duration) {
        self.answer_delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(AnswerDelay {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                delay,
            });
    }

    /// How long to hold back the answer to a `verb` request on `resource`, if at all.
    pub fn answer_delay(&self, verb: &str, resource: &str) -> Option<Duration> {
        self.answer_delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|d| d.verb == verb && d.resource == resource)
            .map(|d| d.delay)
    }

    /// Holds back what watches of `resource` receive by `delay`, as a watch falls behind on a
    /// congested connection or a busy client: events keep their order, and every client's cache
    /// of `resource` lags its writes by at least `delay`. Applied by the fault proxy to the
    /// watches it opens from then on.
    pub fn delay_watch_events(&self, resource: &str, delay: Duration) {
        self.watch_delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((resource.to_owned(), delay));
    }

    /// How long events of watches of `resource` are held back, if at all.
    pub fn watch_delay(&self, resource: &str) -> Option<Duration> {
        self.watch_delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(r, _)| r == resource)
            .map(|(_, delay)| *delay)
    }

    /// Ends every open watch stream now (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        let _ = self.drop_watches.send(());
    }

    /// A receiver that fires when watches are to be dropped.
    pub fn watch_drops(&self) -> broadcast::Receiver<()> {
        self.drop_watches.subscribe()
    }

    /// Appends to the request log.
    pub fn record(&self, record: RequestRecord) {
        let mut log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *log.counts
            .entry((record.verb.clone(), record.resource.clone()))
            .or_insert(0) += 1;
        log.recent.push_back(record);
        if log.recent.len() > LOG_LIMIT {
            log.recent.pop_front();
        }
    }

    /// The requests handled so far (the most recent [`LOG_LIMIT`]).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recent
            .iter()
            .cloned()
            .collect()
    }

    /// The status codes of the logged `verb` requests on `resource`, oldest first.
    pub fn codes(&self, verb: &str, resource: &str) -> Vec<u16> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recent
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .map(|r| r.code)
            .collect()
    }

    /// Request counts by (verb, resource), over every request since the last clear.
    pub fn counts(&self) -> BTreeMap<(String, String), usize> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .counts
            .clone()
    }

    /// Clears the request log and the counts.
    pub fn clear_log(&self) {
        *self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Log::default();
    }
}
