//! The backends and their contract: a [`Backend`] delivers one notification and says whether
//! a failure is worth retrying; [`Backends`] holds the configured ones and picks the route.
//!
//! One file per backend (a folder where it has several parts); what the HTTP ones share is in
//! [`http`], templating in [`crate::notify::template`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

mod email;
mod exec;
pub(crate) mod http;
mod mattermost;
mod ntfy;
pub(crate) mod sip;
mod slack;
mod stdout;
mod telegram;
mod twilio;
mod webhook;

use email::Email;
use exec::Exec;
pub use http::MAX_RETRY_AFTER;
use mattermost::{Flavour, Mattermost};
use ntfy::Ntfy;
use sip::Sip;
use slack::Slack;
use stdout::Stdout;
use telegram::Telegram;
use twilio::Twilio;
use webhook::Webhook;

use super::texts::{Reworded, Texts};
use super::{Notification, NotifyError};
use crate::config::{BackendSettings, OnTimeout, PluginSettings, RouteSettings};
use crate::directory::{Role, User};

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
    /// Worth retrying, but the provider asked to wait at least `after` (429 and 503 with
    /// `Retry-After`, Telegram's `retry_after`).
    #[error("{message}")]
    Throttled {
        /// What went wrong.
        message: String,
        /// How long the provider asked to wait, capped at an hour.
        after: Duration,
    },
}

impl DeliveryError {
    /// The same outcome with its text changed by `f`.
    pub fn map_text(self, f: impl FnOnce(String) -> String) -> DeliveryError {
        match self {
            DeliveryError::Transient(m) => DeliveryError::Transient(f(m)),
            DeliveryError::Permanent(m) => DeliveryError::Permanent(f(m)),
            DeliveryError::Throttled { message, after } => DeliveryError::Throttled {
                message: f(message),
                after,
            },
        }
    }
}

/// What every backend has: its name and its time budget.
#[derive(Debug, Clone)]
pub struct Base {
    /// The name under `plugin.backends` (or `stdout`).
    pub name: String,
    /// Longest time one delivery may take.
    pub timeout: Duration,
}

impl Base {
    /// The base of the backend `name`.
    pub fn new(name: &str, timeout: Duration) -> Base {
        Base {
            name: name.to_string(),
            timeout,
        }
    }
}

/// Something that delivers notifications: an SMS gateway, a VoIP system, a chat API. This is
/// the object-safe face the registry and the workers use; a backend implements [`Deliver`].
pub trait Backend: Send + Sync + fmt::Debug {
    /// The backend's name and time budget.
    fn base(&self) -> &Base;

    /// The name under `plugin.backends` (or `stdout`).
    fn name(&self) -> &str {
        &self.base().name
    }

    /// Longest time one delivery may take.
    fn timeout(&self) -> Duration {
        self.base().timeout
    }

    /// Delivers one notification.
    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>>;

    /// Whether the provider will report if `n`, once delivered, was answered (a call with
    /// status callbacks): only then can a route step require an answer.
    fn reports_answer(&self, n: &Notification) -> bool;
}

/// What each backend implements: its [`Base`] and an `async fn` that delivers one
/// notification. Every `Deliver` is a [`Backend`].
pub trait Deliver: Send + Sync + fmt::Debug {
    /// The backend's name and time budget.
    fn base(&self) -> &Base;

    /// Delivers one notification.
    fn deliver(&self, n: &Notification) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// See [`Backend::reports_answer`]; most backends cannot tell.
    fn reports_answer(&self, _n: &Notification) -> bool {
        false
    }
}

impl<T: Deliver> Backend for T {
    fn base(&self) -> &Base {
        Deliver::base(self)
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(Deliver::deliver(self, n))
    }

    fn reports_answer(&self, n: &Notification) -> bool {
        Deliver::reports_answer(self, n)
    }
}

/// Every configured backend, the routes between them, and the default.
#[derive(Debug, Clone)]
pub struct Backends {
    all: BTreeMap<String, Arc<dyn Backend>>,
    default: Arc<dyn Backend>,
    routes: BTreeMap<String, Vec<RouteSettings>>,
    /// Makes a page's one-click action links (set once the service knows its signing key).
    links: std::sync::OnceLock<LinkMaker>,
    /// Finds the alert group a page is about (set once the acknowledge loop exists; shared,
    /// so the workers' copies see it).
    incidents: Incidents,
}

/// Where pages find their alert group; cheap to clone, and every clone sees the lookup once
/// it is set.
#[derive(Debug, Clone, Default)]
pub struct Incidents(Arc<std::sync::OnceLock<IncidentLookup>>);

