//! `plugin.backends.<name>.*`: each backend type's options, selected by `type`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::app::Secret;
use super::duration;
use super::scalar::opt_string_or_int;

/// A `webhook` backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Target URL.
    pub url: String,
    /// HTTP method (POST by default).
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Request timeout.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Body template (Jinja syntax); a JSON document describing the notification when absent.
    pub body: Option<String>,
    /// Content type of a templated body.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Sends `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// Sends HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// Signs each request: `X-Relay-Timestamp` and
    /// `X-Relay-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
    pub signing_secret: Option<Secret>,
    /// Percent-encodes every value printed into the URL (and into a form-encoded body), so an
    /// alert text cannot add parameters; `false` prints values as they are.
    #[serde(default = "default_true")]
    pub url_encode: bool,
    /// Replies this gateway posts to `/hooks/sms/<backend name>`; absent: none accepted.
    pub replies: Option<ReplySettings>,
    /// For a webhook that sends SMS: most segments (GSM-7: 153 characters each, UCS-2: 67) a
    /// message may take; longer text is shortened at a word. Absent: sent as it is.
    #[serde(default)]
    pub max_segments: Option<usize>,
}

/// How a generic SMS gateway posts the replies people send.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplySettings {
    /// Shared secret the gateway presents: `Authorization: Bearer <secret>` or `?secret=`.
    pub secret: Secret,
    /// Field (dotted path in JSON) holding the sender's number.
    #[serde(default = "default_from_field")]
    pub from_field: String,
    /// Field (dotted path in JSON) holding the text.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// Also send the answer to the person as an SMS through this backend (otherwise it is only
    /// in the HTTP answer, for gateways that reply with it).
    #[serde(default)]
    pub answer_by_sms: bool,
}

fn default_from_field() -> String {
    "from".into()
}
fn default_text_field() -> String {
    "text".into()
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            url: String::new(),
            method: default_method(),
            headers: BTreeMap::new(),
            timeout: default_timeout(),
            body: None,
            content_type: default_content_type(),
            bearer_token: None,
            basic_auth: None,
            signing_secret: None,
            url_encode: true,
            replies: None,
            max_segments: None,
        }
    }
}

/// HTTP basic authentication credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
}

/// How long one delivery may take unless a backend's `timeout` says otherwise.
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
/// A number default written beside its option: `#[serde(default = "number::<_, 1600>")]`.
fn number<T: From<u16>, const N: u16>() -> T {
    T::from(N)
}
/// A duration default written beside its option: `#[serde(default = "secs::<30>")]`.
fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}
fn default_method() -> String {
    "POST".into()
}
fn default_true() -> bool {
    true
}
fn default_content_type() -> String {
    "application/json".into()
}

/// A `telegram` backend: a bot sends each notification to the user's chat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// Bot token from @BotFather (`123456:ABC-...`).
    pub token: Secret,
    /// Chat for users without a `telegram` contact (a chat id, or `@channelname`).
    #[serde(default, deserialize_with = "opt_string_or_int")]
    pub chat_id: Option<String>,
    /// Bot API base URL.
    #[serde(default = "default_telegram_api_base")]
    pub api_base: String,
    /// Longest time one delivery may take (all parts of a long message together).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Pages get Acknowledge / Resolve / Silence buttons, and the bot reads replies, by
    /// long polling `getUpdates` (one replica at a time polls). Needs OnCall's API.
    #[serde(default)]
    pub replies: bool,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            token: Secret::default(),
            chat_id: None,
            api_base: default_telegram_api_base(),
            timeout: default_timeout(),
            replies: false,
        }
    }
}

