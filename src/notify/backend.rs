//! The backend trait and the set of configured backends.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::email::Email;
use super::exec::Exec;
use super::mattermost::{Flavour, Mattermost};
use super::ntfy::Ntfy;
use super::sip::Sip;
use super::slack::Slack;
use super::stdout::Stdout;
use super::telegram::Telegram;
use super::twilio::Twilio;
use super::webhook::Webhook;
use super::{Notification, NotifyError};
use crate::config::{BackendSettings, PluginSettings, RouteSettings};
use crate::directory::{Role, Snapshot, User};

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

/// Every configured backend, the routes between them, and the default.
#[derive(Debug, Clone)]
pub struct Backends {
    all: BTreeMap<String, Arc<dyn Backend>>,
    default: Arc<dyn Backend>,
    routes: BTreeMap<String, Vec<RouteSettings>>,
}

/// One step of a notification's route.
#[derive(Debug, Clone)]
pub struct Step {
    /// The backend of this step.
    pub backend: Arc<dyn Backend>,
    /// Attempts before the next step takes over (`None`: `queue.max_attempts`).
    pub attempts: Option<u32>,
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
                    BackendSettings::Exec(e) => Arc::new(Exec::new(name, e)?),
                    BackendSettings::Email(e) => Arc::new(Email::new(name, e)?),
                    BackendSettings::Twilio(t) => Arc::new(Twilio::new(name, t, client.clone())?),
                    BackendSettings::Sip(t) => Arc::new(Sip::new(name, t, client.clone())?),
                    BackendSettings::Telegram(t) => {
                        Arc::new(Telegram::new(name, t, client.clone())?)
                    }
                    BackendSettings::Slack(t) => Arc::new(Slack::new(name, t, client.clone())?),
                    BackendSettings::Mattermost(t) => Arc::new(Mattermost::new(
                        name,
                        Flavour::Mattermost,
                        t,
                        client.clone(),
                    )?),
                    BackendSettings::Rocketchat(t) => Arc::new(Mattermost::new(
                        name,
                        Flavour::RocketChat,
                        t,
                        client.clone(),
                    )?),
                    BackendSettings::Ntfy(t) => Arc::new(Ntfy::new(name, t, client.clone())?),
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
        Ok(Backends {
            all,
            default,
            routes: plugin.routes.clone(),
        })
    }

    /// The backends to try for `n`, in order: the one chosen at acceptance (push and
    /// heartbeat settings), then the kind's matching routes, else the default backend.
    pub fn chain(&self, n: &Notification, directory: &Snapshot) -> Vec<Step> {
        fn add(steps: &mut Vec<Step>, backend: &Arc<dyn Backend>, attempts: Option<u32>) {
            if !steps.iter().any(|s| Arc::ptr_eq(&s.backend, backend)) {
                steps.push(Step {
                    backend: backend.clone(),
                    attempts,
                });
            }
        }
        let mut steps: Vec<Step> = Vec::new();
        if let Some(explicit) = n.route.as_deref().and_then(|name| self.all.get(name)) {
            add(&mut steps, explicit, None);
        }
        let user = directory.by_id(&n.user_id);
        if let Some(preferred) = user
            .and_then(|u| u.contacts.get("route"))
            .and_then(|name| self.all.get(name))
        {
            add(&mut steps, preferred, None);
        }
        for route in self.routes.get(&n.kind).into_iter().flatten() {
            if route_matches(route, n, user.map(|u| u.as_ref()))
                && let Some(backend) = self.all.get(&route.backend)
            {
                add(&mut steps, backend, route.attempts);
            }
        }
        if steps.is_empty() {
            add(&mut steps, &self.default, None);
        }
        steps
    }

    /// A backend by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.all.get(name).cloned()
    }
}

/// Settings that work but are unsafe, one sentence each (a shell running a templated script):
/// `serve` logs them at start-up, `check-config` prints them.
pub fn config_warnings(plugin: &PluginSettings) -> Vec<String> {
    plugin
        .backends
        .iter()
        .filter_map(|(name, settings)| match settings {
            BackendSettings::Exec(e) => super::exec::shell_warning(name, e),
            _ => None,
        })
        .collect()
}

fn route_matches(route: &RouteSettings, n: &Notification, user: Option<&User>) -> bool {
    if let Some(important) = route.important
        && important != n.important()
    {
        return false;
    }
    if !route.roles.is_empty() {
        let Some(user) = user else { return false };
        if !route
            .roles
            .iter()
            .any(|r| Role::parse(r).is_ok_and(|role| role == user.role))
        {
            return false;
        }
    }
    if !route.users.is_empty() {
        let key = n.email.to_lowercase();
        if !route
            .users
            .iter()
            .any(|u| u.trim().to_lowercase() == key || u.trim() == n.user_id)
        {
            return false;
        }
    }
    true
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