impl Incidents {
    /// The alert group `n` is about, when incident details are on and it is found within
    /// [`INCIDENT_WAIT`].
    pub async fn of(&self, n: &Notification) -> Option<serde_json::Value> {
        let lookup = self.0.get()?;
        if !crate::notify::buttons::is_page(&n.kind) {
            return None;
        }
        tokio::time::timeout(INCIDENT_WAIT, (lookup.0)(n.clone()))
            .await
            .ok()
            .flatten()
    }
}

/// Finds the alert group a notification is about, as templates see it (`alert_group`).
#[derive(Clone)]
pub struct IncidentLookup(
    pub Arc<dyn Fn(Notification) -> BoxFuture<'static, Option<serde_json::Value>> + Send + Sync>,
);

impl fmt::Debug for IncidentLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IncidentLookup")
    }
}

/// Longest wait for a page's incident details: the page goes out without them after it.
const INCIDENT_WAIT: Duration = Duration::from_secs(2);

/// Makes the one-click action links of a notification id.
#[derive(Clone)]
pub struct LinkMaker(pub Arc<dyn Fn(i64) -> Option<serde_json::Value> + Send + Sync>);

impl fmt::Debug for LinkMaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkMaker")
    }
}

/// One step of a notification's route.
#[derive(Debug, Clone)]
pub struct Step {
    /// The backend of this step.
    pub backend: Arc<dyn Backend>,
    /// Attempts before the next step takes over (`None`: `queue.max_attempts`).
    pub attempts: Option<u32>,
    /// Set when a delivered call counts only once answered: how long to wait for the status.
    pub answer_wait: Option<Duration>,
    /// Whether a timeout moves on to the next step at once.
    pub on_timeout: OnTimeout,
}

impl Backends {
    /// Sets how pages get their one-click action links (once; later calls are ignored).
    pub fn set_link_maker(&self, maker: LinkMaker) {
        let _ = self.links.set(maker);
    }

    /// Sets how pages find their alert group (once; later calls are ignored).
    pub fn set_incident_lookup(&self, lookup: IncidentLookup) {
        let _ = self.incidents.0.set(lookup);
    }

    /// Where pages find their alert group.
    pub fn incidents(&self) -> Incidents {
        self.incidents.clone()
    }

    /// The one-click action links of `n`, when it is a page and links are on.
    pub fn links_for(&self, n: &Notification) -> Option<serde_json::Value> {
        let maker = self.links.get()?;
        crate::notify::buttons::is_page(&n.kind)
            .then(|| (maker.0)(n.id))
            .flatten()
    }

    /// Builds the backends named under `plugin.backends`; `stdout` always exists. Nothing
    /// receives providers' status callbacks here (for commands that do not serve HTTP).
    pub fn from_settings(plugin: &PluginSettings) -> Result<Backends, NotifyError> {
        Backends::with_hooks(plugin, None)
    }

