//! Layered configuration: built-in defaults, a YAML file, environment variables, CLI flags.
//!
//! Option names follow the original service so that its YAML files keep working; every
//! struct denies unknown keys so that a typo is a startup error naming the option.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of the environment variables read as configuration (`ONCALL_RELAY_APP__PORT`).
pub const ENV_PREFIX: &str = "ONCALL_RELAY_";
/// Configuration file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/config.yml";

/// Errors raised while assembling the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML file, an environment variable or a flag holds a bad key or value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The file named by `--config` does not exist.
    #[error("configuration file {0} not found")]
    MissingFile(PathBuf),
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        // figment reports one error per bad key; name every one of them and where it came
        // from: the environment variable, or the option and its file.
        let parts: Vec<String> = err
            .into_iter()
            .map(|e| {
                let profile = e.profile.clone().unwrap_or_default();
                match &e.metadata {
                    Some(m) if m.name == ENV_SOURCE && !e.path.is_empty() => format!(
                        "environment variable `{}`: {}",
                        m.interpolate(&profile, &e.path),
                        e.kind
                    ),
                    meta => {
                        let key = if e.path.is_empty() {
                            String::new()
                        } else {
                            format!("option `{}`: ", e.path.join("."))
                        };
                        // A code location means nothing to an operator; a file does.
                        let source = meta
                            .as_ref()
                            .and_then(|m| match &m.source {
                                Some(figment::Source::File(path)) => {
                                    Some(format!(" [in {}]", path.display()))
                                }
                                _ if m.name == FLAGS_SOURCE => Some(format!(" [from {}]", m.name)),
                                _ => None,
                            })
                            .unwrap_or_default();
                        format!("{key}{}{source}", e.kind)
                    }
                }
            })
            .collect();
        ConfigError::Invalid(parts.join("; "))
    }
}

/// Provider name of environment variables in error messages.
const ENV_SOURCE: &str = "environment variable";
/// Provider name of command-line flags in error messages.
const FLAGS_SOURCE: &str = "command-line flags";

/// A scalar as YAML, JSON or the environment spell it, read without `#[serde(untagged)]` so
/// that a wrong type is reported as such instead of as "no variant matched".
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    /// A string.
    Text(String),
    /// A whole number.
    Int(i128),
    /// A number with a fraction.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Null or nothing.
    Null,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Scalar, E> {
                i128::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format!("`{v}` is too large")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                Scalar::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    /// The value as text: strings as they are, numbers and booleans as written.
    pub(crate) fn into_text(self) -> Option<String> {
        match self {
            Scalar::Text(s) => Some(s),
            Scalar::Int(n) => Some(n.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Null => None,
        }
    }
}

/// YAML through `yaml_serde` (figment's own YAML support uses an archived parser).
struct Yaml;

impl Format for Yaml {
    type Error = yaml_serde::Error;
    const NAME: &'static str = "YAML";

    fn from_str<T: serde::de::DeserializeOwned>(string: &str) -> Result<T, Self::Error> {
        yaml_serde::from_str(string)
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Exposes profiling endpoints on the admin side (off by default).
    pub debug: bool,
    /// HTTP server, logging and authentication.
    pub app: AppSettings,
    /// Database connection.
    pub db: DbSettings,
    /// Grafana and OnCall connection details (schedules and incident details).
    pub grafana: GrafanaSettings,
    /// Delivery backends ("plugins").
    pub plugin: PluginSettings,
    /// Durable notification queue.
    pub queue: QueueSettings,
    /// User directory behaviour.
    pub directory: DirectorySettings,
    /// Mobile push relay.
    pub push: PushSettings,
    /// Watching OnCall's own heartbeat.
    pub heartbeat: HeartbeatSettings,
    /// Caps on calls, SMS and pushes.
    pub limits: LimitsSettings,
    /// Repeated identical notifications.
    pub dedup: DedupSettings,
}

/// `app.*`: HTTP server, logging and authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    /// Listen address: `:8880`, `127.0.0.1:8880` or a bare port.
    pub port: ListenAddr,
    /// Public base URL sent to OnCall (derived from each request when empty).
    pub hostname: String,
    /// Log level: trace, debug, info, warn, error.
    pub log_level: String,
    /// File that log lines are appended to; stdout when empty.
    pub log_path: String,
    /// Version string reported in logs.
    pub version: String,
    /// Token(s) OnCall must present: one string or a list.
    pub auth_token: Tokens,
    /// Accept any token when none is configured (the original's behaviour); loudly discouraged.
    pub allow_any_token: bool,
    /// Token(s) for the admin API (`/api/admin/v1`); the admin API is off without one.
    pub admin_token: Tokens,
    /// Token(s) a scraper must present for `/metrics`; open to anyone when empty.
    pub metrics_token: Tokens,
    /// How often the gauges that need the database are sampled for `/metrics`.
    #[serde(with = "duration")]
    pub metrics_interval: Duration,
    /// Optional path prefix the API is also served under, e.g. `/oncall`.
    pub path_prefix: String,
    /// Longest time one request may take before it is answered with an error.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// After SIGTERM, longest wait for requests and deliveries in flight to finish.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            port: ListenAddr(":8880".into()),
            hostname: String::new(),
            // The original defaulted to debug, which logs personal data (emails, numbers).
            log_level: "info".into(),
            log_path: String::new(),
            version: "1.0".into(),
            auth_token: Tokens::default(),
            allow_any_token: false,
            admin_token: Tokens::default(),
            metrics_token: Tokens::default(),
            metrics_interval: Duration::from_secs(10),
            path_prefix: String::new(),
            write_timeout: Duration::from_secs(60),
            body_limit: 256 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A listen address in the original's Go style (`:8880` means every interface).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenAddr(pub String);

impl ListenAddr {
    /// The address in a form `TcpListener::bind` accepts.
    pub fn socket_addr(&self) -> Result<String, ConfigError> {
        listen_addr(&self.0)
            .map_err(|message| ConfigError::Invalid(format!("option `app.port`: {message}")))
    }
}

fn listen_addr(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let addr = if let Some(port) = raw.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if raw.chars().all(|c| c.is_ascii_digit()) {
        format!("0.0.0.0:{raw}")
    } else {
        raw.to_string()
    };
    let port_ok = addr
        .rsplit_once(':')
        .map(|(_, p)| p.parse::<u16>().is_ok())
        .unwrap_or(false);
    if port_ok {
        Ok(addr)
    } else {
        Err(format!(
            "`{raw}` is not a listen address with a port from 0 to 65535 (use `:8880` or `127.0.0.1:8880`)"
        ))
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Scalar::deserialize(d)? {
            s @ (Scalar::Text(_) | Scalar::Int(_)) => s.into_text().unwrap_or_default(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "`{}` is not a listen address (use `:8880` or `127.0.0.1:8880`)",
                    other.into_text().unwrap_or_default()
                )));
            }
        };
        listen_addr(&text).map_err(serde::de::Error::custom)?;
        Ok(ListenAddr(text))
    }
}

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(d)? {
            s @ (Scalar::Text(_) | Scalar::Int(_)) => Ok(Secret(s.into_text().unwrap_or_default())),
            Scalar::Null => Ok(Secret::default()),
            _ => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

/// One token or several, each accepted (several ease a rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tokens(pub Vec<Secret>);

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<Secret>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token or a list of tokens")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(vec![Secret(v.to_string())])
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(vec![Secret(v.to_string())])
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(vec![Secret(v.to_string())])
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Secret>()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        let list = d.deserialize_any(V)?;
        // Allow comma-separated lists in one environment variable.
        let tokens = list
            .into_iter()
            .flat_map(|s| {
                s.0.split(',')
                    .map(|t| Secret(t.trim().to_string()))
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.0.is_empty())
            .collect();
        Ok(Tokens(tokens))
    }
}

