//! Notifications: accepting them durably, the queue, the delivery workers and the backends.
//!
//! A call or SMS is answered 200 only once its row is committed ([`Acceptor`], which groups
//! concurrent requests into one transaction). Workers ([`worker`]) claim due rows, hand them
//! to a [`Backend`] and record every attempt; a row whose worker died becomes due again when
//! its lease runs out.
//!
//! The backends live in [`backends`], one file (or folder) each behind the [`Backend`]
//! contract; [`template`] is the templating they share, [`shape`] fits text to a channel.

mod acceptor;
pub mod answer;
pub mod backends;
pub mod breaker;
pub mod buttons;
pub mod chat_messages;
mod dispatch;
pub mod events;
mod gate;
pub mod handoff;
pub mod oncall_text;
pub mod parts;
mod queue;
pub mod refusals;
pub mod shape;
pub mod sms;
pub(crate) mod template;
pub mod texts;
pub mod worker;

/// The contract's former home, kept so that `notify::backend::...` paths keep working.
pub use backends as backend;
/// The shared HTTP helpers' former home (`notify::http::error_chain`).
pub(crate) use backends::http;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use acceptor::Acceptor;
pub use backends::{Backend, Backends, DeliveryError, Step};
pub use events::{EventFilter, NotificationRecord};
pub use gate::{Admission, Gate};
pub use refusals::{Reason, Refusal};

use crate::store::StoreError;

