//! The command line: the global flags, one module per subcommand, and what they share.

pub mod check_config;
pub mod config_show;
pub mod devices;
pub mod events;
pub mod integrations;
pub mod notify;
pub mod output;
pub mod schedules;
pub mod serve;
pub mod templates;
pub mod users;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use oncall_relay::config::{Overrides, Settings};
use oncall_relay::directory::Directory;
use oncall_relay::store::Store;

/// The "Grafana Cloud" for self-hosted Grafana OnCall: phone calls, SMS and more, routed to
/// your own backends.
///
/// Configuration comes from built-in defaults, then the YAML file, then environment variables
/// named ONCALL_RELAY_<SECTION>__<OPTION> (e.g. ONCALL_RELAY_APP__AUTH_TOKEN), then the flags
/// below.
#[derive(Debug, Parser)]
#[command(name = "oncall-relay", version, about, long_about)]
pub struct Cli {
    /// Flags every subcommand takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from, and the options most often set on the command line.
#[derive(Debug, Args)]
pub struct Global {
    /// YAML configuration file [default: config/config.yml when it exists]
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Listen address, e.g. :8880 or 127.0.0.1:8880 (app.port)
    #[arg(long, global = true, value_name = "ADDR")]
    port: Option<String>,
    /// Public base URL sent to OnCall (app.hostname)
    #[arg(long, global = true, value_name = "URL")]
    hostname: Option<String>,
    /// API token OnCall must present (app.auth_token)
    #[arg(long, global = true, value_name = "TOKEN")]
    auth_token: Option<String>,
    /// trace, debug, info, warn or error (app.log_level)
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// sqlite or postgres (db.driver)
    #[arg(long, global = true, value_name = "DRIVER")]
    db_driver: Option<String>,
    /// Full database URL, e.g. postgres://user@host/db (db.url)
    #[arg(long, global = true, value_name = "URL")]
    db_url: Option<String>,
    /// SQLite database file (db.path)
    #[arg(long, global = true, value_name = "PATH")]
    db_path: Option<String>,
}

impl Global {
    /// The flags as configuration overrides, the last layer over file and environment.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides::default();
        o.set("app.port", self.port.clone());
        o.set("app.hostname", self.hostname.clone());
        o.set("app.auth_token", self.auth_token.clone());
        o.set("app.log_level", self.log_level.clone());
        o.set("db.driver", self.db_driver.clone());
        o.set("db.url", self.db_url.clone());
        o.set("db.path", self.db_path.clone());
        o
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve,
    /// Manage the user directory (who OnCall can call, and at which number).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Inspect notifications and delivery attempts.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Manage mobile devices: which user a push token belongs to.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Show the integrations OnCall created (its heartbeat) and their state.
    #[command(subcommand)]
    Integrations(integrations::IntegrationsCommand),
    /// Manage tracked OnCall schedules and see who is on duty.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// Send test notifications through the configured routes.
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Preview the texts people receive (`plugin.messages`).
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Validate the configuration, backends, routes and templates without sending anything.
    CheckConfig,
    /// Print the effective configuration (secrets hidden) and exit.
    Config,
}

/// How a listing is printed; flattened into every `list`-like subcommand.
#[derive(Debug, Args)]
pub struct ListFormat {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Names (never values) the `ONCALL_RELAY_*` variables that set nothing, once.
pub fn warn_ignored(ignored: &[String]) {
    if !ignored.is_empty() {
        tracing::warn!(
            variables = %ignored.join(", "),
            "ignoring environment variables that name no option (Kubernetes sets some for a Service named oncall-relay; `enableServiceLinks: false` stops that)"
        );
    }
}

/// The database, migrated to this version.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.db).await?;
    store.migrate().await?;
    Ok(store)
}

/// The database and the user directory over it, for the subcommands that look users up.
pub async fn open_directory(settings: &Settings) -> anyhow::Result<(Store, Directory)> {
    let store = open_store(settings).await?;
    let dir = Directory::load(store.clone()).await?;
    Ok((store, dir))
}

/// The names a `route` contact may take: `stdout` and the configured backends.
pub fn backend_names(settings: &Settings) -> Vec<&str> {
    let mut names: Vec<&str> = settings
        .plugin
        .backends
        .keys()
        .map(String::as_str)
        .collect();
    names.insert(0, "stdout");
    names
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // Catches conflicting names, bad defaults and missing ids that clap only reports
        // when the offending subcommand is parsed.
        Cli::command().debug_assert();
    }
}