    /// Builds the backends; those that can report back (Twilio's call status) are told to
    /// call `hooks`, the public root of this service's hook routes (`.../hooks`).
    pub fn with_hooks(
        plugin: &PluginSettings,
        hooks: Option<&str>,
    ) -> Result<Backends, NotifyError> {
        let mut all: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
        all.insert("stdout".into(), Arc::new(Stdout::new("stdout")));
        if !plugin.backends.is_empty() {
            let client = http::client()?;
            for (name, settings) in &plugin.backends {
                let cx = Setup {
                    name,
                    client: client.clone(),
                    hooks: hooks.map(str::to_string),
                };
                let backend: Arc<dyn Backend> = match settings {
                    BackendSettings::Stdout {} => Arc::new(Stdout::new(name)),
                    BackendSettings::Webhook(s) => Arc::new(Webhook::new(&cx, s)?),
                    BackendSettings::Exec(s) => Arc::new(Exec::new(&cx, s)?),
                    BackendSettings::Email(s) => Arc::new(Email::new(&cx, s)?),
                    BackendSettings::Twilio(s) => Arc::new(Twilio::new(&cx, s)?),
                    BackendSettings::Sip(s) => Arc::new(Sip::new(&cx, s)?),
                    BackendSettings::Telegram(s) => Arc::new(Telegram::new(&cx, s)?),
                    BackendSettings::Slack(s) => Arc::new(Slack::new(&cx, s)?),
                    BackendSettings::Mattermost(s) => {
                        Arc::new(Mattermost::new(&cx, Flavour::Mattermost, s)?)
                    }
                    BackendSettings::Rocketchat(s) => {
                        Arc::new(Mattermost::new(&cx, Flavour::RocketChat, s)?)
                    }
                    BackendSettings::Ntfy(s) => Arc::new(Ntfy::new(&cx, s)?),
                };
                all.insert(name.clone(), backend);
            }
        }
        for (name, settings) in &plugin.messages {
            let inner = all
                .get(name)
                .cloned()
                .ok_or_else(|| NotifyError::BackendConfig {
                    name: name.clone(),
                    message: "`plugin.messages` names no backend under `plugin.backends`".into(),
                })?;
            let texts =
                Texts::new(name, plugin.backends.get(name), settings).map_err(|message| {
                    NotifyError::BackendConfig {
                        name: name.clone(),
                        message: format!("messages: {message}"),
                    }
                })?;
            all.insert(name.clone(), Arc::new(Reworded::new(inner, texts)));
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
            links: std::sync::OnceLock::new(),
            incidents: Incidents::default(),
        })
    }

    /// The backends to try for `n`, in order: the one chosen at acceptance (push and
    /// heartbeat settings), then the kind's matching routes, else the default backend.
    /// `user` is the directory entry of `n`'s user, when there is one.
    pub fn chain(&self, n: &Notification, user: Option<&User>) -> Vec<Step> {
        fn add(steps: &mut Vec<Step>, backend: &Arc<dyn Backend>, route: Option<&RouteSettings>) {
            if !steps.iter().any(|s| Arc::ptr_eq(&s.backend, backend)) {
                steps.push(Step {
                    backend: backend.clone(),
                    attempts: route.and_then(|r| r.attempts),
                    answer_wait: route.and_then(RouteSettings::answer_wait),
                    on_timeout: route.and_then(|r| r.on_timeout).unwrap_or_default(),
                });
            }
        }
        let mut steps: Vec<Step> = Vec::new();
        if let Some(explicit) = n.route.as_deref().and_then(|name| self.all.get(name)) {
            add(&mut steps, explicit, None);
        }
        if let Some(preferred) = user
            .and_then(|u| u.contacts.get("route"))
            .and_then(|name| self.all.get(name))
        {
            add(&mut steps, preferred, None);
        }
        for route in self.routes.get(&n.kind).into_iter().flatten() {
            if route_matches(route, n, user)
                && let Some(backend) = self.all.get(&route.backend)
            {
                add(&mut steps, backend, Some(route));
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
    let shell = plugin
        .backends
        .iter()
        .filter_map(|(name, settings)| match settings {
            BackendSettings::Exec(e) => exec::shell_warning(name, e),
            _ => None,
        });
    shell.chain(unworded_templates(plugin)).collect()
}

/// Backends that word their texts (`plugin.messages`) but whose own template prints only
/// `message`, OnCall's text, so the wording would never be sent.
fn unworded_templates(plugin: &PluginSettings) -> impl Iterator<Item = String> + '_ {
    plugin.messages.keys().filter_map(|name| {
        let templates: Vec<&str> = match plugin.backends.get(name)? {
            BackendSettings::Webhook(w) => w.body.iter().map(String::as_str).chain([w.url.as_str()]).collect(),
            BackendSettings::Exec(e) => e.args.iter().map(String::as_str).collect(),
            _ => return None,
        };
        let prints = |word: &str| templates.iter().any(|t| t.contains(word));
        (prints("message") && !prints("text")).then(|| {
            format!("backend `{name}`: `plugin.messages.{name}` words the text, but its template prints `message` (OnCall's text as it came); print `text` to send the wording")
        })
    })
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

/// What building a backend needs besides its settings.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// The name under `plugin.backends`.
    pub name: &'a str,
    /// The HTTP client all HTTP backends share.
    pub client: reqwest::Client,
    /// Public root of the hook routes (`https://relay.example.com/hooks`), when configured.
    pub hooks: Option<String>,
}

impl Setup<'_> {
    /// A closure turning a message into this backend's configuration error.
    pub fn error(&self) -> impl Fn(String) -> NotifyError + '_ {
        move |message| NotifyError::BackendConfig {
            name: self.name.to_string(),
            message,
        }
    }

    /// The backend's [`Base`] with this time budget.
    pub fn base(&self, timeout: Duration) -> Base {
        Base::new(self.name, timeout)
    }
}

/// Runs `delivery` within `timeout`; running out is transient, described by `late`.
pub(crate) async fn within(
    timeout: Duration,
    delivery: impl Future<Output = Result<(), DeliveryError>>,
    late: impl FnOnce() -> String,
) -> Result<(), DeliveryError> {
    tokio::time::timeout(timeout, delivery)
        .await
        .unwrap_or_else(|_| Err(DeliveryError::Transient(late())))
}

