//! The acknowledge loop: people act on an alert group from the channel that reached them (an
//! SMS reply today), and the relay does it through OnCall's public API.
//!
//! Pages are matched lazily, when the person acts: OnCall's webhooks tell which alert groups
//! paged whom (`registry`), and the texts the relay delivered to that person may carry an
//! alert group's key or number (`texts`). Only pages that went to the person who answers can
//! be acted on. Every answer is written to the events log with OnCall's reply.

pub mod api;
pub mod command;
pub mod links;
pub mod registry;
mod texts;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::directory::{
    Directory, DirectoryError, ONCALL_TOKEN_CONTACT, User, email_key, parse_phone,
};
use crate::store::{Store, now_ms};
use api::{Answer, OncallApi};
use command::{Action, CommandError};
use registry::{ActionRecord, GroupUpdate};

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
}

/// The acknowledge loop of one relay.
#[derive(Debug, Clone)]
pub struct Ack {
    store: Store,
    directory: Directory,
    api: Option<OncallApi>,
    /// Signing key and public root URL of one-click links, when `app.hostname` is set.
    links: Option<(links::LinkKey, String)>,
}

/// One-click links for a delivered notification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActionLinks {
    /// Acknowledges the alert group the notification was about.
    pub acknowledge: String,
    /// Resolves it.
    pub resolve: String,
    /// Silences it for 30 minutes.
    pub silence: String,
}

/// What an action link would do, for its confirmation page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPreview {
    /// The action as a button says it, e.g. "Acknowledge".
    pub action: String,
    /// The notification's text.
    pub message: String,
}

/// A page the person who answers could mean.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    id: String,
    title: String,
    state: String,
    number: Option<u64>,
    seen_at: i64,
}