/// Which database engine holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Embedded SQLite file (single node).
    Sqlite,
    /// PostgreSQL (any number of replicas).
    #[serde(alias = "postgresql", alias = "pgx")]
    Postgres,
}

/// `db.*`: database connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbSettings {
    /// `sqlite` (default) or `postgres`.
    pub driver: Driver,
    /// Full connection URL; wins over the individual options when set.
    pub url: Secret,
    /// SQLite database file.
    pub path: String,
    /// PostgreSQL host.
    pub addr: String,
    /// PostgreSQL port.
    pub port: u16,
    /// PostgreSQL user.
    pub user: String,
    /// PostgreSQL password.
    pub password: Secret,
    /// PostgreSQL database name.
    pub dbname: String,
    /// PostgreSQL `sslmode` (disable, prefer, require, verify-ca, verify-full).
    pub sslmode: String,
    /// Longest wait for a connection from the pool (or a new one).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Statement timeout for reads.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Statement timeout for writes.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Connection pool sizing.
    pub pool: PoolSettings,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            driver: Driver::Sqlite,
            url: Secret::default(),
            path: "oncall-relay.db".into(),
            addr: "127.0.0.1".into(),
            port: 5432,
            user: "admin".into(),
            password: Secret("admin".into()),
            dbname: "emu_oncall".into(),
            sslmode: "prefer".into(),
            timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            pool: PoolSettings::default(),
        }
    }
}

/// `db.pool.*`: connection pool sizing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_open_connections: u32,
    /// Connections kept open while idle.
    pub max_idle_connections: u32,
    /// A connection is replaced after this long.
    #[serde(with = "duration")]
    pub max_life_time: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_open_connections: 16,
            max_idle_connections: 2,
            max_life_time: Duration::from_secs(30 * 60),
        }
    }
}

/// `grafana.*`: connection to Grafana and OnCall.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaSettings {
    /// Grafana base URL.
    pub url: String,
    /// Credentials sent to Grafana in the `Authorization` header.
    pub header_token: Secret,
    /// OnCall connection and tracked schedules.
    pub oncall: OncallSettings,
}

/// `grafana.oncall.*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OncallSettings {
    /// OnCall base URL.
    pub url: String,
    /// Token sent to OnCall.
    pub header_token: Secret,
    /// Load more details about incidents from OnCall.
    pub incident_details: bool,
    /// Schedules to track, by key.
    pub schedules: BTreeMap<String, ScheduleSettings>,
    /// How often every tracked schedule's iCal export is fetched.
    #[serde(with = "duration")]
    pub schedule_poll_interval: Duration,
    /// Remind people this long before their shift starts (`local` transport); 0 = off.
    #[serde(with = "duration")]
    pub schedule_reminder: Duration,
}

impl Default for OncallSettings {
    fn default() -> Self {
        OncallSettings {
            url: String::new(),
            header_token: Secret::default(),
            incident_details: false,
            schedules: BTreeMap::new(),
            schedule_poll_interval: Duration::from_secs(60),
            schedule_reminder: Duration::ZERO,
        }
    }
}

