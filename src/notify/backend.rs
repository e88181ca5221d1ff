//! The backend trait and the set of configured backends.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::stdout::Stdout;
use super::webhook::Webhook;
use super::{Notification, NotifyError};
use crate::config::{BackendSettings, PluginSettings};

/// A boxed future, so that backends can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later (timeouts, 5xx, connection errors).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (4xx, a bad template).
    #[error("{0}")]
    Permanent(String),
}

/// Something that delivers notifications: an SMS gateway, a VoIP system, a chat API.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The name under `plugin.backends` (or `stdout`).
    fn name(&self) -> &str;

    /// Longest time one delivery may take.
    fn timeout(&self) -> Duration;

    /// Delivers one notification.
    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// Every configured backend, and the one that delivers calls and SMS.
#[derive(Debug, Clone)]
pub struct Backends {
    all: BTreeMap<String, Arc<dyn Backend>>,
    default: Arc<dyn Backend>,
}

impl Backends {
    /// Builds the backends named under `plugin.backends`; `stdout` always exists.
    pub fn from_settings(plugin: &PluginSettings) -> Result<Backends, NotifyError> {
        let mut all: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
        all.insert("stdout".into(), Arc::new(Stdout::new("stdout")));
        if !plugin.backends.is_empty() {
            let client = http_client()?;
            for (name, settings) in &plugin.backends {
                let backend: Arc<dyn Backend> = match settings {
                    BackendSettings::Stdout {} => Arc::new(Stdout::new(name)),
                    BackendSettings::Webhook(w) => Arc::new(Webhook::new(name, w, client.clone())?),
                };
                all.insert(name.clone(), backend);
            }
        }
        let default =
            all.get(&plugin.backend)
                .cloned()
                .ok_or_else(|| NotifyError::BackendConfig {
                    name: plugin.backend.clone(),
                    message: "no such backend under `plugin.backends`".into(),
                })?;
        Ok(Backends { all, default })
    }

    /// The backend that delivers `n`: the one chosen at acceptance, else the default.
    pub fn for_notification(&self, n: &Notification) -> Arc<dyn Backend> {
        n.route
            .as_deref()
            .and_then(|name| self.all.get(name))
            .unwrap_or(&self.default)
            .clone()
    }

    /// A backend by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.all.get(name).cloned()
    }
}

/// The HTTP client shared by HTTP backends: rustls, no redirects (a redirected POST loses
/// its body), per-request timeouts set by each backend.
fn http_client() -> Result<reqwest::Client, NotifyError> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("oncall-relay/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| NotifyError::BackendConfig {
            name: "http".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })
}
