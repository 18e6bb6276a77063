//! Client for GitHub's REST API and the Actions Service as used by runner scale sets: config URL
//! parsing, App/PAT auth with a single-flight token cache, scale sets, sessions, the message
//! long poll, job acquisition, JIT configs and runners, with typed errors, retries and metrics.

pub mod auth;
pub mod backoff;
pub mod client;
pub mod config;
pub mod decode;
pub mod error;
pub mod http;
pub mod metrics;
pub mod secret;
pub mod types;

pub use auth::Credentials;
pub use client::{API_VERSION, ActionsClient, AdminConnection, MessageSession};
pub use config::{GitHubConfig, Scope};
pub use decode::{JobInfo, JobMessage, ScaleSetMessage};
pub use error::Error;
pub use http::{ClientOptions, ProxyConfig};
pub use metrics::{Metrics, MetricsRow, RateLimit};
pub use secret::Secret;
pub use types::*;