/// `grafana.oncall.schedules.<KEY>.*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Display name (the calendar's own name overrides it).
    pub name: String,
    /// iCal export URL, or a path appended to `grafana.oncall.url`.
    pub ical_url: String,
    /// `local` or `callback`.
    pub transport: Option<String>,
    /// The original's code read this key instead of `transport`.
    pub notify: Option<String>,
    /// Where the `callback` transport posts.
    pub callback_url: String,
    /// Extra request headers for the iCal URL (e.g. `Authorization`); without one,
    /// `grafana.oncall.header_token` is sent as `Authorization` when set and the URL is on
    /// `grafana.oncall.url`'s origin.
    pub headers: BTreeMap<String, String>,
}

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
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            backend: "stdout".into(),
            backends: BTreeMap::new(),
            routes: BTreeMap::new(),
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub important: Option<bool>,
    /// Attempts on this backend before the next step is tried (default `queue.max_attempts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
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
    #[serde(default = "default_webhook_timeout", with = "duration")]
    pub timeout: Duration,
    /// Body template (Jinja syntax); a JSON document describing the notification when absent.
    #[serde(default)]
    pub body: Option<String>,
    /// Content type of a templated body.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Sends `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Sends HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Signs each request: `X-Relay-Timestamp` and
    /// `X-Relay-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Percent-encodes every value printed into the URL (and into a form-encoded body), so an
    /// alert text cannot add parameters; `false` prints values as they are.
    #[serde(default = "default_true")]
    pub url_encode: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            url: String::new(),
            method: default_method(),
            headers: BTreeMap::new(),
            timeout: default_webhook_timeout(),
            body: None,
            content_type: default_content_type(),
            bearer_token: None,
            basic_auth: None,
            signing_secret: None,
            url_encode: true,
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

fn default_method() -> String {
    "POST".into()
}
fn default_true() -> bool {
    true
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
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
    #[serde(default = "default_chat_timeout", with = "duration")]
    pub timeout: Duration,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            token: Secret::default(),
            chat_id: None,
            api_base: default_telegram_api_base(),
            timeout: default_chat_timeout(),
        }
    }
}

/// A `slack` backend: an incoming webhook (`webhook_url`) or the Web API (`token` + `channel`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// Incoming webhook URL (`https://hooks.slack.com/services/...`).
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    /// Bot token (`xoxb-...`) for `chat.postMessage`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Channel for users without a `slack` contact (Web API only).
    #[serde(default)]
    pub channel: Option<String>,
    /// Web API base URL.
    #[serde(default = "default_slack_api_base")]
    pub api_base: String,
    /// Request timeout.
    #[serde(default = "default_chat_timeout", with = "duration")]
    pub timeout: Duration,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            webhook_url: None,
            token: None,
            channel: None,
            api_base: default_slack_api_base(),
            timeout: default_chat_timeout(),
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
    #[serde(default)]
    pub username: Option<String>,
    /// Channel for users without a contact; empty: the hook's own channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// Request timeout.
    #[serde(default = "default_chat_timeout", with = "duration")]
    pub timeout: Duration,
}

impl Default for MattermostSettings {
    fn default() -> Self {
        MattermostSettings {
            url: Secret::default(),
            username: None,
            channel: None,
            timeout: default_chat_timeout(),
        }
    }
}

/// An `ntfy` backend: publishes to a topic of an ntfy server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfySettings {
    /// Server base URL.
    #[serde(default = "default_ntfy_server")]
    pub server: String,
    /// Topic for users without an `ntfy` contact.
    #[serde(default)]
    pub topic: Option<String>,
    /// Access token (`tk_...`), sent as `Authorization: Bearer`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// User for basic authentication (instead of a token).
    #[serde(default)]
    pub user: Option<String>,
    /// Password for basic authentication.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Priority (1-5) of ordinary notifications.
    #[serde(default = "default_ntfy_priority")]
    pub priority: u8,
    /// Priority (1-5) of calls, heartbeat alerts and critical pushes.
    #[serde(default = "default_ntfy_important_priority")]
    pub important_priority: u8,
    /// Request timeout.
    #[serde(default = "default_chat_timeout", with = "duration")]
    pub timeout: Duration,
}

impl Default for NtfySettings {
    fn default() -> Self {
        NtfySettings {
            server: default_ntfy_server(),
            topic: None,
            token: None,
            user: None,
            password: None,
            priority: default_ntfy_priority(),
            important_priority: default_ntfy_important_priority(),
            timeout: default_chat_timeout(),
        }
    }
}

fn default_chat_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_telegram_api_base() -> String {
    "https://api.telegram.org".into()
}
fn default_slack_api_base() -> String {
    "https://slack.com/api".into()
}
fn default_ntfy_server() -> String {
    "https://ntfy.sh".into()
}
fn default_ntfy_priority() -> u8 {
    3
}
fn default_ntfy_important_priority() -> u8 {
    5
}

