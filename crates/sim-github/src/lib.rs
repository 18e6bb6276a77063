//! A fake GitHub for tests, the sandbox and benchmarks: the REST API (App and PAT auth,
//! registration tokens), the Actions Service (runner groups, scale sets, sessions, JIT configs,
//! runners) and the message broker (long poll, ack, acquire), over real HTTP on loopback, with a
//! job model, arrival scenarios, run-time fault injection and a record of every call.
//!
//! It has its own wire types, written from the protocol reference, so a client that gets a field
//! name wrong fails against it.

pub mod faults;
pub mod model;
pub mod scenario;
pub mod server;
pub mod time;
pub mod wire;

pub use faults::FaultKind;
pub use model::{ApiError, CallRecord, FakeConfig, JobSpec, JobState, StartedRunner, State, TakenJob};
pub use scenario::{Arrival, JobDuration, Scenario};
pub use server::{FakeGitHub, TlsFiles};
