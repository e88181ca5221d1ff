//! oncall-relay: the "Grafana Cloud" that self-hosted Grafana OnCall connects to for phone
//! calls and SMS, routing them to the operator's own backends.

pub mod ack;
pub mod app;
pub mod cloud_api;
pub mod config;
pub mod console;
pub mod directory;
pub mod heartbeat;
pub mod notify;
pub mod roles;
pub mod schedules;
pub mod store;
pub mod tasks;
pub mod telemetry;

pub use app::{Application, StartupError};

/// Installs rustls' ring provider; HTTP clients panic without one. Safe to call repeatedly.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
