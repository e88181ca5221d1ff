//! Layered configuration: built-in defaults, a YAML file, environment variables, CLI flags.
//!
//! Option names follow the original service so that its YAML files keep working; every
//! struct denies unknown keys so that a typo is a startup error naming the option.
//!
//! Where each section lives (the file is named after the section, or holds it with its kin):
//!
//! | options | file |
//! | --- | --- |
//! | `debug` and the [`Settings`] root | `mod.rs` |
//! | `app.*` (and [`Secret`], [`Tokens`], [`ListenAddr`]) | `app.rs` |
//! | `db.*` | `db.rs` |
//! | `grafana.*`, `grafana.oncall.*`, `grafana.oncall.schedules.<key>.*` | `grafana.rs` |
//! | `plugin.backend`, `plugin.backends`, `plugin.routes.<kind>[i].*` | `plugin.rs` |
//! | `plugin.backends.<name>.*`, one struct per `type` | `backends.rs` |
//! | `plugin.messages.<backend>.*` | `messages.rs` |
//! | `console.*` | `console.rs` |
//! | `queue.*`, `limits.*`, `dedup.*`, `push.*`, `heartbeat.*`, `directory.*` | `queue.rs` |
//!
//! Loading (file, environment, flags) is in `load.rs`, every check across options in
//! `validate.rs`, and the value readers shared by all sections in `duration.rs` and `scalar.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod app;
mod backends;
mod console;
mod db;
pub mod duration;
#[cfg(test)]
mod example_file;
mod grafana;
mod load;
mod messages;
mod plugin;
mod queue;
mod scalar;
mod validate;

pub use app::{AppSettings, ListenAddr, Secret, Tokens};
pub use backends::{
    BasicAuth, EmailSettings, ExecSettings, MattermostSettings, NtfySettings, ReplySettings,
    SipSettings, SlackSettings, SmtpSecurity, TelegramSettings, TwilioSettings, WebhookSettings,
};
pub use console::ConsoleSettings;
pub use db::{DbSettings, Driver, PoolSettings};
pub use grafana::{GrafanaSettings, OncallSettings, ScheduleSettings};
pub use load::{Overrides, env_vars, unknown_env_vars};
pub use messages::{Medium, MessageSettings, TemplateSource};
pub use plugin::{BackendSettings, OnTimeout, PluginSettings, ROUTE_KINDS, RouteSettings};
pub use queue::{
    Cap, DedupSettings, DirectorySettings, HeartbeatSettings, LimitsSettings, PushSettings,
    QueueSettings,
};
pub(crate) use scalar::Scalar;

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
    /// The web console.
    pub console: ConsoleSettings,
}

impl Settings {
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

#[cfg(test)]
mod tests {
    use super::*;

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
