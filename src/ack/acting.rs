//! Acting on an alert group for a person: a text reply, a one-click link, and what OnCall
//! answered, told back in words.

use std::sync::Arc;

use super::api::Answer;
use super::command::{self, Action, CommandError};
use super::matching::{Candidate, pick};
use super::registry::{self, GroupUpdate};
use super::{Ack, AckError, capitalise, channel_name, links, texts};
use crate::directory::{ONCALL_TOKEN_CONTACT, User, parse_phone};
use crate::store::now_ms;

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

/// The answer to someone acting on a page that did not go to them.
pub const STRANGER: &str = "Only the person this page went to can act on it.";

impl Ack {
    /// The one-click links for notification `id`, when links are on.
    pub fn action_links(&self, id: i64) -> Option<ActionLinks> {
        let (key, root) = self.links.as_ref()?;
        Some(key.links(root, id, now_ms()))
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
        Ok(self
            .follow_link_from("link", token, None)
            .await?
            .unwrap_or_else(|| STRANGER.to_string()))
    }

    /// Does what the link `token` says, once, through `channel`. With `sender` (a contact key
    /// and value, e.g. `mattermost` and the clicking member's name), only when the link's
    /// recipient has that contact: a chat button is seen by everyone in the channel. `None`
    /// when the sender is not that person (nothing is done, the link stays usable).
    pub async fn follow_link_from(
        &self,
        channel: &str,
        token: &str,
        sender: Option<(&str, &str)>,
    ) -> Result<Option<String>, AckError> {
        let claim = self.link_claim(token)?;
        let email = texts::by_id(&self.store, claim.notification)
            .await?
            .map(|(email, _)| email)
            .ok_or(AckError::Link(links::LinkError::Invalid))?;
        let user = self.directory.by_email(&email).await?.filter(|u| u.active);
        let sender_matches = |u: &User| match sender {
            None => true,
            Some((key, value)) => u.contacts.get(key).is_some_and(|c| {
                c.trim()
                    .trim_start_matches('@')
                    .eq_ignore_ascii_case(value.trim_start_matches('@'))
            }),
        };
        let Some(user) = user.filter(|u| sender_matches(u)) else {
            self.log(
                channel,
                "",
                None,
                claim.action.api_name(),
                "unknown-sender",
                None,
            )
            .await;
            return Ok(None);
        };
        // Used only once the sender is known: a stranger's click must not burn the link.
        links::use_once(&self.store, &claim, now_ms()).await?;
        self.act_on_notification(channel, &user, claim.notification, claim.action)
            .await
            .map(Some)
    }

    /// Acts on the alert group that notification `id` (delivered to `user`) was about.
    pub async fn act_on_notification(
        &self,
        channel: &str,
        user: &User,
        id: i64,
        action: Action,
    ) -> Result<String, AckError> {
        let sent = texts::by_id(&self.store, id)
            .await?
            .filter(|(email, _)| email.eq_ignore_ascii_case(&user.email))
            .map(|(_, sent)| sent);
        let candidates = self.candidates(user).await?;
        let Some(target) = sent.and_then(|sent| pick(&candidates, &sent)) else {
            self.log(
                channel,
                &user.email,
                None,
                action.api_name(),
                "unmatched",
                None,
            )
            .await;
            return Ok("The alert this was for could not be found.".into());
        };
        Ok(self.act(channel, user, target, action).await)
    }

    /// Acts on `key`, pressed during the call that delivered notification `id` (OnCall's menu:
    /// 1 acknowledge, 2 resolve, 3 silence 30 minutes), for the person called; returns what
    /// to say to them.
    pub async fn key_press(&self, channel: &str, id: i64, key: &str) -> Result<String, AckError> {
        let Some(action) = Action::from_key(key) else {
            return Ok(command::NOT_A_CHOICE.into());
        };
        let Some((email, _)) = texts::by_id(&self.store, id).await? else {
            return Ok(command::GOODBYE.into());
        };
        match self
            .directory
            .find_for_delivery(&email)
            .await?
            .filter(|u| u.active)
        {
            Some(user) => self.act_on_notification(channel, &user, id, action).await,
            None => Ok(command::GOODBYE.into()),
        }
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
        let answer = self.text_reply(channel, &user, text).await?;
        Ok(Some((user, answer)))
    }

    /// Acts on a text `user` sent (`ack`, `r 17`, ...); returns the answer for them.
    pub async fn text_reply(
        &self,
        channel: &str,
        user: &User,
        text: &str,
    ) -> Result<String, AckError> {
        let command = match command::parse(text) {
            Ok(c) => c,
            Err(e) => {
                let shown: String = text.chars().take(40).collect();
                self.log(channel, &user.email, None, &shown, "not-understood", None)
                    .await;
                return Ok(match e {
                    CommandError::BadDuration => format!("{e}. {}", command::HELP),
                    CommandError::Unknown => command::HELP.to_string(),
                });
            }
        };
        let candidates = self.candidates(user).await?;
        let target = match command.number {
            Some(n) => candidates.iter().find(|c| c.number == Some(n)),
            None => candidates.iter().find(|c| c.state == "firing"),
        };
        if let Some(target) = target {
            return Ok(self.act(channel, user, target, command.action).await);
        }
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
        Ok(match (what, open.is_empty()) {
            (Some(n), true) => format!("No open alert {n} for you."),
            (Some(n), false) => format!("No open alert {n} for you. Open: {}.", open.join(", ")),
            (None, _) => "No open alert for you.".to_string(),
        })
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
}
