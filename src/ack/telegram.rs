//! Telegram: Acknowledge / Resolve / Silence buttons under a page, and text replies to the bot.
//! Updates are read by long polling `getUpdates`, which needs no public URL; a lease makes
//! sure one replica at a time polls each bot (Telegram allows one reader).
//!
//! A button press or reply counts only from the person the page went to: the sender's id must
//! be their `telegram` contact. Strangers get nothing.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Ack;
use super::command::Action;
use crate::notify::backends::http::error_chain;
use crate::store::{Store, lease};

/// How long one `getUpdates` call waits for something to happen.
const LONG_POLL: Duration = Duration::from_secs(25);
/// How long a poller's lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(60);

/// A bot's Bot API endpoint.
#[derive(Debug, Clone)]
pub struct Bot {
    /// The backend's name.
    pub name: String,
    /// `{api_base}/bot{token}`: holds the token, so never logged.
    endpoint: String,
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Updates {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    result: Vec<Update>,
}

#[derive(Debug, Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    callback_query: Option<CallbackQuery>,
}

#[derive(Debug, Deserialize)]
struct Message {
    message_id: i64,
    chat: Chat,
    #[serde(default)]
    from: Option<Sender>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct Sender {
    id: i64,
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    id: String,
    from: Sender,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    data: Option<String>,
}

impl Bot {
    /// The bot of backend `name` at `api_base` with `token`.
    pub fn new(name: &str, api_base: &str, token: &str) -> Result<Bot, super::AckError> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oncall-relay/", env!("CARGO_PKG_VERSION")))
            .timeout(LONG_POLL + Duration::from_secs(10))
            .build()
            .map_err(|e| super::AckError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Bot {
            name: name.to_string(),
            endpoint: format!(
                "{}/bot{}",
                api_base.trim().trim_end_matches('/'),
                token.trim()
            ),
            client,
        })
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, String> {
        let response = self
            .client
            .post(format!("{}/{method}", self.endpoint))
            .json(body)
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        if !status.is_success() || value["ok"] != true {
            let detail = value["description"].as_str().unwrap_or("no description");
            return Err(format!("{method}: HTTP {status}: {detail}"));
        }
        Ok(value)
    }

    /// Polls this bot's updates while this replica holds its lease, until `shutdown`.
    pub fn spawn_poller(
        self,
        ack: Ack,
        store: Store,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let lease = lease::Runner::new(store, format!("telegram-updates:{}", self.name), LEASE);
            let mut offset: Option<i64> = None;
            let mut pace = lease::Pace::default();
            loop {
                let round = match lease.renew().await {
                    true => Some(self.poll_once(&ack, &mut offset, &shutdown).await),
                    false => None,
                };
                let failed = |e: &str| tracing::warn!(backend = %self.name, error = %e, "cannot read the Telegram bot's updates");
                if !lease
                    .pause(&mut pace, round, Duration::ZERO, &shutdown, failed)
                    .await
                {
                    break;
                }
            }
            lease.release().await;
        })
    }

    async fn poll_once(
        &self,
        ack: &Ack,
        offset: &mut Option<i64>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let body = json!({
            "offset": offset,
            "timeout": LONG_POLL.as_secs(),
            "allowed_updates": ["message", "callback_query"],
        });
        let value = tokio::select! {
            v = self.call("getUpdates", &body) => v?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let updates: Updates = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if !updates.ok {
            return Err("getUpdates answered ok: false".into());
        }
        for update in updates.result {
            // Confirmed by the next call's offset, so an update is handled once even if
            // handling it fails.
            *offset = Some(update.update_id + 1);
            self.handle(ack, update).await;
        }
        Ok(())
    }

    async fn handle(&self, ack: &Ack, update: Update) {
        let channel = format!("telegram:{}", self.name);
        if let Some(query) = update.callback_query {
            let answer = self.on_button(ack, &channel, &query).await;
            let _ = self
                .call(
                    "answerCallbackQuery",
                    &json!({"callback_query_id": query.id, "text": answer.as_deref().unwrap_or("")}),
                )
                .await;
            if let (Some(answer), Some(message)) = (answer, query.message) {
                // The page then says who acted, and its buttons go.
                let text = format!("{}\n\n{answer}", message.text.unwrap_or_default());
                let _ = self
                    .call(
                        "editMessageText",
                        &json!({"chat_id": message.chat.id, "message_id": message.message_id, "text": text}),
                    )
                    .await;
            }
        } else if let Some(message) = update.message {
            let (Some(text), Some(from)) = (message.text.as_deref(), message.from.as_ref()) else {
                return;
            };
            let user = match ack
                .directory
                .by_contact("telegram", &from.id.to_string())
                .await
            {
                Ok(Some(user)) => user,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot find who wrote on Telegram");
                    return;
                }
            };
            // `/oncall` (or `/oncall@BotName` in a group) asks who is on duty.
            let command = text.trim().split(['@', ' ']).next().unwrap_or("");
            let answer = if command.eq_ignore_ascii_case("/oncall") {
                ack.on_call_text().await
            } else {
                ack.text_reply(&channel, &user, text).await
            };
            match answer {
                Ok(answer) => {
                    let _ = self
                        .call(
                            "sendMessage",
                            &json!({"chat_id": message.chat.id, "text": answer}),
                        )
                        .await;
                }
                Err(e) => tracing::warn!(error = %e, "cannot act on a Telegram reply"),
            }
        }
    }

    /// The answer to a button press, `None` for a stranger's.
    async fn on_button(&self, ack: &Ack, channel: &str, query: &CallbackQuery) -> Option<String> {
        let (action, id) = Action::from_button(query.data.as_deref()?)?;
        let user = match ack
            .directory
            .by_contact("telegram", &query.from.id.to_string())
            .await
        {
            Ok(user) => user.filter(|u| u.active)?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find who pressed a Telegram button");
                return Some("Something went wrong; try again.".into());
            }
        };
        match ack.act_on_notification(channel, &user, id, action).await {
            Ok(answer) => Some(answer),
            Err(e) => {
                tracing::warn!(error = %e, "cannot act on a Telegram button");
                Some("Something went wrong; try again.".into())
            }
        }
    }
}
