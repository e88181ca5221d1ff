//! The backends and their contract: a [`Backend`] delivers one notification and says whether
//! a failure is worth retrying; [`Backends`] (in `routes.rs`) holds the configured ones and
//! picks the route.
//!
//! One file per backend (a folder where it has several parts); what the HTTP ones share is in
//! [`http`], templating in [`crate::notify::template`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

mod email;
mod exec;
pub(crate) mod http;
mod mattermost;
mod ntfy;
mod routes;
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
pub use routes::{Backends, IncidentLookup, Incidents, LinkMaker, Step, config_warnings};
use sip::Sip;
use slack::Slack;
use stdout::Stdout;
use telegram::Telegram;
use twilio::Twilio;
use webhook::Webhook;

use super::{Notification, NotifyError};

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
