//! What every rssc binary needs: flags for logging and the admin server, log setup, the
//! `/healthz`, `/readyz` and `/metrics` endpoints, and the shutdown signal.

pub mod admin;
pub mod args;
pub mod health;
pub mod logging;
pub mod shutdown;
