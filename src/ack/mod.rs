//! The acknowledge loop: people act on an alert group from the channel that reached them (an
//! SMS reply, a key, a button or a link), and the relay does it through OnCall's public API.
//!
//! Pages are matched lazily, when the person acts: OnCall's webhooks tell which alert groups
//! paged whom (`registry`), and the texts the relay delivered to that person may carry an
//! alert group's key or number (`texts`). Only pages that went to the person who answers can
//! be acted on. Every answer is written to the events log with OnCall's reply.

pub mod acting;
pub mod api;
pub mod asterisk;
pub mod command;
pub mod edits;
mod incidents;
pub mod links;
mod matching;
mod on_call;
pub mod registry;
pub mod slack;
pub mod telegram;
mod texts;
pub mod webhook;

pub use acting::{ActionLinks, LinkPreview};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::directory::{Directory, DirectoryError};
use crate::store::{Store, now_ms};
use api::OncallApi;
use registry::ActionRecord;

/// How long a page stays answerable.
pub const PAGE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Errors of the acknowledge loop.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The configuration does not allow it.
    #[error("{0}")]
    Config(String),
    /// OnCall's API did not give a usable answer.
    #[error("OnCall: {0}")]
    Oncall(String),
    /// A webhook body that cannot be used.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    /// An action link that does nothing.
    #[error(transparent)]
    Link(#[from] links::LinkError),
    /// The directory failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
    /// The queue failed.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// The tracked schedules could not be read.
    #[error(transparent)]
    Schedules(#[from] crate::schedules::ScheduleError),
}

/// The acknowledge loop of one relay.
#[derive(Debug, Clone)]
pub struct Ack {
    store: Store,
    directory: Directory,
    api: Option<OncallApi>,
    /// Signing key and public root URL of one-click links, when `app.hostname` is set.
    links: Option<(links::LinkKey, String)>,
    /// For answers posted back to chat services.
    http: reqwest::Client,
    /// The tracked schedules, for "who is on call".
    schedules: Option<crate::schedules::Schedules>,
    /// Alert groups recently read for incident details.
    incidents: Arc<incidents::Cache>,
    /// How each chat backend's sent pages are edited once someone acted.
    editors: Arc<BTreeMap<String, edits::Editor>>,
}

impl Ack {
    /// The loop; without `api` (no `grafana.oncall.url` and token) replies are answered with
    /// the reason and nothing is done.
    pub fn new(store: Store, directory: Directory, api: Option<OncallApi>) -> Ack {
        Ack {
            store,
            directory,
            api,
            links: None,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            schedules: None,
            incidents: Arc::default(),
            editors: Arc::default(),
        }
    }

    /// Lets the chat messages of pages be edited through `editors` once someone acted.
    pub fn with_editors(mut self, editors: BTreeMap<String, edits::Editor>) -> Ack {
        self.editors = Arc::new(editors);
        self
    }

    /// Lets chat commands tell who is on call from the tracked `schedules`.
    pub fn with_schedules(mut self, schedules: crate::schedules::Schedules) -> Ack {
        self.schedules = Some(schedules);
        self
    }

    /// Who is on call now, one line per schedule (tracked calendars, then OnCall's own).
    pub async fn on_call_text(&self) -> Result<String, AckError> {
        Ok(crate::schedules::on_call::text(&self.on_call_now().await?))
    }

    /// Turns on one-click links under `public_root` (ends with `/`), signed with `key`.
    pub fn with_links(mut self, key: links::LinkKey, public_root: String) -> Ack {
        self.links = Some((key, public_root));
        self
    }

    /// Records what an OnCall webhook says: who was paged, or the group's new state.
    pub async fn webhook(&self, body: &Value) -> Result<webhook::Event, AckError> {
        let event = webhook::parse(body)?;
        registry::record(&self.store, &event.group, &event.paged, now_ms()).await?;
        if let Some(state) = event.group.state.as_deref().filter(|s| *s != "firing") {
            let by = event.group.state_by.as_deref().unwrap_or("OnCall");
            let stopped = self
                .stop_pending(&event.group.id, &format!("alert group {state} by {by}"))
                .await?;
            tracing::info!(alert_group = %event.group.id, state, stopped, "alert group left firing");
            // Chat services may be slow; OnCall's webhook need not wait for them.
            let (ack, id, state) = (self.clone(), event.group.id.clone(), state.to_string());
            let by = event.group.state_by.clone();
            tokio::spawn(async move {
                match ack.edit_messages(&id, &state, by.as_deref()).await {
                    Ok(0) => {}
                    Ok(edited) => tracing::info!(alert_group = %id, edited, "chat messages edited"),
                    Err(e) => {
                        tracing::warn!(alert_group = %id, error = %e, "cannot edit the chat messages")
                    }
                }
            });
        }
        Ok(event)
    }

    /// Stops the relay's own waiting notifications (retries, fallbacks, not yet sent) for the
    /// alert group `id`: those to people it paged whose text or push names it.
    async fn stop_pending(&self, id: &str, reason: &str) -> Result<u64, AckError> {
        let Some(group) = registry::group(&self.store, id).await? else {
            return Ok(0);
        };
        let since = now_ms() - PAGE_WINDOW.as_millis() as i64;
        let paged = registry::paged(&self.store, id).await?;
        let ids: Vec<i64> = texts::pending(&self.store, &paged, since)
            .await?
            .into_iter()
            .filter(|(_, sent)| texts::names(&group, sent))
            .map(|(n, _)| n)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(crate::notify::cancel_pending(&self.store, &ids, reason).await?)
    }

    async fn log(
        &self,
        channel: &str,
        email: &str,
        alert_group_id: Option<&str>,
        action: &str,
        outcome: &str,
        detail: Option<String>,
    ) {
        let record = ActionRecord {
            id: 0,
            channel: channel.to_string(),
            email: email.to_string(),
            alert_group_id: alert_group_id.map(str::to_string),
            action: action.to_string(),
            outcome: outcome.to_string(),
            detail,
            created_at: now_ms(),
        };
        tracing::info!(
            channel,
            alert_group = alert_group_id.unwrap_or(""),
            action,
            outcome,
            "page action"
        );
        if let Err(e) = registry::log_action(&self.store, &record).await {
            tracing::warn!(error = %e, "cannot record a page action");
        }
    }
}

/// `text` with its first letter in upper case.
pub(crate) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `sms:twilio` → "SMS reply".
fn channel_name(channel: &str) -> &'static str {
    match channel.split(':').next().unwrap_or("") {
        "sms" => "SMS reply",
        "voice" => "phone keys",
        "link" => "a one-click link",
        _ => "the relay",
    }
}
