//! Chat messages that say who acted: when OnCall reports an alert group acknowledged, resolved
//! or silenced, the Telegram and Slack messages that paged people for it are edited to say so,
//! and their buttons go. Slack's incoming webhooks cannot edit what they posted, so only the
//! Web API (`token`) mode is edited.

use std::collections::BTreeMap;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};

use super::{Ack, AckError, PAGE_WINDOW, capitalise, registry, texts};
use crate::config::BackendSettings;
use crate::notify::backends::http::error_chain;
use crate::notify::chat_messages::{self, ChatMessage};
use crate::store::now_ms;

/// Telegram's longest message, in UTF-16 units.
const TELEGRAM_MAX: usize = 4096;

/// How one backend's messages are edited.
#[derive(Debug, Clone)]
pub enum Editor {
    /// `editMessageText` at `{api_base}/bot{token}` (holds the token, so never logged).
    Telegram {
        /// The bot's endpoint.
        endpoint: String,
    },
    /// `chat.update` with the bot token.
    Slack {
        /// `{api_base}/chat.update`.
        endpoint: String,
        /// `Bearer <token>`, marked sensitive.
        authorization: HeaderValue,
    },
}

/// The editors of the backends whose messages can be edited, by backend name.
pub fn editors(backends: &BTreeMap<String, BackendSettings>) -> BTreeMap<String, Editor> {
    backends
        .iter()
        .filter_map(|(name, backend)| {
            let editor = match backend {
                BackendSettings::Telegram(t) => Editor::Telegram {
                    endpoint: format!(
                        "{}/bot{}",
                        t.api_base.trim().trim_end_matches('/'),
                        t.token.expose().trim()
                    ),
                },
                BackendSettings::Slack(s) => {
                    let token = s.token.as_ref().map(|t| t.expose().trim())?;
                    let mut authorization =
                        HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
                    authorization.set_sensitive(true);
                    Editor::Slack {
                        endpoint: format!(
                            "{}/chat.update",
                            s.api_base.trim().trim_end_matches('/')
                        ),
                        authorization,
                    }
                }
                _ => return None,
            };
            Some((name.clone(), editor))
        })
        .collect()
}

/// The line added under a page: "Acknowledged by bob." or, without a name, "Resolved in OnCall.".
pub fn note(state: &str, by: Option<&str>) -> String {
    match by {
        Some(by) => format!("{} by {by}.", capitalise(state)),
        None => format!("{} in OnCall.", capitalise(state)),
    }
}

impl Editor {
    /// Replaces `message`'s text with its text as sent and `note` under it, without buttons.
    async fn edit(
        &self,
        http: &reqwest::Client,
        message: &ChatMessage,
        note: &str,
    ) -> Result<(), String> {
        let request = match self {
            Editor::Telegram { endpoint } => {
                let emoji = message.text.chars().any(|c| c.len_utf16() > 1);
                let room = if emoji {
                    TELEGRAM_MAX / 2
                } else {
                    TELEGRAM_MAX
                };
                let kept = crate::notify::shape::truncate(
                    &message.text,
                    room.saturating_sub(note.chars().count() + 2),
                );
                let chat = message
                    .chat
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(message.chat.as_str()));
                let message_id = message
                    .reference
                    .parse::<i64>()
                    .map_err(|e| e.to_string())?;
                http.post(format!("{endpoint}/editMessageText"))
                    .json(&json!({
                        "chat_id": chat,
                        "message_id": message_id,
                        "text": format!("{kept}\n\n{note}"),
                    }))
            }
            Editor::Slack {
                endpoint,
                authorization,
            } => {
                let note = quick_xml::escape::partial_escape(note).into_owned();
                http.post(endpoint)
                    .header(AUTHORIZATION, authorization.clone())
                    .json(&json!({
                        "channel": message.chat,
                        "ts": message.reference,
                        "text": format!("{}\n\n{note}", message.text),
                        "blocks": [
                            {"type": "section", "text": {"type": "mrkdwn", "text": message.text}},
                            {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]},
                        ],
                    }))
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if status.is_success() && answer["ok"] == true {
            return Ok(());
        }
        let detail = answer["description"]
            .as_str()
            .or(answer["error"].as_str())
            .unwrap_or("no description");
        Err(format!("HTTP {status}: {detail}"))
    }
}

impl Ack {
    /// Edits the chat messages that paged people for alert group `id` to say it is now `state`
    /// (by `by`); gives how many were edited. A message that cannot be edited is logged.
    pub(super) async fn edit_messages(
        &self,
        id: &str,
        state: &str,
        by: Option<&str>,
    ) -> Result<usize, AckError> {
        if self.editors.is_empty() {
            return Ok(0);
        }
        let Some(group) = registry::group(&self.store, id).await? else {
            return Ok(0);
        };
        let since = now_ms() - PAGE_WINDOW.as_millis() as i64;
        let note = note(state, by);
        let mut edited = 0;
        for person in registry::paged(&self.store, id).await? {
            for message in chat_messages::sent_to(&self.store, &person, since).await? {
                let Some(editor) = self.editors.get(&message.backend) else {
                    continue;
                };
                let sent = texts::read(&message.message, message.payload.as_deref(), 0);
                if message.edited_state.as_deref() == Some(state) || !texts::names(&group, &sent) {
                    continue;
                }
                match editor.edit(&self.http, &message, &note).await {
                    Ok(()) => {
                        chat_messages::mark_edited(&self.store, &message, state).await?;
                        edited += 1;
                    }
                    Err(e) => tracing::warn!(
                        backend = %message.backend,
                        notification = message.notification_id,
                        error = %e,
                        "cannot edit the chat message of a page"
                    ),
                }
            }
        }
        Ok(edited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_names_who_acted_or_oncall() {
        assert_eq!(note("acknowledged", Some("bob")), "Acknowledged by bob.");
        assert_eq!(note("resolved", None), "Resolved in OnCall.");
    }

    #[test]
    fn only_telegram_and_slack_web_api_messages_are_edited() {
        use crate::config::{Secret, SlackSettings, TelegramSettings};
        let mut backends = BTreeMap::new();
        backends.insert(
            "tg".to_string(),
            BackendSettings::Telegram(TelegramSettings {
                token: Secret("1:x".into()),
                api_base: "https://api.telegram.org/".into(),
                ..Default::default()
            }),
        );
        backends.insert(
            "hook".to_string(),
            BackendSettings::Slack(SlackSettings {
                webhook_url: Some(Secret("https://hooks.slack.com/services/x".into())),
                ..Default::default()
            }),
        );
        backends.insert(
            "app".to_string(),
            BackendSettings::Slack(SlackSettings {
                token: Some(Secret("xoxb-1".into())),
                api_base: "https://slack.com/api".into(),
                ..Default::default()
            }),
        );
        let editors = editors(&backends);
        assert_eq!(editors.keys().collect::<Vec<_>>(), ["app", "tg"]);
        assert!(matches!(
            &editors["tg"],
            Editor::Telegram { endpoint } if endpoint == "https://api.telegram.org/bot1:x"
        ));
        assert!(matches!(
            &editors["app"],
            Editor::Slack { endpoint, .. } if endpoint == "https://slack.com/api/chat.update"
        ));
    }
}
