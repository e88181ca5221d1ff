//! `plugin.*`: the default backend, the configured backends by name and the routes per kind.
//! Each backend type's own options (`plugin.backends.<name>.*`) are in `backends.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backends::{
    EmailSettings, ExecSettings, MattermostSettings, NtfySettings, SipSettings, SlackSettings,
    TelegramSettings, TwilioSettings, WebhookSettings,
};

/// `plugin.*`: delivery backends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Name of the backend that delivers calls and SMS.
    pub backend: String,
    /// Configured backends by name.
    pub backends: BTreeMap<String, BackendSettings>,
    /// Per kind (`call`, `sms`, `push`, `heartbeat`, `schedule`), the backends to try in order.
    pub routes: BTreeMap<String, Vec<RouteSettings>>,
    /// Per backend name, how it words its messages (kinds, languages, templates).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<String, super::MessageSettings>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            backend: "stdout".into(),
            backends: BTreeMap::new(),
            routes: BTreeMap::new(),
            messages: BTreeMap::new(),
        }
    }
}

/// One step of a route: a backend, and which notifications it takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// Backend name under `plugin.backends` (or `stdout`).
    pub backend: String,
    /// Only for users with one of these roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Only for these users (emails or ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Only for important notifications (true) or only for the others (false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub important: Option<bool>,
    /// Attempts on this backend before the next step is tried (default `queue.max_attempts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// A call counts only once answered: one not answered (or with no status within
    /// `answer_timeout`) moves on to the next step. Only backends that report answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_answer: bool,
    /// With `require_answer`: how long to wait for the provider's answer status (default 3m).
    #[serde(
        default,
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub answer_timeout: Option<Duration>,
    /// What a timed-out attempt does: `next` (the default) moves to the next step at once,
    /// `retry` keeps retrying this step like any other transient failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
}

impl RouteSettings {
    /// How long a step waits for a call's answer status when it requires an answer.
    pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(180);

    /// The wait for an answer status, when this step requires an answer.
    pub fn answer_wait(&self) -> Option<Duration> {
        self.require_answer
            .then(|| self.answer_timeout.unwrap_or(Self::DEFAULT_ANSWER_TIMEOUT))
    }
}

/// What a step does when its backend times out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// The next step of the route takes over at once (the last step retries).
    #[default]
    Next,
    /// Retried on this step like any other transient failure, until `attempts` run out.
    Retry,
}

/// Notification kinds a route can be declared for.
pub const ROUTE_KINDS: [&str; 5] = ["call", "sms", "push", "heartbeat", "schedule"];

/// One backend's configuration, selected by `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendSettings {
    /// One JSON line per notification on stdout.
    Stdout {},
    /// An HTTP request per notification.
    Webhook(WebhookSettings),
    /// A local program per notification (argv, stdin JSON, environment).
    Exec(ExecSettings),
    /// An email per notification over SMTP.
    Email(EmailSettings),
    /// SMS and voice calls through Twilio.
    Twilio(TwilioSettings),
    /// Calls originated through Asterisk ARI.
    Sip(SipSettings),
    /// A Telegram bot message per notification.
    Telegram(TelegramSettings),
    /// A Slack message (incoming webhook or Web API).
    Slack(SlackSettings),
    /// A post through a Mattermost incoming webhook.
    Mattermost(MattermostSettings),
    /// A post through a Rocket.Chat incoming webhook (same settings as `mattermost`).
    Rocketchat(MattermostSettings),
    /// A message published to an ntfy topic.
    Ntfy(NtfySettings),
}

impl BackendSettings {
    /// Longest time one delivery may take; `None` for `stdout`, which never waits.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            BackendSettings::Stdout {} => None,
            BackendSettings::Webhook(b) => Some(b.timeout),
            BackendSettings::Exec(b) => Some(b.timeout),
            BackendSettings::Email(b) => Some(b.timeout),
            BackendSettings::Twilio(b) => Some(b.timeout),
            BackendSettings::Sip(b) => Some(b.timeout),
            BackendSettings::Telegram(b) => Some(b.timeout),
            BackendSettings::Slack(b) => Some(b.timeout),
            BackendSettings::Mattermost(b) | BackendSettings::Rocketchat(b) => Some(b.timeout),
            BackendSettings::Ntfy(b) => Some(b.timeout),
        }
    }
}