impl Candidate {
    fn label(&self) -> String {
        match self.number {
            Some(n) => format!("#{n}"),
            None if !self.title.is_empty() => {
                let short: String = self.title.chars().take(40).collect();
                format!("\"{short}\"")
            }
            None => self.id.clone(),
        }
    }
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
        }
    }

    /// Turns on one-click links under `public_root` (ends with `/`), signed with `key`.
    pub fn with_links(mut self, key: links::LinkKey, public_root: String) -> Ack {
        self.links = Some((key, public_root));
        self
    }

    /// The one-click links for notification `id`, when links are on.
    pub fn action_links(&self, id: i64) -> Option<ActionLinks> {
        let (key, root) = self.links.as_ref()?;
        let now = now_ms();
        let url = |action| format!("{root}act/{}", key.sign(id, action, now));
        Some(ActionLinks {
            acknowledge: url(Action::Acknowledge),
            resolve: url(Action::Resolve),
            silence: url(Action::Silence(command::DEFAULT_SILENCE_MINUTES)),
        })
    }

    fn link_claim(&self, token: &str) -> Result<links::Claim, AckError> {
        let (key, _) = self
            .links
            .as_ref()
            .ok_or(AckError::Link(links::LinkError::Invalid))?;
        Ok(key.verify(token, now_ms())?)
    }

    /// What the link `token` would do, without doing it.
    pub async fn preview_link(&self, token: &str) -> Result<LinkPreview, AckError> {
        let claim = self.link_claim(token)?;
        let message =
            sqlx::query_scalar::<_, String>("SELECT message FROM notifications WHERE id = $1")
                .bind(claim.notification)
                .fetch_optional(self.store.pool())
                .await?
                .ok_or(AckError::Link(links::LinkError::Invalid))?;
        Ok(LinkPreview {
            action: claim.action.button_text(),
            message,
        })
    }

    /// Does what the link `token` says, once; returns the text for the person.
    pub async fn follow_link(&self, token: &str) -> Result<String, AckError> {
        let claim = self.link_claim(token)?;
        links::use_once(&self.store, &claim, now_ms()).await?;
        let (email, sent) = texts::by_id(&self.store, claim.notification)
            .await?
            .ok_or(AckError::Link(links::LinkError::Invalid))?;
        let user = self
            .directory
            .snapshot()
            .by_email(&email)
            .cloned()
            .filter(|u| u.active);
        let Some(user) = user else {
            self.log(
                "link",
                &email,
                None,
                claim.action.api_name(),
                "unknown-sender",
                None,
            )
            .await;
            return Ok("This link's recipient is no longer in the directory.".into());
        };
        let candidates = self.candidates(&user).await?;
        let target = sent
            .keys
            .iter()
            .find_map(|k| candidates.iter().find(|c| &c.id == k))
            .or_else(|| {
                sent.number
                    .and_then(|n| candidates.iter().find(|c| c.number == Some(n)))
            })
            .or_else(|| {
                sent.title
                    .as_deref()
                    .and_then(|t| candidates.iter().find(|c| texts::same_title(&c.title, t)))
            });
        let Some(target) = target else {
            self.log(
                "link",
                &user.email,
                None,
                claim.action.api_name(),
                "unmatched",
                None,
            )
            .await;
            return Ok("The alert this link was for could not be found.".into());
        };
        Ok(self.act("link", &user, target, claim.action).await)
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
            .filter(|(_, sent)| {
                sent.keys.iter().any(|k| k == id)
                    || sent
                        .title
                        .as_deref()
                        .is_some_and(|t| texts::same_title(&group.title, t))
            })
            .map(|(n, _)| n)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(crate::notify::cancel_pending(&self.store, &ids, reason).await?)
    }

    /// Handles a text reply from `from` (a phone number) that came through `channel`; returns
    /// the sender and the answer to send back, or `None` for a sender who is not in the
    /// directory (strangers get no answer, so the number cannot be probed).
    pub async fn sms_reply(
        &self,
        channel: &str,
        from: &str,
        text: &str,
    ) -> Result<Option<(Arc<User>, String)>, AckError> {
        let user = match parse_phone(from) {
            Ok(phone) => self.directory.find_by_phone(&phone).await?,
            Err(_) => None,
        };
        let Some(user) = user.filter(|u| u.active) else {
            self.log(channel, "", None, "reply", "unknown-sender", None)
                .await;
            return Ok(None);
        };
        let command = match command::parse(text) {
            Ok(c) => c,
            Err(e) => {
                let shown: String = text.chars().take(40).collect();
                self.log(channel, &user.email, None, &shown, "not-understood", None)
                    .await;
                let help = match e {
                    CommandError::BadDuration => format!("{e}. {}", command::HELP),
                    CommandError::Unknown => command::HELP.to_string(),
                };
                return Ok(Some((user, help)));
            }
        };
        let candidates = self.candidates(&user).await?;
        let target = match command.number {
            Some(n) => candidates.iter().find(|c| c.number == Some(n)),
            None => candidates.iter().find(|c| c.state == "firing"),
        };
        let Some(target) = target else {
            let what = command.number.map(|n| format!("#{n}"));
            self.log(
                channel,
                &user.email,
                None,
                command.action.api_name(),
                "unmatched",
                what.clone(),
            )
            .await;
            let open: Vec<String> = candidates
                .iter()
                .filter(|c| c.state == "firing")
                .take(3)
                .map(Candidate::label)
                .collect();
            let answer = match (what, open.is_empty()) {
                (Some(n), true) => format!("No open alert {n} for you."),
                (Some(n), false) => {
                    format!("No open alert {n} for you. Open: {}.", open.join(", "))
                }
                (None, _) => "No open alert for you.".to_string(),
            };
            return Ok(Some((user, answer)));
        };
        let answer = self.act(channel, &user, target, command.action).await;
        Ok(Some((user, answer)))
    }

    async fn act(&self, channel: &str, user: &User, target: &Candidate, action: Action) -> String {
        let label = target.label();
        let Some(api) = &self.api else {
            self.log(
                channel,
                &user.email,
                Some(&target.id),
                action.api_name(),
                "failed",
                Some("OnCall API not configured".into()),
            )
            .await;
            return format!(
                "Cannot {} {label}: replies are not set up on this relay.",
                action.api_name()
            );
        };
        let own_token = user
            .contacts
            .get(ONCALL_TOKEN_CONTACT)
            .map(String::as_str)
            .filter(|t| !t.trim().is_empty());
        let answer = api.act(&target.id, action, own_token).await;
        let detail = match &answer {
            Answer::Refused(d) | Answer::Failed(d) => Some(d.clone()),
            Answer::Throttled(d) => Some(format!("retry in {} s", d.as_secs())),
            _ => None,
        };
        self.log(
            channel,
            &user.email,
            Some(&target.id),
            action.api_name(),
            answer.outcome(),
            detail,
        )
        .await;
        match answer {
            Answer::Done => {
                let done = action.done_text();
                if own_token.is_none() {
                    let who = if user.name.is_empty() {
                        &user.email
                    } else {
                        &user.name
                    };
                    let note = format!(
                        "{} by {who} via {}",
                        capitalise(&done),
                        channel_name(channel)
                    );
                    if let Answer::Failed(e) | Answer::Refused(e) =
                        api.note(&target.id, &note).await
                    {
                        tracing::warn!(alert_group = %target.id, error = %e, "cannot add the resolution note");
                    }
                }
                let state = match action {
                    Action::Acknowledge => "acknowledged",
                    Action::Resolve => "resolved",
                    Action::Silence(_) => "silenced",
                };
                let update = GroupUpdate {
                    id: target.id.clone(),
                    state: Some(state.into()),
                    state_by: Some(user.email.clone()),
                    ..GroupUpdate::default()
                };
                if let Err(e) = registry::record(&self.store, &update, &[], now_ms()).await {
                    tracing::warn!(error = %e, "cannot record the alert group's new state");
                }
                format!("{label} {done}.")
            }
            Answer::Refused(detail) => self.refusal_text(&label, &target.id, &detail).await,
            Answer::NotFound => format!("{label} was not found in OnCall."),
            Answer::Throttled(after) => {
                format!(
                    "OnCall is busy: try {label} again in {} s.",
                    after.as_secs().max(1)
                )
            }
            Answer::Forbidden => {
                tracing::warn!(alert_group = %target.id, "OnCall refused the relay's API token");
                format!(
                    "Cannot {} {label}: OnCall refused the relay's token.",
                    action.api_name()
                )
            }
            Answer::Failed(_) => format!("OnCall did not answer: try {label} again."),
        }
    }

    /// "#17 already resolved by Bob" when the webhooks told who; OnCall's own words otherwise.
    async fn refusal_text(&self, label: &str, id: &str, detail: &str) -> String {
        let group = registry::group(&self.store, id).await.ok().flatten();
        match group {
            Some(g) if g.state != "firing" => match g.state_by {
                Some(by) => format!("{label} already {} by {by}.", g.state),
                None => format!("{label} already {}.", g.state),
            },
            _ => format!("{label}: {detail}"),
        }
    }

    /// The pages of `user` in the window, newest first: from webhooks, and from the alert
    /// group keys and numbers in what the relay delivered to them.
    async fn candidates(&self, user: &User) -> Result<Vec<Candidate>, AckError> {
        let since = now_ms() - PAGE_WINDOW.as_millis() as i64;
        let mut found: Vec<Candidate> =
            registry::pages(&self.store, &email_key(&user.email), since)
                .await?
                .into_iter()
                .map(|p| Candidate {
                    id: p.alert_group_id,
                    title: p.title,
                    state: p.state,
                    number: None,
                    seen_at: p.seen_at,
                })
                .collect();
        for sent in texts::recent(&self.store, &user.id, since).await? {
            for key in &sent.keys {
                match found.iter_mut().find(|c| &c.id == key) {
                    Some(c) => {
                        c.number = c.number.or(sent.number);
                        c.seen_at = c.seen_at.max(sent.at);
                    }
                    None => {
                        let group = registry::group(&self.store, key).await?;
                        found.push(Candidate {
                            id: key.clone(),
                            title: group.as_ref().map(|g| g.title.clone()).unwrap_or_default(),
                            state: group.map(|g| g.state).unwrap_or_else(|| "firing".into()),
                            number: sent.number,
                            seen_at: sent.at,
                        });
                    }
                }
            }
            // A text with a number and a title but no key: the page of the same title.
            if sent.keys.is_empty()
                && let (Some(n), Some(title)) = (sent.number, &sent.title)
                && let Some(c) = found
                    .iter_mut()
                    .find(|c| c.number.is_none() && texts::same_title(&c.title, title))
            {
                c.number = Some(n);
            }
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.seen_at));
        Ok(found)
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