/// Reads an optional string that YAML may have typed as a number (`chat_id: -100123`).
fn opt_string_or_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Scalar::deserialize(d)? {
        s @ (Scalar::Text(_) | Scalar::Int(_)) => Ok(s.into_text()),
        Scalar::Null => Ok(None),
        _ => Err(serde::de::Error::custom(
            "expected a string or a whole number",
        )),
    }
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
    #[serde(default = "default_exec_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_exec_permanent_exit_codes() -> Vec<i32> {
    vec![2]
}
fn default_exec_timeout() -> Duration {
    Duration::from_secs(10)
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
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// SMTP user, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Sender, `oncall@example.com` or `OnCall <oncall@example.com>`.
    pub from: String,
    /// Recipient for notifications without a user email (the user's `email` contact, else
    /// the user's address, comes first).
    #[serde(default)]
    pub to: Option<String>,
    /// Subject template (default `[OnCall] {{ title }}`).
    #[serde(default)]
    pub subject: Option<String>,
    /// Longest time one mail may take.
    #[serde(default = "default_email_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_email_timeout() -> Duration {
    Duration::from_secs(10)
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
    #[serde(default = "default_twilio_max_length")]
    pub max_length: usize,
    /// Send a longer text as several numbered SMS instead of cutting it (default true).
    #[serde(default = "default_twilio_split")]
    pub split: bool,
    /// Text-to-speech voice of calls (e.g. `Polly.Joanna`; Twilio's default when absent).
    #[serde(default)]
    pub voice: Option<String>,
    /// Language of calls (e.g. `en-US`).
    #[serde(default)]
    pub language: Option<String>,
    /// How often a call says the message (default 2).
    #[serde(default = "default_twilio_repeat")]
    pub repeat: u32,
    /// Longest time one delivery (all parts of an SMS) may take.
    #[serde(default = "default_twilio_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_twilio_api_base() -> String {
    "https://api.twilio.com".into()
}
fn default_twilio_max_length() -> usize {
    1600
}
fn default_twilio_split() -> bool {
    true
}
fn default_twilio_repeat() -> u32 {
    2
}
fn default_twilio_timeout() -> Duration {
    Duration::from_secs(10)
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
    #[serde(default = "default_sip_context")]
    pub context: String,
    /// Dialplan extension (default `oncall`).
    #[serde(default = "default_sip_extension")]
    pub extension: String,
    /// Dialplan priority (default 1).
    #[serde(default = "default_sip_priority")]
    pub priority: u32,
    /// Caller ID shown to the callee, e.g. `"OnCall" <+4930123456>`.
    #[serde(default)]
    pub caller_id: Option<String>,
    /// How long the phone rings before Asterisk gives up (default 30s).
    #[serde(default = "default_sip_ring_timeout", with = "duration")]
    pub ring_timeout: Duration,
    /// Longest time the originate request may take.
    #[serde(default = "default_sip_timeout", with = "duration")]
    pub timeout: Duration,
}

fn default_sip_endpoint() -> String {
    "PJSIP/{{ phone }}@trunk".into()
}
fn default_sip_context() -> String {
    "oncall".into()
}
fn default_sip_extension() -> String {
    "oncall".into()
}
fn default_sip_priority() -> u32 {
    1
}
fn default_sip_ring_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_sip_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `queue.*`: the durable notification queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Deliveries in flight at once in this process.
    pub concurrency: usize,
    /// Attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    #[serde(with = "duration")]
    pub retry_base: Duration,
    /// Longest delay between retries.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// How long a claimed notification stays with its worker before another may take it.
    #[serde(with = "duration")]
    pub lease: Duration,
    /// How often idle workers look for due notifications written by other processes.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Longest wait for an accepted notification to be committed before answering 503.
    #[serde(with = "duration")]
    pub accept_timeout: Duration,
    /// Most notifications committed in one transaction.
    pub batch_size: usize,
    /// Concurrent commits of accepted notifications.
    pub writers: usize,
    /// Run delivery workers in this process.
    pub deliver: bool,
    /// Delivered and failed notifications older than this are deleted (0 keeps them forever).
    #[serde(with = "duration")]
    pub retention: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            concurrency: 32,
            max_attempts: 12,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            accept_timeout: Duration::from_secs(4),
            batch_size: 256,
            writers: 2,
            deliver: true,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `directory.*`: the user directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectorySettings {
    /// How often a server notices directory changes made by other processes.
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        DirectorySettings {
            refresh_interval: Duration::from_secs(1),
        }
    }
}

/// `push.*`: where mobile pushes go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Backend for pushes to devices assigned to a user; empty: `plugin.backend`.
    pub backend: String,
    /// Backend for pushes to unassigned devices (e.g. a team chat webhook); empty: `push.backend`.
    pub fallback_backend: String,
}

/// `limits.*`: caps per kind over a sliding window, per user and for the whole installation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// The window the caps count over.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Phone calls.
    pub call: Cap,
    /// Text messages.
    pub sms: Cap,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            window: Duration::from_secs(24 * 3600),
            call: Cap::default(),
            sms: Cap::default(),
        }
    }
}

/// One kind's caps; 0 means no cap.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cap {
    /// Most per user within the window.
    pub per_user: u64,
    /// Most for everybody together within the window.
    pub total: u64,
}

/// `dedup.*`: the same user, kind and message again within the window is recorded as a
/// duplicate and not delivered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupSettings {
    /// 0 turns it off.
    #[serde(with = "duration")]
    pub window: Duration,
}

/// `heartbeat.*`: watching OnCall's own heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// Silence after which OnCall is reported as down.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// How often silence is checked.
    #[serde(with = "duration")]
    pub check_interval: Duration,
    /// Who is told (emails or ids); empty: every active admin in the directory.
    pub notify_users: Vec<String>,
    /// Backend for these alerts; empty: `plugin.backend`.
    pub backend: String,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        HeartbeatSettings {
            timeout: Duration::from_secs(600),
            check_interval: Duration::from_secs(15),
            notify_users: Vec::new(),
            backend: String::new(),
        }
    }
}

/// Overrides given as command-line flags: the highest layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides(pub BTreeMap<String, serde_json::Value>);

impl Overrides {
    /// Sets `key` (dotted path) to `value` when the value is present.
    pub fn set(&mut self, key: &str, value: Option<impl Into<serde_json::Value>>) {
        if let Some(v) = value {
            self.0.insert(key.to_string(), v.into());
        }
    }