/// Errors of the notification pipeline.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The notification could not be committed in time (database down or overloaded).
    #[error("notification not accepted: {0}")]
    Unavailable(String),
    /// A backend's configuration is wrong.
    #[error("backend `{name}`: {message}")]
    BackendConfig {
        /// The backend's name under `plugin.backends`.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A cap of `limits.*` is reached.
    #[error("limit exceeded")]
    LimitExceeded,
    /// A filter given to `events list` is invalid.
    #[error("invalid filter: {0}")]
    Filter(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Only reads reach the directory from here: a failure is the database's.
impl From<crate::directory::DirectoryError> for NotifyError {
    fn from(e: crate::directory::DirectoryError) -> Self {
        match e {
            crate::directory::DirectoryError::Store(e) => NotifyError::Store(e),
            other => NotifyError::Unavailable(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for NotifyError {
    fn from(e: sqlx::Error) -> Self {
        NotifyError::Store(StoreError::Query(e))
    }
}

/// Enqueues `items` inside the caller's transaction, so that they are queued exactly when
/// the caller's own change commits.
pub async fn enqueue_in(
    conn: &mut sqlx::AnyConnection,
    items: &[NewNotification],
    now: i64,
) -> Result<(), NotifyError> {
    if items.is_empty() {
        return Ok(());
    }
    queue::insert_rows(conn, items, now).await?;
    Ok(())
}

/// Deletes notifications that finished before `before` (Unix ms); returns how many.
pub async fn purge_finished(store: &crate::store::Store, before: i64) -> Result<u64, NotifyError> {
    let mut total = 0;
    // In small slices with a pause between them, so that a first purge of a large table
    // holds no long transaction and writers (SQLite has one at a time) get their turn.
    const SLICE: u64 = 1_000;
    loop {
        let n = queue::purge_finished(store, before, SLICE as i64).await?;
        total += n;
        if n < SLICE {
            return Ok(total);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Stops the notifications `ids` that are still waiting (for their first attempt, a retry or a
/// fallback) and records `reason`; one being delivered right now is left to finish. Returns how
/// many were stopped.
pub async fn cancel_pending(
    store: &crate::store::Store,
    ids: &[i64],
    reason: &str,
) -> Result<u64, NotifyError> {
    let mut stopped = 0;
    let now = crate::store::now_ms();
    for id in ids {
        let _guard = store.write_guard().await;
        stopped += sqlx::query(
            "UPDATE notifications SET status = 'cancelled', due_at = NULL, claim = NULL, \
             last_error = $1, finished_at = $2, updated_at = $2 \
             WHERE id = $3 AND status IN ('queued', 'awaiting_answer')",
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(store.pool())
        .await?
        .rows_affected();
    }
    Ok(stopped)
}

/// Queues a failed notification `id` again from the first step of its route, as if just
/// accepted; answers whether it was failed (anything else is left alone).
pub async fn retry_failed(store: &crate::store::Store, id: i64) -> Result<bool, NotifyError> {
    let now = crate::store::now_ms();
    let _guard = store.write_guard().await;
    let changed = sqlx::query(
        "UPDATE notifications SET status = 'queued', due_at = $1, stage = 0, stage_attempts = 0, \
         claim = NULL, finished_at = NULL, updated_at = $1 WHERE id = $2 AND status = 'failed'",
    )
    .bind(now)
    .bind(id)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// What a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A phone call (make_call).
    Call,
    /// A text message (send_sms).
    Sms,
    /// A mobile push (fcm_relay).
    Push,
    /// An alert about OnCall's own heartbeat stopping or resuming.
    Heartbeat,
    /// A tracked schedule's on-duty person changed (see `crate::schedules`).
    Schedule,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Call,
        Kind::Sms,
        Kind::Push,
        Kind::Heartbeat,
        Kind::Schedule,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Sms => "sms",
            Kind::Push => "push",
            Kind::Heartbeat => "heartbeat",
            Kind::Schedule => "schedule",
        }
    }

    /// Parses a stored kind name.
    pub fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "call" => Some(Kind::Call),
            "sms" => Some(Kind::Sms),
            "push" => Some(Kind::Push),
            "heartbeat" => Some(Kind::Heartbeat),
            "schedule" => Some(Kind::Schedule),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification as accepted from OnCall, before it is stored: what is sent, to whom, and
/// how it relates to earlier ones.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// Call or SMS.
    pub kind: Kind,
    /// The text to say or send.
    pub message: String,
    /// Kind-specific details (a push's title, data and device token).
    pub payload: Option<serde_json::Value>,
    /// The backend to use instead of the default for the kind.
    pub route: Option<String>,
    /// Recipient's public id.
    pub user_id: String,
    /// Recipient's email.
    pub email: String,
    /// Recipient's display name.
    pub name: String,
    /// Recipient's phone number (E.164) at the time of acceptance.
    pub phone_number: Option<String>,
    /// Key of user, kind and message when deduplication is on.
    pub dedup_key: Option<String>,
    /// Set when this repeats an earlier notification: recorded, never delivered.
    pub duplicate_of: Option<i64>,
}

impl NewNotification {
    /// A notification for `user` with no details and the default route.
    pub fn to_user(kind: Kind, user: &crate::directory::User, message: String) -> NewNotification {
        NewNotification {
            user_id: user.id.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            phone_number: user.phone_number.clone(),
            ..NewNotification::to_nobody(kind, message)
        }
    }

    /// A notification for no one in the directory (a route's backend decides who hears it).
    pub fn to_nobody(kind: Kind, message: String) -> NewNotification {
        NewNotification {
            kind,
            user_id: String::new(),
            email: String::new(),
            name: String::new(),
            phone_number: None,
            message,
            payload: None,
            route: None,
            dedup_key: None,
            duplicate_of: None,
        }
    }
}

/// A stored notification handed to a backend, read from a claimed row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Notification {
    /// Queue id, stable across retries (receivers can deduplicate on it).
    pub id: i64,
    /// Call or SMS (kept as text so that later kinds pass through).
    pub kind: String,
    /// Recipient's public id.
    pub user_id: String,
    /// Recipient's email.
    pub email: String,
    /// Recipient's display name.
    pub name: String,
    /// Recipient's phone number (E.164).
    pub phone_number: Option<String>,
    /// The text to say or send.
    pub message: String,
    /// Kind-specific details (a push's title, data and device token).
    #[sqlx(try_from = "queue::PayloadText")]
    pub payload: Option<serde_json::Value>,
    /// The backend chosen at acceptance, if not the default.
    pub route: Option<String>,
    /// This delivery's attempt number, from 1.
    #[sqlx(rename = "attempts")]
    pub attempt: i64,
    /// Step of the route being tried (0 = the first backend).
    #[serde(skip)]
    pub stage: i64,
    /// Attempts on the current step, this one included.
    #[serde(skip)]
    pub stage_attempts: i64,
    /// The recipient's backend addresses from the directory (`telegram`, `email`, ...).
    #[sqlx(skip)]
    pub contacts: std::collections::BTreeMap<String, String>,
    /// One-click action links for this page (`acknowledge`, `resolve`, `silence`), offered to
    /// templates as `links`; `None` unless `app.hostname` is set.
    #[sqlx(skip)]
    #[serde(skip)]
    pub links: Option<serde_json::Value>,
    /// The alert group this page is about, as OnCall's API describes it, offered to
    /// templates as `alert_group`; `None` unless `grafana.oncall.incident_details` is on and
    /// the page is linked to an alert group.
    #[sqlx(skip)]
    #[serde(skip)]
    pub alert_group: Option<serde_json::Value>,
    /// When OnCall's request was accepted (Unix ms).
    pub created_at: i64,
    /// Parts of a split message that earlier attempts sent (see [`parts`]).
    #[serde(skip)]
    pub parts_sent: i64,
    /// Which split of which backend `parts_sent` counts.
    #[serde(skip)]
    pub parts_digest: Option<String>,
    /// Where this attempt records the parts it sends.
    #[serde(skip)]
    #[sqlx(skip)]
    pub parts_log: parts::PartsLog,
    /// Whether the call was answered, as far as the provider told (see [`answer`]).
    #[serde(skip)]
    pub answer: Option<String>,
    /// Set while a step waits for the call's answer: this claim settles the step instead of
    /// delivering again.
    #[serde(skip)]
    pub answer_deadline: Option<i64>,
    /// Who reads it (language, time zone) and OnCall's text once a backend reworded it.
    #[sqlx(skip)]
    #[serde(skip)]
    pub reader: Reader,
}

/// What wording a notification needs besides the notification itself.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    /// The recipient's language tag, from the directory.
    pub language: Option<String>,
    /// The recipient's IANA time zone, from the directory.
    pub timezone: Option<String>,
    /// OnCall's text, once `message` holds the backend's wording of it.
    pub original: Option<String>,
}

impl Reader {
    /// The language and time zone of `user`.
    pub fn of(user: &crate::directory::User) -> Reader {
        Reader {
            language: user.language.clone(),
            timezone: Some(user.timezone.clone()),
            original: None,
        }
    }
}

impl Notification {
    /// A short title: a push's own, else the message's first line.
    pub fn title(&self) -> &str {
        self.payload
            .as_ref()
            .and_then(|p| p.get("title"))
            .and_then(|t| t.as_str())
            .unwrap_or_else(|| self.message.lines().next().unwrap_or(""))
    }

    /// Whether a backend should use its loudest channel: calls, heartbeat alerts and
    /// critical pushes.
    pub fn important(&self) -> bool {
        match self.kind.as_str() {
            "call" | "heartbeat" => true,
            _ => self
                .payload
                .as_ref()
                .and_then(|p| p.get("important"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }
    }
}