/// A `slack` backend: an incoming webhook (`webhook_url`) or the Web API (`token` + `channel`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackSettings {
    /// Incoming webhook URL (`https://hooks.slack.com/services/...`).
    pub webhook_url: Option<Secret>,
    /// Bot token (`xoxb-...`) for `chat.postMessage`.
    pub token: Option<Secret>,
    /// Channel for users without a `slack` contact (Web API only).
    pub channel: Option<String>,
    /// Web API base URL.
    pub api_base: String,
    /// Request timeout.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// The Slack app's signing secret: pages get Acknowledge / Resolve / Silence buttons, and
    /// clicks posted to `/hooks/slack/<backend name>` are verified with it.
    pub signing_secret: Option<Secret>,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            webhook_url: None,
            token: None,
            channel: None,
            api_base: "https://slack.com/api".into(),
            timeout: default_timeout(),
            signing_secret: None,
        }
    }
}

/// A `mattermost` (or `rocketchat`) backend: an incoming webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MattermostSettings {
    /// Incoming webhook URL (it holds the hook's key).
    pub url: Secret,
    /// Name the posts appear under (when the server allows overriding it).
    pub username: Option<String>,
    /// Channel for users without a contact; empty: the hook's own channel.
    pub channel: Option<String>,
    /// Request timeout.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Token of a Mattermost slash command (`/oncall`) whose request URL is
    /// `<app.hostname><app.path_prefix>/hooks/mattermost/<backend>/command`.
    pub command_token: Option<Secret>,
}

impl Default for MattermostSettings {
    fn default() -> Self {
        MattermostSettings {
            url: Secret::default(),
            username: None,
            channel: None,
            timeout: default_timeout(),
            command_token: None,
        }
    }
}

/// An `ntfy` backend: publishes to a topic of an ntfy server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NtfySettings {
    /// Server base URL.
    pub server: String,
    /// Topic for users without an `ntfy` contact.
    pub topic: Option<String>,
    /// Access token (`tk_...`), sent as `Authorization: Bearer`.
    pub token: Option<Secret>,
    /// User for basic authentication (instead of a token).
    pub user: Option<String>,
    /// Password for basic authentication.
    pub password: Option<Secret>,
    /// Priority (1-5) of ordinary notifications.
    pub priority: u8,
    /// Priority (1-5) of calls, heartbeat alerts and critical pushes.
    pub important_priority: u8,
    /// Request timeout.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for NtfySettings {
    fn default() -> Self {
        NtfySettings {
            server: "https://ntfy.sh".into(),
            topic: None,
            token: None,
            user: None,
            password: None,
            priority: 3,
            important_priority: 5,
            timeout: default_timeout(),
        }
    }
}

fn default_telegram_api_base() -> String {
    "https://api.telegram.org".into()
}

/// An `exec` backend: runs a program per notification, never through a shell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSettings {
    /// The program: a path, or a name looked up in `PATH`.
    pub command: String,
    /// Its arguments; each one is a Jinja template rendered to exactly one argument.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables (the relay's own environment is not passed on).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Exit codes meaning "retrying cannot help": the next route is tried at once.
    #[serde(default = "default_exec_permanent_exit_codes")]
    pub permanent_exit_codes: Vec<i32>,
    /// Longest run; the program is killed after it.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// For a program that sends SMS: most segments (GSM-7: 153 characters each, UCS-2: 67) a
    /// message may take; longer text is shortened at a word. Absent: passed as it is.
    #[serde(default)]
    pub max_segments: Option<usize>,
}

fn default_exec_permanent_exit_codes() -> Vec<i32> {
    vec![2]
}

/// How an `email` backend secures its SMTP connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// No encryption (port 25 by default): only for a relay on a trusted network.
    None,
}

/// An `email` backend: one plain-text mail per notification over SMTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// SMTP server host name.
    pub host: String,
    /// SMTP port (default 587 with `starttls`, 465 with `tls`, 25 with `none`).
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// SMTP user, if the server wants one.
    pub username: Option<String>,
    /// SMTP password.
    pub password: Option<Secret>,
    /// Sender, `oncall@example.com` or `OnCall <oncall@example.com>`.
    pub from: String,
    /// Recipient for notifications without a user email (the user's `email` contact, else
    /// the user's address, comes first).
    pub to: Option<String>,
    /// Subject template (default `[OnCall] {{ title }}`).
    pub subject: Option<String>,
    /// Longest time one mail may take.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
}

