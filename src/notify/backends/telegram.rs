//! The `telegram` backend: a bot sends each notification to the user's chat.
//!
//! `POST {api_base}/bot{token}/sendMessage` with the chat from the user's `telegram` contact,
//! else the configured `chat_id`. Text over Telegram's limit goes out in numbered parts, in
//! order; ordinary notifications arrive silently (`disable_notification`), important ones ring.

use serde::Deserialize;
use tokio::time::Instant;

use super::{
    Base, Deliver, DeliveryError, Setup, contact, http, idempotency_key, part_index, part_key,
    present, send_parts,
};
use crate::config::{Secret, TelegramSettings};
use crate::notify::buttons;
use crate::notify::shape::{self, TextLimit};
use crate::notify::{Notification, NotifyError};

/// Most characters in one message.
const MAX_LENGTH: usize = 4096;

/// Sends each notification as a Telegram bot message.
#[derive(Debug)]
pub struct Telegram {
    base: Base,
    api_base: String,
    token: Secret,
    chat_id: Option<String>,
    client: reqwest::Client,
    /// Pages carry Acknowledge / Resolve / Silence buttons (the bot reads the presses).
    buttons: bool,
}

/// The Bot API's answer to a failed request.
#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

/// The Bot API's answer to `sendMessage`: the message as sent.
#[derive(Debug, Deserialize)]
struct Sent {
    result: SentMessage,
}

#[derive(Debug, Deserialize)]
struct SentMessage {
    message_id: i64,
    chat: SentChat,
}

#[derive(Debug, Deserialize)]
struct SentChat {
    id: i64,
}

impl Telegram {
    /// Validates the settings.
    pub fn new(cx: &Setup<'_>, s: &TelegramSettings) -> Result<Telegram, NotifyError> {
        let bad = cx.error();
        let token = s.token.expose().trim();
        if token.is_empty() {
            return Err(bad(
                "`token` is required (the bot token from @BotFather)".into()
            ));
        }
        if !token
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '?' | '#' | '%'))
        {
            return Err(bad("`token` is not a bot token (`123456:ABC-...`)".into()));
        }
        let api_base = http::base_url(&s.api_base, "api_base").map_err(&bad)?;
        Ok(Telegram {
            base: cx.base(s.timeout),
            api_base: api_base.as_str().trim_end_matches('/').to_string(),
            token: Secret(token.to_string()),
            chat_id: present(s.chat_id.as_deref()),
            client: cx.client.clone(),
            buttons: s.replies,
        })
    }

    /// Sends one message and gives where it landed (chat and message id, when Telegram says);
    /// the URL holds the token, so errors never show it.
    async fn send(
        &self,
        chat_id: &serde_json::Value,
        text: &str,
        silent: bool,
        markup: Option<&serde_json::Value>,
        deadline: Instant,
        key: String,
    ) -> Result<Option<(String, String)>, DeliveryError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DeliveryError::Transient("timed out".into()));
        }
        let url = format!("{}/bot{}/sendMessage", self.api_base, self.token.expose());
        let mut body = serde_json::json!({
            "chat_id": chat_id,
            "text": text,
            "disable_notification": silent,
        });
        if let Some(markup) = markup {
            body["reply_markup"] = markup.clone();
        }
        let response = self
            .client
            .post(url)
            .header(http::IDEMPOTENCY_KEY, key)
            .timeout(left)
            .json(&body)
            .send()
            .await
            .map_err(http::request_failed)?;
        let status = response.status();
        if status.is_success() {
            let sent: Option<Sent> = response.json().await.ok();
            return Ok(sent.map(|s| {
                (
                    s.result.chat.id.to_string(),
                    s.result.message_id.to_string(),
                )
            }));
        }
        let retry_header = http::retry_after_header(&response);
        let text = response.text().await.unwrap_or_default();
        let parsed: ApiError = serde_json::from_str(&text).unwrap_or_default();
        let detail = parsed
            .description
            .clone()
            .unwrap_or_else(|| http::excerpt(&text));
        let mut message = format!("HTTP {status}: {detail}");
        let params = parsed.parameters.unwrap_or_default();
        if let Some(seconds) = params.retry_after {
            message.push_str(&format!(" (retry after {seconds}s)"));
        }
        let after = params.retry_after.map(http::capped).or(retry_header);
        if let Some(new_id) = params.migrate_to_chat_id {
            message.push_str(&format!(" (the group is now the supergroup {new_id})"));
        }
        // 429 is Telegram's flood control: later, not never. 400/403 (chat not found, bot
        // blocked or kicked) and 401/404 (bad token) cannot heal by retrying.
        Err(http::failed_after(status, message, after))
    }
}

impl Deliver for Telegram {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + self.base.timeout;
        let chat = contact(n, &["telegram"])
            .or(self.chat_id.as_deref())
            .ok_or_else(|| {
                DeliveryError::Permanent(format!(
                    "no Telegram chat for {}: set the user's `telegram` contact or the backend's `chat_id`",
                    if n.email.is_empty() { "this notification" } else { &n.email }
                ))
            })?;
        // Numeric ids go out as numbers, `@channel` names as strings.
        let chat_id = chat
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(chat));
        // Telegram counts UTF-16 units: leave room when the text has characters that
        // take two (most emoji).
        let max_length = if n.message.chars().any(|c| c.len_utf16() > 1) {
            MAX_LENGTH / 2
        } else {
            MAX_LENGTH
        };
        let limit = TextLimit {
            max_length,
            split: true,
        };
        let silent = !n.important();
        let parts = shape::parts(&n.message, limit);
        // The buttons go under the last part, where the person reads to the end.
        let page = buttons::is_page(&n.kind);
        let markup = (self.buttons && page).then(|| buttons::telegram_markup(n.id));
        let last = parts.last().map(String::as_str);
        let key = idempotency_key(n);
        send_parts(n, &self.base.name, &parts, |part| {
            let is_last = last.is_some_and(|l| std::ptr::eq(l, part));
            let markup = markup.as_ref().filter(|_| is_last);
            let key = part_key(&key, part_index(&parts, part), parts.len());
            let chat_id = &chat_id;
            async move {
                let sent = self
                    .send(chat_id, part, silent, markup, deadline, key)
                    .await?;
                // The last part of a page is the one edited once someone acts on it.
                if let (true, true, Some((chat, message))) = (page, is_last, sent) {
                    n.parts_log
                        .record_message(&self.base.name, &chat, &message, part)
                        .await;
                }
                Ok(())
            }
        })
        .await
    }
}