    fn nested(&self) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        for (key, value) in &self.0 {
            let mut node = &mut root;
            let mut parts = key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    node.insert(part.to_string(), value.clone());
                } else {
                    let entry = node
                        .entry(part.to_string())
                        .or_insert_with(|| serde_json::Value::Object(Default::default()));
                    if !entry.is_object() {
                        *entry = serde_json::Value::Object(Default::default());
                    }
                    match entry {
                        serde_json::Value::Object(map) => node = map,
                        _ => break,
                    }
                }
            }
        }
        serde_json::Value::Object(root)
    }
}

impl Settings {
    /// Loads defaults, then the YAML file, then the environment, then `overrides`.
    ///
    /// `path` is the file named by `--config`; it must exist. Without it, the default
    /// path is read when present and skipped otherwise.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_from_env(path, overrides, env_vars())
    }

    /// Same as [`Settings::load`] with an explicit environment (for tests).
    pub fn load_from_env(
        path: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => fig = fig.merge(Yaml::file_exact(p)),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    fig = fig.merge(Yaml::file_exact(default));
                }
            }
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        // The original read only AUTH_TOKEN; keep it working below the documented names.
        let legacy_token = env
            .iter()
            .find(|(k, _)| k == "AUTH_TOKEN")
            .map(|(_, v)| v.clone());
        let known: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| env_path(k).is_some_and(|p| names_an_option(&p)))
            .collect();
        fig = fig.merge(EnvProvider::new(legacy_token, known));
        fig = fig.merge(FlagsProvider(overrides.nested()));
        let settings: Settings = fig.extract()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot: listen address, prefix, backend names, timeouts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.app.port.socket_addr()?;
        let prefix = &self.app.path_prefix;
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.trim_matches('/').is_empty()) {
            return Err(ConfigError::Invalid(format!(
                "option `app.path_prefix`: `{prefix}` must start with `/` and name a path, e.g. `/oncall`"
            )));
        }
        // The heartbeat link (hostname + ~70 characters) must fit OnCall's 200-character column.
        if self.app.hostname.trim().len() > 120 {
            return Err(ConfigError::Invalid(
                "option `app.hostname`: longer than 120 characters; OnCall stores links built from it in 200".into(),
            ));
        }
        for (option, name) in [
            ("plugin.backend", &self.plugin.backend),
            ("push.backend", &self.push.backend),
            ("push.fallback_backend", &self.push.fallback_backend),
            ("heartbeat.backend", &self.heartbeat.backend),
        ] {
            if !name.is_empty() && name != "stdout" && !self.plugin.backends.contains_key(name) {
                return Err(ConfigError::Invalid(format!(
                    "option `{option}`: no backend named `{name}` under `plugin.backends`"
                )));
            }
        }
        if self.plugin.backend.is_empty() {
            return Err(ConfigError::Invalid(
                "option `plugin.backend`: must name a backend (`stdout` by default)".into(),
            ));
        }
        for (kind, steps) in &self.plugin.routes {
            if !ROUTE_KINDS.contains(&kind.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "option `plugin.routes.{kind}`: routes are declared for {}",
                    ROUTE_KINDS.join(", ")
                )));
            }
            for (i, step) in steps.iter().enumerate() {
                if step.backend != "stdout" && !self.plugin.backends.contains_key(&step.backend) {
                    return Err(ConfigError::Invalid(format!(
                        "option `plugin.routes.{kind}[{i}].backend`: no backend named `{}` under `plugin.backends`",
                        step.backend
                    )));
                }
                for role in &step.roles {
                    if crate::roles::Role::parse(role).is_err() {
                        return Err(ConfigError::Invalid(format!(
                            "option `plugin.routes.{kind}[{i}].roles`: `{role}` is not admin, editor, viewer or none"
                        )));
                    }
                }
                if step.attempts == Some(0) {
                    return Err(ConfigError::Invalid(format!(
                        "option `plugin.routes.{kind}[{i}].attempts`: must be at least 1"
                    )));
                }
            }
        }
        if self
            .app
            .admin_token
            .0
            .iter()
            .any(|a| self.app.auth_token.0.contains(a))
        {
            return Err(ConfigError::Invalid(
                "option `app.admin_token`: must differ from every `app.auth_token` (OnCall's token must not administer the relay)".into(),
            ));
        }
        if self
            .app
            .metrics_token
            .0
            .iter()
            .any(|m| self.app.auth_token.0.contains(m) || self.app.admin_token.0.contains(m))
        {
            return Err(ConfigError::Invalid(
                "option `app.metrics_token`: must differ from every `app.auth_token` and `app.admin_token` (a scraper's configuration must not hold a token that places calls)".into(),
            ));
        }
        if self.app.metrics_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "option `app.metrics_interval`: must be more than 0".into(),
            ));
        }
        if self.heartbeat.timeout.is_zero() || self.heartbeat.check_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "options `heartbeat.timeout` and `heartbeat.check_interval` must be more than 0"
                    .into(),
            ));
        }
        for (name, backend) in &self.plugin.backends {
            let chat_timeout = match backend {
                BackendSettings::Telegram(t) => Some(t.timeout),
                BackendSettings::Slack(t) => Some(t.timeout),
                BackendSettings::Mattermost(t) | BackendSettings::Rocketchat(t) => Some(t.timeout),
                BackendSettings::Ntfy(t) => Some(t.timeout),
                _ => None,
            };
            if chat_timeout.is_some_and(|t| t >= self.queue.lease) {
                return Err(ConfigError::Invalid(format!(
                    "option `plugin.backends.{name}.timeout`: must be shorter than `queue.lease` ({}s), or a slow delivery could be repeated",
                    self.queue.lease.as_secs()
                )));
            }
            let call_timeout = match backend {
                BackendSettings::Exec(b) => Some(b.timeout),
                BackendSettings::Email(b) => Some(b.timeout),
                BackendSettings::Twilio(b) => Some(b.timeout),
                BackendSettings::Sip(b) => Some(b.timeout),
                _ => None,
            };
            if call_timeout.is_some_and(|t| t >= self.queue.lease) {
                return Err(ConfigError::Invalid(format!(
                    "option `plugin.backends.{name}.timeout`: must be shorter than `queue.lease` ({}s), or a slow delivery could be repeated",
                    self.queue.lease.as_secs()
                )));
            }
            if let BackendSettings::Webhook(w) = backend {
                if w.timeout >= self.queue.lease {
                    return Err(ConfigError::Invalid(format!(
                        "option `plugin.backends.{name}.timeout`: must be shorter than `queue.lease` ({}s), or a slow delivery could be repeated",
                        self.queue.lease.as_secs()
                    )));
                }
            }
        }
        if self.queue.batch_size == 0 || self.queue.concurrency == 0 || self.queue.writers == 0 {
            return Err(ConfigError::Invalid(
                "options `queue.batch_size`, `queue.concurrency` and `queue.writers` must be at least 1"
                    .into(),
            ));
        }
        if self.queue.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "option `queue.max_attempts`: must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The public base URL configured by the operator, normalised to end with `/`.
    pub fn public_url(&self) -> Option<String> {
        let host = self.app.hostname.trim();
        if host.is_empty() {
            return None;
        }
        let with_scheme = if host.contains("://") {
            host.to_string()
        } else {
            format!("http://{host}")
        };
        Some(format!("{}/", with_scheme.trim_end_matches('/')))
    }
}

