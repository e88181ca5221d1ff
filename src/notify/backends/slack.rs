//! The `slack` backend: a message through an incoming webhook or the Web API.
//!
//! With `webhook_url`, each notification is posted to the hook's channel. With `token` and
//! `channel`, `chat.postMessage` sends it to the user's `slack` contact (a member or channel
//! id), else to the channel. The Web API answers HTTP 200 with `{"ok": false, "error": ...}`
//! on most errors: `ratelimited` and Slack's own failures are retried, the others are final.

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;

use super::{Base, Deliver, DeliveryError, Setup, contact, http, present};
use crate::config::{Secret, SlackSettings};
use crate::notify::{Notification, NotifyError};
use crate::notify::{buttons, shape};

/// Slack cuts longer texts.
const MAX_LENGTH: usize = 40_000;

/// Web API errors that say "later" rather than "never".
const TRANSIENT_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Posts each notification to Slack.
#[derive(Debug)]
pub struct Slack {
    base: Base,
    mode: Mode,
    client: reqwest::Client,
    /// Pages carry Acknowledge / Resolve / Silence buttons (the app's clicks are verified).
    buttons: bool,
}

#[derive(Debug)]
enum Mode {
    /// An incoming webhook (its URL is the secret).
    Webhook { url: Secret },
    /// `chat.postMessage` with a bot token.
    Api {
        endpoint: String,
        authorization: HeaderValue,
        channel: String,
    },
}

/// What the Web API answers.
#[derive(Debug, Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    /// The channel's id (a member's DM channel for a member id).
    #[serde(default)]
    channel: Option<String>,
    /// The message's id within the channel.
    #[serde(default)]
    ts: Option<String>,
}

impl Slack {
    /// Validates the settings: exactly one of `webhook_url` and `token` (with `channel`).
    pub fn new(cx: &Setup<'_>, s: &SlackSettings) -> Result<Slack, NotifyError> {
        let bad = cx.error();
        let secret = |v: &Option<Secret>| present(v.as_ref().map(Secret::expose));
        let channel = present(s.channel.as_deref());
        let mode = match (secret(&s.webhook_url), secret(&s.token)) {
            (Some(_), Some(_)) => {
                return Err(bad("set either `webhook_url` (incoming webhook) or `token` and `channel` (Web API), not both".into()));
            }
            (None, None) => {
                return Err(bad(
                    "set `webhook_url` (incoming webhook) or `token` and `channel` (Web API)"
                        .into(),
                ));
            }
            (Some(url), None) => {
                http::base_url(&url, "webhook_url").map_err(&bad)?;
                if channel.is_some() {
                    return Err(bad("`channel` applies to the Web API (`token`) only; an incoming webhook posts to its own channel".into()));
                }
                Mode::Webhook { url: Secret(url) }
            }
            (None, Some(token)) => {
                let channel = channel.ok_or_else(|| {
                    bad(
                        "`channel` is required with `token` (for users without a `slack` contact)"
                            .into(),
                    )
                })?;
                let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| bad("`token` is not a valid token".into()))?;
                authorization.set_sensitive(true);
                let base = http::base_url(&s.api_base, "api_base").map_err(&bad)?;
                Mode::Api {
                    endpoint: format!("{}/chat.postMessage", base.as_str().trim_end_matches('/')),
                    authorization,
                    channel,
                }
            }
        };
        Ok(Slack {
            base: cx.base(s.timeout),
            mode,
            client: cx.client.clone(),
            buttons: s
                .signing_secret
                .as_ref()
                .is_some_and(|secret| !secret.expose().is_empty()),
        })
    }
}

impl Deliver for Slack {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let text = text(n);
        let mut message = serde_json::json!({ "text": text });
        if self.buttons && buttons::is_page(&n.kind) {
            // `text` stays as the notification's fallback; the blocks show it with the buttons.
            message["blocks"] = serde_json::json!([
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                buttons::slack_block(n.id),
            ]);
        }
        let request = match &self.mode {
            Mode::Webhook { url } => self.client.post(url.expose()).json(&message),
            Mode::Api {
                endpoint,
                authorization,
                channel,
            } => {
                let channel = contact(n, &["slack"]).unwrap_or(channel);
                message["channel"] = serde_json::json!(channel);
                self.client
                    .post(endpoint)
                    .header(AUTHORIZATION, authorization.clone())
                    .json(&message)
            }
        };
        let response = http::keyed(request, n)
            .timeout(self.base.timeout)
            .send()
            .await
            .map_err(http::request_failed)?;
        let status = response.status();
        let after = http::retry_after(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!(" (retry after {v}s)"))
            .unwrap_or_default();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail = http::excerpt(&body);
            return Err(http::failed_after(
                status,
                format!("HTTP {status}: {detail}{retry_after}"),
                after,
            ));
        }
        if matches!(self.mode, Mode::Webhook { .. }) {
            // An incoming webhook answers 200 "ok".
            return Ok(());
        }
        match serde_json::from_str::<ApiAnswer>(&body) {
            Ok(ApiAnswer {
                ok: true,
                channel,
                ts,
                ..
            }) => {
                if let (true, Some(channel), Some(ts)) = (buttons::is_page(&n.kind), channel, ts) {
                    n.parts_log
                        .record_message(&self.base.name, &channel, &ts, &text)
                        .await;
                }
                Ok(())
            }
            Ok(ApiAnswer { error, .. }) => {
                let error = error.unwrap_or_else(|| "unknown_error".into());
                let message = format!("Slack API error: {error}{retry_after}");
                if let (Some(after), true) = (after, error == "ratelimited") {
                    Err(DeliveryError::Throttled { message, after })
                } else if TRANSIENT_ERRORS.contains(&error.as_str()) {
                    Err(DeliveryError::Transient(message))
                } else {
                    Err(DeliveryError::Permanent(message))
                }
            }
            Err(_) => Err(DeliveryError::Transient(format!(
                "unexpected answer (HTTP {status}): {}",
                http::excerpt(&body)
            ))),
        }
    }
}

/// The message, marked when important, with `&`, `<` and `>` escaped as Slack asks.
fn text(n: &Notification) -> String {
    let escaped = quick_xml::escape::partial_escape(n.message.as_str()).into_owned();
    let marked = if n.important() {
        format!(":rotating_light: {escaped}")
    } else {
        escaped
    };
    shape::truncate(&marked, MAX_LENGTH)
}
