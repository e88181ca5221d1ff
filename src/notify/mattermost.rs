//! The `mattermost` and `rocketchat` backends: a post through an incoming webhook.
//!
//! Both servers take `{"text": ..., "username": ..., "channel": ...}`. The channel is the
//! user's contact (`mattermost`; for Rocket.Chat `rocketchat`, else `mattermost`), else the
//! configured one, else the hook's own; `@username` reaches a person directly.

use std::time::Duration;

use serde::Serialize;

use super::backend::{Backend, BoxFuture, DeliveryError};
use super::shape;
use super::{Notification, NotifyError};
use crate::config::{MattermostSettings, Secret};

/// Which server the hook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Mattermost (posts up to 16383 characters).
    Mattermost,
    /// Rocket.Chat (messages up to 5000 characters by default).
    RocketChat,
}

impl Flavour {
    fn max_length(self) -> usize {
        match self {
            Flavour::Mattermost => 16_383,
            Flavour::RocketChat => 5_000,
        }
    }

    /// Contact keys read for the channel, in order.
    fn contact_keys(self) -> &'static [&'static str] {
        match self {
            Flavour::Mattermost => &["mattermost"],
            Flavour::RocketChat => &["rocketchat", "mattermost"],
        }
    }
}

/// Posts each notification to an incoming webhook.
#[derive(Debug)]
pub struct Mattermost {
    name: String,
    flavour: Flavour,
    url: Secret,
    username: Option<String>,
    channel: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

#[derive(Debug, Serialize)]
struct Post<'a> {
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
}

impl Mattermost {
    /// Validates the settings.
    pub fn new(
        name: &str,
        flavour: Flavour,
        s: &MattermostSettings,
        client: reqwest::Client,
    ) -> Result<Mattermost, NotifyError> {
        let bad = |message: &str| NotifyError::BackendConfig {
            name: name.to_string(),
            message: message.to_string(),
        };
        let url = s.url.expose().trim();
        if url.is_empty() {
            return Err(bad("`url` is required (the incoming webhook's URL)"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| bad("`url` is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("`url` must be an http or https URL"));
        }
        let clean = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Ok(Mattermost {
            name: name.to_string(),
            flavour,
            url: Secret(url.to_string()),
            username: clean(&s.username),
            channel: clean(&s.channel),
            timeout: s.timeout,
            client,
        })
    }
}

impl Backend for Mattermost {
    fn name(&self) -> &str {
        &self.name
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let channel = self
                .flavour
                .contact_keys()
                .iter()
                .filter_map(|k| n.contacts.get(*k))
                .map(|c| c.trim())
                .find(|c| !c.is_empty())
                .or(self.channel.as_deref());
            let text = if n.important() {
                format!(":rotating_light: {}", n.message)
            } else {
                n.message.clone()
            };
            let post = Post {
                text: shape::truncate(&text, self.flavour.max_length()),
                username: self.username.as_deref(),
                channel,
            };
            let response = self
                .client
                .post(self.url.expose())
                .timeout(self.timeout)
                .json(&post)
                .send()
                .await
                .map_err(super::http::request_failed)?;
            super::http::check(response, "").await
        })
    }
}
