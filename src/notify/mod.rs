//! Notifications: accepting them durably, the queue, the delivery workers and the backends.
//!
//! A call or SMS is answered 200 only once its row is committed ([`Acceptor`], which groups
//! concurrent requests into one transaction). Workers ([`worker`]) claim due rows, hand them
//! to a [`Backend`] and record every attempt; a row whose worker died becomes due again when
//! its lease runs out.

mod acceptor;
pub mod backend;
pub mod events;
mod queue;
mod stdout;
mod webhook;
pub mod worker;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use acceptor::Acceptor;
pub use backend::{Backend, Backends, DeliveryError};
pub use events::{EventFilter, NotificationRecord};

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
    /// A filter given to `events list` is invalid.
    #[error("invalid filter: {0}")]
    Filter(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for NotifyError {
    fn from(e: sqlx::Error) -> Self {
        NotifyError::Store(StoreError::Query(e))
    }
}

/// Deletes notifications that finished before `before` (Unix ms); returns how many.
pub async fn purge_finished(store: &crate::store::Store, before: i64) -> Result<u64, NotifyError> {
    let mut total = 0;
    // In slices, so a first purge of a large table does not hold one long transaction.
    loop {
        let n = queue::purge_finished(store, before, 5_000).await?;
        total += n;
        if n < 5_000 {
            return Ok(total);
        }
    }
}

/// What a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A phone call (make_call).
    Call,
    /// A text message (send_sms).
    Sms,
}

impl Kind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Sms => "sms",
        }
    }

    /// Parses a stored kind name.
    pub fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "call" => Some(Kind::Call),
            "sms" => Some(Kind::Sms),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification as accepted from OnCall, before it is stored.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// Call or SMS.
    pub kind: Kind,
    /// Recipient's public id.
    pub user_id: String,
    /// Recipient's email.
    pub email: String,
    /// Recipient's display name.
    pub name: String,
    /// Recipient's phone number (E.164) at the time of acceptance.
    pub phone_number: Option<String>,
    /// The text to say or send.
    pub message: String,
}

/// A stored notification handed to a backend.
#[derive(Debug, Clone, Serialize)]
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
    /// This delivery's attempt number, from 1.
    pub attempt: i64,
    /// When OnCall's request was accepted (Unix ms).
    pub created_at: i64,
}
