//! The `slack` backend: a message through an incoming webhook or the Web API.
//!
//! With `webhook_url`, each notification is posted to the hook's channel. With `token` and
//! `channel`, `chat.postMessage` sends it to the user's `slack` contact (a member or channel
//! id), else to the channel. The Web API answers HTTP 200 with `{"ok": false, "error": ...}`
//! on most errors: `ratelimited` and Slack's own failures are retried, the others are final.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;

use super::backend::{Backend, BoxFuture, DeliveryError};
use super::shape;
use super::{Notification, NotifyError};
use crate::config::{Secret, SlackSettings};

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
    name: String,
    mode: Mode,
    timeout: Duration,
    client: reqwest::Client,
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
}

impl Slack {
    /// Validates the settings: exactly one of `webhook_url` and `token` (with `channel`).
    pub fn new(
        name: &str,
        s: &SlackSettings,
        client: reqwest::Client,
    ) -> Result<Slack, NotifyError> {
        let bad = |message: &str| NotifyError::BackendConfig {
            name: name.to_string(),
            message: message.to_string(),
        };
        let present = |v: &Option<Secret>| {
            v.as_ref()
                .map(|s| s.expose().trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let channel = s
            .channel
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let mode = match (present(&s.webhook_url), present(&s.token)) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "set either `webhook_url` (incoming webhook) or `token` and `channel` (Web API), not both",
                ));
            }
            (None, None) => {
                return Err(bad(
                    "set `webhook_url` (incoming webhook) or `token` and `channel` (Web API)",
                ));
            }
            (Some(url), None) => {
                let parsed =
                    reqwest::Url::parse(&url).map_err(|_| bad("`webhook_url` is not a URL"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad("`webhook_url` must be an http or https URL"));
                }
                if channel.is_some() {
                    return Err(bad(
                        "`channel` applies to the Web API (`token`) only; an incoming webhook posts to its own channel",
                    ));
                }
                Mode::Webhook { url: Secret(url) }
            }
            (None, Some(token)) => {
                let channel = channel.ok_or_else(|| {
                    bad("`channel` is required with `token` (for users without a `slack` contact)")
                })?;
                let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| bad("`token` is not a valid token"))?;
                authorization.set_sensitive(true);
                let base = s.api_base.trim().trim_end_matches('/');
                let parsed =
                    reqwest::Url::parse(base).map_err(|e| bad(&format!("`api_base`: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(bad("`api_base` must be an http or https URL"));
                }
                Mode::Api {
                    endpoint: format!("{base}/chat.postMessage"),
                    authorization,
                    channel,
                }
            }
        };
        Ok(Slack {
            name: name.to_string(),
            mode,
            timeout: s.timeout,
            client,
        })
    }
}

impl Backend for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let text = text(n);
            let request = match &self.mode {
                Mode::Webhook { url } => self
                    .client
                    .post(url.expose())
                    .json(&serde_json::json!({ "text": text })),
                Mode::Api {
                    endpoint,
                    authorization,
                    channel,
                } => {
                    let channel = n
                        .contacts
                        .get("slack")
                        .map(|c| c.trim())
                        .filter(|c| !c.is_empty())
                        .unwrap_or(channel);
                    self.client
                        .post(endpoint)
                        .header(AUTHORIZATION, authorization.clone())
                        .json(&serde_json::json!({ "channel": channel, "text": text }))
                }
            };
            let response = request.timeout(self.timeout).send().await.map_err(|e| {
                DeliveryError::Transient(format!(
                    "request failed: {}",
                    super::http::error_chain(&e.without_url())
                ))
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (retry after {v}s)"))
                .unwrap_or_default();
            let body = response.text().await.unwrap_or_default();
            if !status.is_success() {
                let detail: String = body.chars().take(300).collect();
                let message = format!("HTTP {status}: {detail}{retry_after}");
                return if status.is_server_error()
                    || status.as_u16() == 408
                    || status.as_u16() == 429
                {
                    Err(DeliveryError::Transient(message))
                } else {
                    Err(DeliveryError::Permanent(message))
                };
            }
            if matches!(self.mode, Mode::Webhook { .. }) {
                // An incoming webhook answers 200 "ok".
                return Ok(());
            }
            match serde_json::from_str::<ApiAnswer>(&body) {
                Ok(ApiAnswer { ok: true, .. }) => Ok(()),
                Ok(ApiAnswer { error, .. }) => {
                    let error = error.unwrap_or_else(|| "unknown_error".into());
                    let message = format!("Slack API error: {error}{retry_after}");
                    if TRANSIENT_ERRORS.contains(&error.as_str()) {
                        Err(DeliveryError::Transient(message))
                    } else {
                        Err(DeliveryError::Permanent(message))
                    }
                }
                Err(_) => Err(DeliveryError::Transient(format!(
                    "unexpected answer (HTTP {status}): {}",
                    body.chars().take(300).collect::<String>()
                ))),
            }
        })
    }
}

/// The message, marked when important, with `&`, `<` and `>` escaped as Slack asks.
fn text(n: &Notification) -> String {
    let escaped = n
        .message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let marked = if n.important() {
        format!(":rotating_light: {escaped}")
    } else {
        escaped
    };
    shape::truncate(&marked, MAX_LENGTH)
}