/// Sends the parts of `n`'s message in order with `send`, stopping at the first failure,
/// whose text then names the part (`part 2/3: ...`) when there are several. Each part that
/// goes out is recorded, and parts an earlier attempt of the same backend recorded for the
/// same split are not sent again.
pub(crate) async fn send_parts<'p, F, Fut>(
    n: &Notification,
    backend: &str,
    parts: &'p [String],
    mut send: F,
) -> Result<(), DeliveryError>
where
    F: FnMut(&'p str) -> Fut,
    Fut: Future<Output = Result<(), DeliveryError>>,
{
    let count = parts.len();
    if count == 1 {
        return match parts.first() {
            Some(part) => send(part).await,
            None => Ok(()),
        };
    }
    let digest = super::parts::digest(backend, parts);
    let skip = super::parts::already_sent(n.parts_sent, n.parts_digest.as_deref(), &digest, count);
    if skip > 0 {
        tracing::info!(
            id = n.id,
            backend,
            sent = skip,
            count,
            "resuming after the parts already sent"
        );
    }
    for (i, part) in parts.iter().enumerate().skip(skip) {
        send(part)
            .await
            .map_err(|e| e.map_text(|m| format!("part {}/{count}: {m}", i + 1)))?;
        n.parts_log.record(&digest, i + 1).await;
    }
    Ok(())
}

/// A setting's maximum of SMS segments, checked: absent, or at least 1.
pub(crate) fn max_segments(
    cx: &Setup<'_>,
    value: Option<usize>,
) -> Result<Option<usize>, NotifyError> {
    match value {
        Some(0) => Err(cx.error()(
            "`max_segments` must be at least 1 (SMS segments per message)".into(),
        )),
        other => Ok(other),
    }
}

/// `n` with its message shortened to `max_segments` SMS segments, for a backend that feeds
/// an SMS gateway; `n` itself without a maximum or when the message fits.
pub(crate) fn fit_sms(n: &Notification, max_segments: Option<usize>) -> Cow<'_, Notification> {
    let Some(max) = max_segments else {
        return Cow::Borrowed(n);
    };
    let fitted = super::sms::fit(&n.message, max);
    if fitted == n.message {
        return Cow::Borrowed(n);
    }
    let m = super::sms::measure(&fitted);
    tracing::info!(id = n.id, segments = m.segments, encoding = %m.encoding, max, "SMS text shortened to fit its segments");
    Cow::Owned(Notification {
        message: fitted,
        ..n.clone()
    })
}

/// The first non-empty value among the user's contacts under `keys`, trimmed.
pub(crate) fn contact<'a>(n: &'a Notification, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .filter_map(|k| n.contacts.get(*k))
        .map(|c| c.trim())
        .find(|c| !c.is_empty())
}

/// The id a receiver can use to drop a repeat of `n`: the same on every retry of it, on every
/// backend of its route, and after a crash; different for every accepted notification, also
/// across a database that was reset (the acceptance time is part of it).
pub fn idempotency_key(n: &Notification) -> String {
    format!("oncall-relay-{}-{}", n.id, n.created_at)
}

/// Where `part` stands in `parts` (compared by address: the same text may repeat).
pub(crate) fn part_index(parts: &[String], part: &str) -> usize {
    parts
        .iter()
        .position(|p| std::ptr::eq(p.as_str(), part))
        .unwrap_or(0)
}

/// The key of part `index` (from 0) of `count` parts: the plain key when there is one part.
pub(crate) fn part_key(key: &str, index: usize, count: usize) -> String {
    if count <= 1 {
        key.to_string()
    } else {
        format!("{key}-part{}of{count}", index + 1)
    }
}

/// A trimmed, non-empty optional setting.
pub(crate) fn present(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Setup;
    use crate::notify::Notification;

    /// What building the backend `name` needs, with a fresh HTTP client.
    pub(crate) fn setup(name: &str) -> Setup<'_> {
        crate::install_crypto_provider();
        Setup {
            name,
            client: reqwest::Client::new(),
            hooks: None,
        }
    }

    /// A notification of `kind` to nobody in particular; tests change the fields they need.
    pub(crate) fn notification(kind: &str) -> Notification {
        Notification {
            id: 1,
            kind: kind.into(),
            user_id: String::new(),
            email: String::new(),
            name: String::new(),
            phone_number: None,
            message: String::new(),
            payload: None,
            route: None,
            attempt: 1,
            stage: 0,
            stage_attempts: 1,
            contacts: Default::default(),
            created_at: 0,
            parts_sent: 0,
            parts_digest: None,
            parts_log: Default::default(),
            answer: None,
            answer_deadline: None,
            links: None,
            alert_group: None,
            reader: Default::default(),
        }
    }
}
