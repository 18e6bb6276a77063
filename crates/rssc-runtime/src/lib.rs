//! What every rssc binary needs: flags for logging and the admin server, log setup, the
//! `/healthz`, `/readyz` and `/metrics` endpoints, the rate-limited Kubernetes client, and the
//! shutdown signal.

pub mod admin;
pub mod args;
pub mod health;
pub mod kube_client;
pub mod logging;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