/// A `twilio` backend: SMS and voice calls through Twilio's REST API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    /// Account SID (`AC...`), the API user.
    pub account_sid: String,
    /// Auth token, the API password.
    pub auth_token: Secret,
    /// The Twilio number calls and SMS come from (E.164).
    pub from: String,
    /// API base URL (default `https://api.twilio.com`).
    #[serde(default = "default_twilio_api_base")]
    pub api_base: String,
    /// Most characters per SMS (default and most 1600).
    #[serde(default = "number::<_, 1600>")]
    pub max_length: usize,
    /// Send a longer text as several numbered SMS instead of cutting it (default true).
    #[serde(default = "default_true")]
    pub split: bool,
    /// Most SMS segments (GSM-7: 153 characters each, UCS-2: 67) one notification may take
    /// over all its parts; longer text is shortened at a word (default 10).
    #[serde(default = "number::<_, 10>")]
    pub max_segments: usize,
    /// Text-to-speech voice of calls (e.g. `Polly.Joanna`; Twilio's default when absent).
    pub voice: Option<String>,
    /// Language of calls (e.g. `en-US`).
    pub language: Option<String>,
    /// How often a call says the message (default 2).
    #[serde(default = "number::<_, 2>")]
    pub repeat: u32,
    /// Longest time one delivery (all parts of an SMS) may take.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// People act on pages from here: SMS replies (Twilio posts them to
    /// `/hooks/twilio/<backend>/sms`) and phone keys during a call (1 acknowledge, 2 resolve,
    /// 3 silence 30 minutes). Needs `app.hostname` and OnCall's API.
    #[serde(default)]
    pub replies: bool,
}

fn default_twilio_api_base() -> String {
    "https://api.twilio.com".into()
}

impl Default for TwilioSettings {
    fn default() -> Self {
        TwilioSettings {
            account_sid: String::new(),
            auth_token: Secret::default(),
            from: String::new(),
            api_base: default_twilio_api_base(),
            max_length: number::<_, 1600>(),
            split: true,
            max_segments: number::<_, 10>(),
            voice: None,
            language: None,
            repeat: number::<_, 2>(),
            timeout: default_timeout(),
            replies: false,
        }
    }
}

/// A `sip` backend: calls originated through Asterisk ARI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSettings {
    /// Asterisk's HTTP address, e.g. `http://asterisk:8088`.
    pub url: String,
    /// ARI user (`ari.conf`).
    pub username: String,
    /// ARI password.
    pub password: Secret,
    /// Endpoint to dial, a Jinja template (default `PJSIP/{{ phone }}@trunk`).
    #[serde(default = "default_sip_endpoint")]
    pub endpoint: String,
    /// Dialplan context that answers and reads the message (default `oncall`).
    #[serde(default = "default_dialplan")]
    pub context: String,
    /// Dialplan extension (default `oncall`).
    #[serde(default = "default_dialplan")]
    pub extension: String,
    /// Dialplan priority (default 1).
    #[serde(default = "number::<_, 1>")]
    pub priority: u32,
    /// Caller ID shown to the callee, e.g. `"OnCall" <+4930123456>`.
    pub caller_id: Option<String>,
    /// How long the phone rings before Asterisk gives up (default 30s).
    #[serde(default = "secs::<30>", with = "duration")]
    pub ring_timeout: Duration,
    /// Longest time the originate request may take.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Stasis application (an `ari.conf` app name) to originate calls into. Set, the relay
    /// listens to the app's events: it learns whether each call was answered (so a route step
    /// can require an answer), then hands the answered call to the dialplan above.
    pub app: Option<String>,
    /// Act on the key a person presses during the call (1 acknowledge, 2 resolve, 3 silence
    /// 30 minutes), which the dialplan hands back with `Stasis(<app>,key,${KEY})`. Needs `app`
    /// and OnCall's API.
    #[serde(default)]
    pub replies: bool,
}

fn default_sip_endpoint() -> String {
    "PJSIP/{{ phone }}@trunk".into()
}
fn default_dialplan() -> String {
    "oncall".into()
}

#[cfg(test)]
mod tests;