/// Environment provider: `ONCALL_RELAY_APP__PORT` → `app.port`. Built by hand rather than
/// with figment's `Env` so that tests can pass an explicit environment, and so that an error
/// names the variable that holds the bad value.
struct EnvProvider {
    values: Overrides,
    /// Option path → the variable that set it.
    names: std::sync::Arc<BTreeMap<String, String>>,
}

impl EnvProvider {
    /// `legacy_token` is the original's `AUTH_TOKEN`; `vars` are `ONCALL_RELAY_*` variables
    /// that name an option.
    fn new(legacy_token: Option<String>, vars: Vec<(String, String)>) -> EnvProvider {
        let mut values = Overrides::default();
        let mut names = BTreeMap::new();
        if let Some(token) = legacy_token {
            values.0.insert("app.auth_token".into(), token.into());
            names.insert("app.auth_token".to_string(), "AUTH_TOKEN".to_string());
        }
        for (key, value) in vars {
            let Some(path) = env_path(&key) else {
                continue;
            };
            values.0.insert(path.clone(), env_value(value));
            names.insert(path, key);
        }
        EnvProvider {
            values,
            names: std::sync::Arc::new(names),
        }
    }
}

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        let names = self.names.clone();
        figment::Metadata::named(ENV_SOURCE).interpolater(
            move |_: &figment::Profile, keys: &[&str]| {
                // The error may sit below the variable's own path (a YAML map in one variable).
                let mut path = keys.join(".");
                loop {
                    if let Some(name) = names.get(&path) {
                        return name.clone();
                    }
                    match path.rsplit_once('.') {
                        Some((head, _)) => path = head.to_string(),
                        None => {
                            return format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase());
                        }
                    }
                }
            },
        )
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(self.values.nested()).data()
    }
}

/// Command-line flags, named as such in error messages.
struct FlagsProvider(serde_json::Value);

impl figment::Provider for FlagsProvider {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(FLAGS_SOURCE)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(&self.0).data()
    }
}

/// The option path an `ONCALL_RELAY_*` variable spells, if it has the prefix.
fn env_path(key: &str) -> Option<String> {
    key.strip_prefix(ENV_PREFIX)
        .map(|rest| rest.to_ascii_lowercase().replace("__", "."))
}

/// An environment value as configuration: lists and maps read as YAML; numbers and booleans
/// only when they read back identically, so that a token like `0123` keeps its leading zero.
fn env_value(value: String) -> serde_json::Value {
    match yaml_serde::from_str::<serde_json::Value>(&value) {
        Ok(v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => v,
        Ok(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)))
            if serde_json::to_string(&v).ok().as_deref() == Some(value.trim()) =>
        {
            v
        }
        _ => serde_json::Value::String(value),
    }
}

/// Whether a dotted path names an option (or lies inside a map of named entries such as
/// `plugin.backends.<name>`).
fn names_an_option(path: &str) -> bool {
    let Ok(mut node) = serde_json::to_value(Settings::default()) else {
        return true;
    };
    if path.is_empty() {
        return false;
    }
    for part in path.split('.') {
        match node {
            // An empty map in the defaults holds entries the operator names.
            serde_json::Value::Object(ref map) if map.is_empty() => return true,
            serde_json::Value::Object(mut map) => match map.remove(part) {
                Some(child) => node = child,
                None => return false,
            },
            _ => return false,
        }
    }
    true
}

/// The process environment, skipping variables that are not valid UTF-8 (none of ours can be).
pub fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The `ONCALL_RELAY_*` variables in `env` that name no option. They are ignored rather
/// than refused: Kubernetes sets `ONCALL_RELAY_PORT`, `ONCALL_RELAY_SERVICE_HOST` and more
/// for a Service named `oncall-relay`.
pub fn unknown_env_vars(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let mut names: Vec<String> = env
        .into_iter()
        .filter(|(k, _)| env_path(k).is_some_and(|p| !names_an_option(&p)))
        .map(|(k, _)| k)
        .collect();
    names.sort();
    names
}

