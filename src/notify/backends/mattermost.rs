//! The `mattermost` and `rocketchat` backends: a post through an incoming webhook.
//!
//! Both servers take `{"text": ..., "username": ..., "channel": ...}`. The channel is the
//! user's contact (`mattermost`; for Rocket.Chat `rocketchat`, else `mattermost`), else the
//! configured one, else the hook's own; `@username` reaches a person directly.

use serde::Serialize;

use super::{Base, Deliver, DeliveryError, Setup, contact, http, present};
use crate::config::{MattermostSettings, Secret};
use crate::notify::shape;
use crate::notify::{Notification, NotifyError};

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
    base: Base,
    flavour: Flavour,
    url: Secret,
    username: Option<String>,
    channel: Option<String>,
    client: reqwest::Client,
}

#[derive(Debug, Serialize)]
struct Post<'a> {
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    /// Interactive buttons acting on the page (Mattermost only).
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<serde_json::Value>,
}

/// Mattermost's interactive buttons for a page's one-click links: a click posts the link's
/// token to `/hooks/mattermost`, which acts only for the person the page went to.
fn buttons(links: &serde_json::Value) -> Option<serde_json::Value> {
    let actions: Vec<serde_json::Value> = [
        ("acknowledge", "Acknowledge"),
        ("resolve", "Resolve"),
        ("silence", "Silence 30 min"),
    ]
    .iter()
    .filter_map(|(key, label)| {
        let (root, token) = links.get(key)?.as_str()?.rsplit_once("/act/")?;
        Some(serde_json::json!({
            "id": key,
            "name": label,
            "integration": {"url": format!("{root}/hooks/mattermost"), "context": {"token": token}},
        }))
    })
    .collect();
    (!actions.is_empty()).then(|| serde_json::json!([{ "actions": actions }]))
}

impl Mattermost {
    /// Validates the settings.
    pub fn new(
        cx: &Setup<'_>,
        flavour: Flavour,
        s: &MattermostSettings,
    ) -> Result<Mattermost, NotifyError> {
        let bad = cx.error();
        let url = s.url.expose().trim();
        if url.is_empty() {
            return Err(bad("`url` is required (the incoming webhook's URL)".into()));
        }
        http::base_url(url, "url").map_err(&bad)?;
        Ok(Mattermost {
            base: cx.base(s.timeout),
            flavour,
            url: Secret(url.to_string()),
            username: present(s.username.as_deref()),
            channel: present(s.channel.as_deref()),
            client: cx.client.clone(),
        })
    }
}

impl Deliver for Mattermost {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let channel = contact(n, self.flavour.contact_keys()).or(self.channel.as_deref());
        let text = if n.important() {
            format!(":rotating_light: {}", n.message)
        } else {
            n.message.clone()
        };
        let post = Post {
            text: shape::truncate(&text, self.flavour.max_length()),
            username: self.username.as_deref(),
            channel,
            attachments: match self.flavour {
                Flavour::Mattermost => n.links.as_ref().and_then(buttons),
                Flavour::RocketChat => None,
            },
        };
        let request = http::keyed(
            self.client
                .post(self.url.expose())
                .timeout(self.base.timeout)
                .json(&post),
            n,
        );
        http::send(request, "").await
    }
}