/// Serde helpers for durations written as `60s`, `1m30s`, `500ms` or a number of seconds.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a duration as humantime text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads `60s`, `1m`, `250ms` or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        use super::Scalar;
        let bad = |shown: String| {
            serde::de::Error::custom(format!(
                "`{shown}` is not a duration; write e.g. `60s`, `5m`, `500ms` or a number of seconds"
            ))
        };
        match Scalar::deserialize(d)? {
            Scalar::Int(n) => u64::try_from(n)
                .map(Duration::from_secs)
                .map_err(|_| bad(n.to_string())),
            Scalar::Float(f) if f >= 0.0 && f.is_finite() && f < 1e15 => {
                Ok(Duration::from_secs_f64(f))
            }
            Scalar::Float(f) => Err(bad(f.to_string())),
            Scalar::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{t}` is not a duration ({e}); write e.g. `60s`, `5m`, `500ms`"
                ))
            }),
            other => Err(bad(other.into_text().unwrap_or_default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_yaml(yaml: &str, env: Vec<(&str, &str)>) -> Result<Settings, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(yaml.as_bytes()).expect("write");
        Settings::load_from_env(
            Some(file.path()),
            &Overrides::default(),
            env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_match_the_original() {
        let s = Settings::default();
        assert_eq!(s.app.port.0, ":8880");
        // The one deliberate difference: the original logged at debug, with personal data.
        assert_eq!(s.app.log_level, "info");
        assert_eq!(s.app.version, "1.0");
        assert_eq!(s.db.dbname, "emu_oncall");
        assert_eq!(s.db.driver, Driver::Sqlite);
        assert!(!s.debug);
    }

    #[test]
    fn original_yaml_is_accepted() {
        let s = load_yaml(
            "debug: false\napp:\n  port: 127.0.0.1:9999\n  auth_token: abc\n  write_timeout: 30s\ndb:\n  driver: postgres\n  addr: db\n  pool:\n    max_open_connections: 5\n    max_life_time: 1m\ngrafana:\n  url: http://g\n  oncall:\n    url: http://o\n    schedules:\n      team:\n        name: Team\n        notify: callback\n        ical_url: /api/ical\n        callback_url: http://cb\nplugin:\n  backend: stdout\n",
            vec![],
        )
        .expect("loads");
        assert_eq!(s.app.port.socket_addr().expect("addr"), "127.0.0.1:9999");
        assert_eq!(s.app.auth_token.0, vec![Secret("abc".into())]);
        assert_eq!(s.app.write_timeout, Duration::from_secs(30));
        assert_eq!(s.db.driver, Driver::Postgres);
        assert_eq!(s.db.pool.max_open_connections, 5);
        assert_eq!(s.db.pool.max_life_time, Duration::from_secs(60));
        assert_eq!(
            s.grafana.oncall.schedules["team"].notify.as_deref(),
            Some("callback")
        );
    }

    #[test]
    fn unknown_option_is_named() {
        let err = load_yaml("app:\n  prot: ':1'\n", vec![]).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("prot"), "{text}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load_yaml("db:\n  port: lots\n", vec![]).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("db.port"), "{text}");
    }

    #[test]
    fn environment_beats_file_and_flags_beat_environment() {
        let s = load_yaml(
            "app:\n  log_level: info\n  port: ':1111'\n",
            vec![
                ("ONCALL_RELAY_APP__LOG_LEVEL", "warn"),
                ("ONCALL_RELAY_APP__PORT", "2222"),
                ("ONCALL_RELAY_APP__AUTH_TOKEN", "12345"),
            ],
        )
        .expect("loads");
        assert_eq!(s.app.log_level, "warn");
        assert_eq!(s.app.port.socket_addr().expect("addr"), "0.0.0.0:2222");
        assert_eq!(s.app.auth_token.0, vec![Secret("12345".into())]);

        let mut o = Overrides::default();
        o.set("app.log_level", Some("error"));
        let s = Settings::load_from_env(
            None,
            &o,
            vec![(
                "ONCALL_RELAY_APP__LOG_LEVEL".to_string(),
                "warn".to_string(),
            )],
        )
        .expect("loads");
        assert_eq!(s.app.log_level, "error");
    }

    #[test]
    fn kubernetes_service_variables_are_ignored_and_listed() {
        let env = vec![
            ("ONCALL_RELAY_PORT", "tcp://10.0.0.1:8880"),
            ("ONCALL_RELAY_SERVICE_HOST", "10.0.0.1"),
            ("ONCALL_RELAY_SERVICE_PORT", "8880"),
            ("ONCALL_RELAY_PORT_8880_TCP_ADDR", "10.0.0.1"),
            ("ONCALL_RELAY_APP__PORT", ":9999"),
            ("ONCALL_RELAY_PLUGIN__BACKENDS__GW__TYPE", "stdout"),
        ];
        let s = load_yaml("{}", env.clone()).expect("unknown variables do not stop the service");
        assert_eq!(s.app.port.0, ":9999");
        assert!(s.plugin.backends.contains_key("gw"));
        let unknown =
            unknown_env_vars(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(
            unknown,
            vec![
                "ONCALL_RELAY_PORT",
                "ONCALL_RELAY_PORT_8880_TCP_ADDR",
                "ONCALL_RELAY_SERVICE_HOST",
                "ONCALL_RELAY_SERVICE_PORT",
            ]
        );
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        for (var, value) in [
            ("ONCALL_RELAY_APP__PORT", "99999"),
            ("ONCALL_RELAY_DB__PORT", "lots"),
            ("ONCALL_RELAY_QUEUE__LEASE", "soon"),
        ] {
            let err = load_yaml("{}", vec![(var, value)]).expect_err(var);
            let text = err.to_string();
            assert!(
                text.contains(&format!("environment variable `{var}`")),
                "{text}"
            );
            assert!(!text.contains(".rs"), "no source line: {text}");
            assert!(!text.contains("untagged"), "{text}");
        }
    }

    #[test]
    fn out_of_range_port_names_the_option() {
        for yaml in [
            "app:\n  port: 99999\n",
            "app:\n  port: ':99999'\n",
            "app:\n  port: [1]\n",
        ] {
            let err = load_yaml(yaml, vec![]).expect_err(yaml);
            let text = err.to_string();
            assert!(text.contains("app.port"), "{text}");
            assert!(!text.contains("untagged"), "{text}");
        }
        let err = load_yaml("queue:\n  lease: -5\n", vec![]).expect_err("negative");
        assert!(err.to_string().contains("queue.lease"), "{err}");
        assert!(!err.to_string().contains("untagged"), "{err}");
        let err = load_yaml("app:\n  auth_token: {a: 1}\n", vec![]).expect_err("map token");
        assert!(err.to_string().contains("app.auth_token"), "{err}");
        assert!(!err.to_string().contains("untagged"), "{err}");
    }

    #[test]
    fn legacy_auth_token_variable_works() {
        let s = load_yaml("{}", vec![("AUTH_TOKEN", "legacy")]).expect("loads");
        assert_eq!(s.app.auth_token.0, vec![Secret("legacy".into())]);
        let s = load_yaml(
            "{}",
            vec![
                ("AUTH_TOKEN", "legacy"),
                ("ONCALL_RELAY_APP__AUTH_TOKEN", "new,second"),
            ],
        )
        .expect("loads");
        assert_eq!(
            s.app.auth_token.0,
            vec![Secret("new".into()), Secret("second".into())]
        );
    }

    #[test]
    fn backend_settings_are_checked() {
        let err = load_yaml("plugin:\n  backend: gw\n", vec![]).expect_err("unknown backend");
        assert!(err.to_string().contains("plugin.backend"), "{err}");
        let err = load_yaml(
            "plugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://x\n      colour: red\n",
            vec![],
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("colour"), "{err}");
        let s = load_yaml(
            "plugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://x\n      timeout: 2s\n",
            vec![],
        )
        .expect("loads");
        assert!(matches!(
            s.plugin.backends["gw"],
            BackendSettings::Webhook(_)
        ));
    }

    #[test]
    fn push_and_heartbeat_backends_must_exist() {
        for yaml in [
            "push:\n  backend: nope\n",
            "push:\n  fallback_backend: nope\n",
            "heartbeat:\n  backend: nope\n",
            "heartbeat:\n  timeout: 0s\n",
        ] {
            let err = load_yaml(yaml, vec![]).expect_err(yaml);
            assert!(err.to_string().contains("option"), "{err}");
        }
        load_yaml("push:\n  fallback_backend: stdout\n", vec![]).expect("stdout always exists");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Settings::load_from_env(
            Some(Path::new("/nonexistent/relay.yml")),
            &Overrides::default(),
            Vec::new(),
        )
        .expect_err("missing");
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut s = Settings::default();
        s.app.auth_token = Tokens(vec![Secret("hunter2".into())]);
        s.db.password = Secret("dbpass".into());
        let text = format!("{s:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("dbpass"),
            "{text}"
        );
    }

    #[test]
    fn metrics_token_must_differ_from_the_api_tokens() {
        let mut s = Settings::default();
        s.app.auth_token = Tokens(vec![Secret("oncall".into())]);
        s.app.metrics_token = Tokens(vec![Secret("oncall".into())]);
        let err = s.validate().expect_err("same token").to_string();
        assert!(err.contains("app.metrics_token"), "{err}");
        s.app.metrics_token = Tokens(vec![Secret("scraper".into())]);
        assert!(s.validate().is_ok());
        s.app.metrics_interval = Duration::ZERO;
        let err = s.validate().expect_err("zero interval").to_string();
        assert!(err.contains("app.metrics_interval"), "{err}");
    }

    #[test]
    fn example_config_loads_and_documents_every_option() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/config.example.yml"
        ));
        let text = std::fs::read_to_string(path).expect("example config");
        Settings::load_from_env(Some(path), &Overrides::default(), Vec::new())
            .expect("example config is valid");
        fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(map) if !map.is_empty() => {
                    for (k, v) in map {
                        leaves(k, v, out);
                    }
                }
                _ => out.push(prefix.to_string()),
            }
        }
        let mut keys = Vec::new();
        leaves(
            "",
            &serde_json::to_value(Settings::default()).expect("json"),
            &mut keys,
        );
        for key in keys {
            assert!(
                text.contains(&format!("{key}:")),
                "option `{key}` is missing from config.example.yml"
            );
        }
    }

    #[test]
    fn example_config_documents_every_webhook_option() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/config.example.yml"
        ))
        .expect("example config");
        let webhook = serde_json::to_value(WebhookSettings::default()).expect("json");
        for key in webhook.as_object().expect("object").keys() {
            assert!(
                text.contains(&format!("#     {key}:"))
                    || text.contains(&format!("#     # {key}:")),
                "webhook option `{key}` is missing from config.example.yml"
            );
        }
    }

    #[test]
    fn public_url_ends_with_slash() {
        let mut s = Settings::default();
        assert_eq!(s.public_url(), None);
        s.app.hostname = "relay.example.com/oncall".into();
        assert_eq!(
            s.public_url().as_deref(),
            Some("http://relay.example.com/oncall/")
        );
        s.app.hostname = "https://relay.example.com/".into();
        assert_eq!(
            s.public_url().as_deref(),
            Some("https://relay.example.com/")
        );
    }
}
