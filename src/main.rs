//! The `oncall-relay` command: `serve` runs the service, the other subcommands manage it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use oncall_relay::config::{Overrides, Settings};
use oncall_relay::directory::{
    Directory, DirectoryError, ImportFormat, NewUser, User, UserPatch, parse_import,
};
use oncall_relay::heartbeat::Heartbeats;
use oncall_relay::notify::{Backends, EventFilter, Kind, NewNotification, events, worker};
use oncall_relay::store::{Store, format_ms, now_ms};
use oncall_relay::{Application, telemetry};

/// The "Grafana Cloud" for self-hosted Grafana OnCall: phone calls, SMS and more, routed to
/// your own backends.
///
/// Configuration comes from built-in defaults, then the YAML file, then environment variables
/// named ONCALL_RELAY_<SECTION>__<OPTION> (e.g. ONCALL_RELAY_APP__AUTH_TOKEN), then the flags
/// below.
#[derive(Debug, Parser)]
#[command(name = "oncall-relay", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// YAML configuration file [default: config/config.yml when it exists]
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    config: Option<PathBuf>,
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    Serve,
    /// Manage the user directory (who OnCall can call, and at which number).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect notifications and delivery attempts.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Manage mobile devices: which user a push token belongs to.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Show the integrations OnCall created (its heartbeat) and their state.
    #[command(subcommand)]
    Integrations(IntegrationsCommand),
    /// Manage tracked OnCall schedules and see who is on duty.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Send test notifications through the configured routes.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Validate the configuration, backends, routes and templates without sending anything.
    CheckConfig,
    /// Print the effective configuration (secrets hidden) and exit.
    Config,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user.
    Add(AddUser),
    /// List users.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a user found by email or id.
    Update(UpdateUser),
    /// Remove a user found by email or id.
    Remove {
        /// Email or public id.
        user: String,
    },
    /// Add or update users from a CSV or YAML file, matched by email, or from the Go
    /// service's database.
    Import {
        /// The file (.csv, .yml or .yaml).
        #[arg(
            required_unless_present = "from_emu_oncall",
            conflicts_with = "from_emu_oncall"
        )]
        file: Option<PathBuf>,
        /// File format [default: from the extension]
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// Read the Go service's `oncall_users` table from its PostgreSQL database
        /// (postgres://user:password@host/db): ids kept, phones normalised, roles mapped; rows
        /// that cannot be imported are skipped and listed. Safe to run again.
        #[arg(long, value_name = "POSTGRES_URL")]
        from_emu_oncall: Option<String>,
    },
}

#[derive(Debug, Args)]
struct AddUser {
    /// Email, as in Grafana.
    #[arg(long)]
    email: String,
    /// Phone number with country code, e.g. '+49 30 123456'.
    #[arg(long)]
    phone: Option<String>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Grafana username [default: the email's local part]
    #[arg(long)]
    username: Option<String>,
    /// admin, editor (user), viewer (observer) or none [default: editor]
    #[arg(long)]
    role: Option<String>,
    /// Public id kept as is (at most 20 characters) [default: generated]
    #[arg(long)]
    id: Option<String>,
    /// IANA time zone [default: UTC]
    #[arg(long)]
    timezone: Option<String>,
    /// Add the user as inactive (never called).
    #[arg(long)]
    inactive: bool,
    /// Succeed without changes when a user with this email exists (for setup scripts).
    #[arg(long)]
    if_missing: bool,
    /// A backend address, e.g. telegram=12345678, email=a@example.com, ntfy=alice-pager,
    /// route=sms_gateway (a backend tried first for this user). Repeatable.
    #[arg(long = "contact", value_name = "NAME=VALUE", value_parser = parse_contact)]
    contacts: Vec<(String, String)>,
}

fn parse_contact(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("`{raw}` is not NAME=VALUE"))
}

#[derive(Debug, Args)]
struct UpdateUser {
    /// Email or public id of the user to change.
    user: String,
    /// New email.
    #[arg(long)]
    email: Option<String>,
    /// New phone number.
    #[arg(long, conflicts_with = "no_phone")]
    phone: Option<String>,
    /// Remove the phone number.
    #[arg(long)]
    no_phone: bool,
    /// New display name.
    #[arg(long)]
    name: Option<String>,
    /// New username.
    #[arg(long)]
    username: Option<String>,
    /// New role.
    #[arg(long)]
    role: Option<String>,
    /// Activate or deactivate.
    #[arg(long)]
    active: Option<bool>,
    /// New time zone.
    #[arg(long)]
    timezone: Option<String>,
    /// Set a backend address (NAME=VALUE); an empty value removes it. Repeatable.
    #[arg(long = "contact", value_name = "NAME=VALUE", value_parser = parse_contact)]
    contacts: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// Assign a push token to a user (registering the token if new).
    Add {
        /// The device's push registration token.
        token: String,
        /// Email or id of the user who owns the device.
        #[arg(long)]
        user: String,
        /// Free text, e.g. "Alice's phone".
        #[arg(long)]
        label: Option<String>,
    },
    /// List devices, unassigned ones included.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a device.
    Remove {
        /// The device's push registration token.
        token: String,
    },
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// Send one notification to a user now, through the real routes (each step tried once),
    /// and record it in the events log.
    Test {
        /// Email or id of the recipient.
        #[arg(long)]
        user: String,
        /// call, sms, push or heartbeat.
        #[arg(long, default_value = "sms")]
        kind: String,
        /// The text [default: a test message naming the kind]
        #[arg(long)]
        message: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SchedulesCommand {
    /// Track a schedule (stored in the database; no restart needed).
    Add {
        /// Unique key.
        key: String,
        /// iCal export URL, or a path under `grafana.oncall.url`.
        #[arg(long)]
        ical_url: String,
        /// Display name (the calendar's own name overrides it).
        #[arg(long, default_value = "")]
        name: String,
        /// `local` (notify who goes on duty) or `callback` (POST to --callback-url).
        #[arg(long, default_value = "local")]
        transport: String,
        /// Where the `callback` transport posts.
        #[arg(long, default_value = "")]
        callback_url: String,
    },
    /// List tracked schedules.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop tracking a schedule.
    Remove {
        /// The schedule's key.
        key: String,
    },
    /// Show each schedule's last poll, last error and who is on duty now.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum IntegrationsCommand {
    /// List integrations with their heartbeat state.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List notifications, newest first, with their delivery attempts.
    List {
        /// Only since this long ago (e.g. 1h, 2d) or this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this user (email or id).
        #[arg(long)]
        user: Option<String>,
        /// Only this status: queued, delivering, delivered, failed.
        #[arg(long)]
        status: Option<String>,
        /// Only this kind: call or sms.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many notifications.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Writes to stdout through its lock. A closed pipe (`| head`) is an error that `main` turns
/// into a quiet exit, where `println!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// [`out!`] with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// Whether the error is only that the reader of stdout went away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn overrides(g: &Global) -> Overrides {
    let mut o = Overrides::default();
    o.set("app.port", g.port.clone());
    o.set("app.hostname", g.hostname.clone());
    o.set("app.auth_token", g.auth_token.clone());
    o.set("app.log_level", g.log_level.clone());
    o.set("db.driver", g.db_driver.clone());
    o.set("db.url", g.db_url.clone());
    o.set("db.path", g.db_path.clone());
    o
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader has all it wanted (`users list | head -1`): nothing to report.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.global.config.as_deref(), &overrides(&cli.global))?;
    let ignored = oncall_relay::config::unknown_env_vars(oncall_relay::config::env_vars());
    if !matches!(cli.command, Command::Serve) {
        telemetry::init_cli();
        warn_ignored(&ignored);
    }
    match cli.command {
        Command::Serve => serve(settings, &ignored).await,
        Command::Config => {
            let mut shown = serde_json::to_value(&settings)?;
            redact(&mut shown, "");
            out!("{}", yaml_serde::to_string(&shown)?);
            Ok(())
        }
        Command::Users(cmd) => users(settings, cmd).await,
        Command::Events(cmd) => events_cmd(settings, cmd).await,
        Command::Devices(cmd) => devices(settings, cmd).await,
        Command::Schedules(cmd) => schedules_cmd(settings, cmd).await,
        Command::Notify(NotifyCommand::Test {
            user,
            kind,
            message,
        }) => notify_test(settings, &user, &kind, message).await,
        Command::CheckConfig => check_config(&settings),
        Command::Integrations(IntegrationsCommand::List { json }) => {
            integrations(settings, json).await
        }
    }
}

/// Masks every secret before the configuration is printed: tokens, passwords, keys, header
/// values, and the credentials or query of URLs (webhook URLs often carry a secret).
fn redact(value: &mut serde_json::Value, key: &str) {
    const SECRET_KEYS: [&str; 8] = [
        "auth_token",
        "password",
        "header_token",
        "token",
        "bearer_token",
        "signing_secret",
        "auth_token_secret",
        "webhook_url",
    ];
    match value {
        serde_json::Value::Object(map) => {
            // Header and environment values are credentials more often than not.
            let is_headers = key == "headers" || key == "env";
            for (k, v) in map.iter_mut() {
                if is_headers {
                    *v = serde_json::Value::String("***".into());
                } else {
                    redact(v, k);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, key)),
        serde_json::Value::String(text) if !text.is_empty() => {
            let lower = key.to_ascii_lowercase();
            if SECRET_KEYS.contains(&lower.as_str())
                || lower.ends_with("_token")
                || lower.ends_with("secret")
            {
                *text = "***".into();
            } else if lower == "url" || lower.ends_with("_url") {
                *text = telemetry::redact_url(text);
            }
        }
        _ => {}
    }
}

/// Names (never values) the `ONCALL_RELAY_*` variables that set nothing, once.
fn warn_ignored(ignored: &[String]) {
    if !ignored.is_empty() {
        tracing::warn!(
            variables = %ignored.join(", "),
            "ignoring environment variables that name no option (Kubernetes sets some for a Service named oncall-relay; `enableServiceLinks: false` stops that)"
        );
    }
}

async fn serve(settings: Settings, ignored: &[String]) -> anyhow::Result<()> {
    let _guard = telemetry::init(&settings.app.log_level, &settings.app.log_path)?;
    warn_ignored(ignored);
    let started = std::time::Instant::now();
    let app = Application::build(settings.clone()).await?;
    let addr = app.local_addr()?;
    tracing::info!(
        address = %addr,
        version = %settings.app.version,
        driver = oncall_relay::store::driver_name(app.store().driver()),
        startup_ms = started.elapsed().as_millis() as u64,
        "oncall-relay listening"
    );
    let token = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    app.run().await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.db).await?;
    store.migrate().await?;
    Ok(store)
}

/// The names a `route` contact may take: `stdout` and the configured backends.
fn backend_names(settings: &Settings) -> Vec<&str> {
    let mut names: Vec<&str> = settings
        .plugin
        .backends
        .keys()
        .map(String::as_str)
        .collect();
    names.insert(0, "stdout");
    names
}

/// A `route` contact must name a backend, or the user's notifications would silently skip it.
fn check_route_contact(settings: &Settings, contacts: &[(String, String)]) -> anyhow::Result<()> {
    for (key, value) in contacts {
        let value = value.trim();
        if key.trim().eq_ignore_ascii_case("route")
            && !value.is_empty()
            && !backend_names(settings).contains(&value)
        {
            bail!(
                "--contact route={value}: no backend named `{value}` (configured: {}); check `plugin.backends` or --config",
                backend_names(settings).join(", ")
            );
        }
    }
    Ok(())
}

async fn users(settings: Settings, cmd: UsersCommand) -> anyhow::Result<()> {
    match &cmd {
        UsersCommand::Add(a) => check_route_contact(&settings, &a.contacts)?,
        UsersCommand::Update(u) => check_route_contact(&settings, &u.contacts)?,
        _ => {}
    }
    let store = open_store(&settings).await?;
    let dir = Directory::load(store.clone()).await?;
    match cmd {
        UsersCommand::Add(a) => {
            let if_missing = a.if_missing;
            let email = a.email.clone();
            let added = dir
                .add(NewUser {
                    id: a.id,
                    email: a.email,
                    name: a.name,
                    username: a.username,
                    phone_number: a.phone,
                    role: a.role,
                    active: Some(!a.inactive),
                    timezone: a.timezone,
                    contacts: a.contacts.into_iter().collect(),
                })
                .await;
            match added {
                Ok(user) => outln!("added {}", describe(&user)),
                // Re-running a setup script is fine: the user is there, as asked.
                Err(DirectoryError::Duplicate { field: "email", .. }) if if_missing => {
                    let user = dir.get(&email).await?;
                    outln!("already there, unchanged: {}", describe(&user));
                }
                Err(e) => return Err(e.into()),
            }
        }
        UsersCommand::List { json } => {
            let list = dir.list().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_users(&list)?;
            }
        }
        UsersCommand::Update(u) => {
            let phone = if u.no_phone {
                Some(None)
            } else {
                u.phone.map(Some)
            };
            let user = dir
                .update(
                    &u.user,
                    UserPatch {
                        email: u.email,
                        name: u.name,
                        username: u.username,
                        phone_number: phone,
                        role: u.role,
                        active: u.active,
                        timezone: u.timezone,
                        contacts: u.contacts.into_iter().collect(),
                    },
                )
                .await?;
            outln!("updated {}", describe(&user));
        }
        UsersCommand::Remove { user } => {
            let user = dir.remove(&user).await?;
            outln!("removed {}", describe(&user));
        }
        UsersCommand::Import {
            from_emu_oncall: Some(url),
            ..
        } => {
            let records = oncall_relay::directory::read_emu_oncall(&url).await?;
            let total = records.len();
            let report = dir.import_each(records).await?;
            outln!(
                "imported the Go service's oncall_users ({total} rows): {} added, {} updated, {} unchanged, {} skipped",
                report.added.len(),
                report.updated.len(),
                report.unchanged,
                report.skipped.len()
            );
            for email in &report.added {
                outln!("  added     {email}");
            }
            for email in &report.updated {
                outln!("  updated   {email}");
            }
            for s in &report.skipped {
                outln!("  skipped   {}: {}", s.record, s.reason);
            }
            for note in &report.notes {
                outln!("  note      {note}");
            }
        }
        UsersCommand::Import {
            file: None,
            from_emu_oncall: None,
            ..
        } => bail!("give a file to import, or --from-emu-oncall postgres://..."),
        UsersCommand::Import {
            file: Some(file),
            format,
            ..
        } => {
            let format = match format.or_else(|| ImportFormat::from_path(&file)) {
                Some(f) => f,
                None => bail!(
                    "cannot tell the format of {}: use --format csv or --format yaml",
                    file.display()
                ),
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rows = parse_import(&text, format, &file.display().to_string())?;
            let report = dir.import(rows).await?;
            outln!(
                "imported {}: {} added, {} updated, {} unchanged",
                file.display(),
                report.added,
                report.updated,
                report.unchanged
            );
        }
    }
    store.close().await;
    Ok(())
}

/// What identifies a user to the operator: the name when one was given, and the email.
fn describe(u: &User) -> String {
    let who = if u.name.is_empty() {
        u.email.clone()
    } else {
        format!("{} <{}>", u.name, u.email)
    };
    format!(
        "{who} id={} role={} phone={} {}",
        u.id,
        u.role.as_str(),
        u.phone_number.as_deref().unwrap_or("-"),
        if u.phone_verified() {
            "verified"
        } else {
            "not verified"
        }
    )
}

fn print_users(users: &[User]) -> anyhow::Result<()> {
    outln!(
        "{:<20} {:<32} {:<16} {:<7} {:<16} {:<6} VERIFIED",
        "ID",
        "EMAIL",
        "USERNAME",
        "ROLE",
        "PHONE",
        "ACTIVE"
    );
    for u in users {
        outln!(
            "{:<20} {:<32} {:<16} {:<7} {:<16} {:<6} {}",
            u.id,
            u.email,
            u.username,
            u.role.as_str(),
            u.phone_number.as_deref().unwrap_or("-"),
            if u.active { "yes" } else { "no" },
            if u.phone_verified() { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn parse_since(raw: &str) -> anyhow::Result<i64> {
    if let Ok(d) = humantime::parse_duration(raw.trim()) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    let t = humantime::parse_rfc3339_weak(raw.trim())
        .with_context(|| format!("--since `{raw}`: use a duration (1h, 2d) or an RFC 3339 time"))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Ok(ms)
}

async fn events_cmd(settings: Settings, cmd: EventsCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let EventsCommand::List {
        since,
        user,
        status,
        kind,
        limit,
        json,
    } = cmd;
    let filter = EventFilter {
        since: since.as_deref().map(parse_since).transpose()?,
        user,
        status,
        kind,
        limit,
        before_id: None,
    };
    let records = events::list(&store, &filter).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        outln!(
            "{:<8} {:<24} {:<5} {:<24} {:<10} {:<8} {:<10} LAST ERROR",
            "ID",
            "ACCEPTED",
            "KIND",
            "EMAIL",
            "STATUS",
            "ATTEMPTS",
            "BACKEND"
        );
        for r in &records {
            outln!(
                "{:<8} {:<24} {:<5} {:<24} {:<10} {:<8} {:<10} {}",
                r.id,
                format_ms(r.created_at),
                r.kind,
                r.email,
                r.status,
                r.attempts,
                r.backend.as_deref().unwrap_or("-"),
                r.last_error.as_deref().unwrap_or("")
            );
        }
    }
    store.close().await;
    Ok(())
}

async fn devices(settings: Settings, cmd: DevicesCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let dir = Directory::load(store.clone()).await?;
    match cmd {
        DevicesCommand::Add { token, user, label } => {
            let d = dir.assign_device(&token, &user, label.as_deref()).await?;
            outln!(
                "device {} assigned to {}",
                short_token(&d.token),
                d.user_id.as_deref().unwrap_or("-")
            );
        }
        DevicesCommand::List { json } => {
            let list = dir.devices().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                outln!(
                    "{:<24} {:<20} {:<24} {:<24} LABEL",
                    "TOKEN",
                    "USER",
                    "FIRST SEEN",
                    "LAST SEEN"
                );
                for d in &list {
                    outln!(
                        "{:<24} {:<20} {:<24} {:<24} {}",
                        short_token(&d.token),
                        d.user_id.as_deref().unwrap_or("(unassigned)"),
                        format_ms(d.first_seen_at),
                        format_ms(d.last_seen_at),
                        d.label
                    );
                }
            }
        }
        DevicesCommand::Remove { token } => {
            let d = dir.remove_device(&token).await?;
            outln!("device {} removed", short_token(&d.token));
        }
    }
    store.close().await;
    Ok(())
}

async fn schedules_cmd(settings: Settings, cmd: SchedulesCommand) -> anyhow::Result<()> {
    use oncall_relay::schedules::{NewSchedule, Schedules, Transport};
    let store = open_store(&settings).await?;
    let dir = Directory::load(store.clone()).await?;
    let schedules = Schedules::new(
        store.clone(),
        dir,
        std::sync::Arc::new(settings),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    )?;
    match cmd {
        SchedulesCommand::Add {
            key,
            ical_url,
            name,
            transport,
            callback_url,
        } => {
            let s = schedules
                .add(
                    NewSchedule {
                        key,
                        name,
                        ical_url,
                        transport: Transport::parse(&transport)?,
                        callback_url,
                    },
                    false,
                )
                .await?;
            outln!("schedule {} added ({})", s.key, s.transport);
        }
        SchedulesCommand::List { json } => {
            let list = schedules.list().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                outln!(
                    "{:<16} {:<24} {:<9} {:<7} ICAL URL",
                    "KEY",
                    "NAME",
                    "TRANSPORT",
                    "SOURCE"
                );
                for s in &list {
                    outln!(
                        "{:<16} {:<24} {:<9} {:<7} {}",
                        s.key,
                        s.display_name(),
                        s.transport,
                        s.source,
                        s.ical_url
                    );
                }
            }
        }
        SchedulesCommand::Remove { key } => {
            let s = schedules.remove(&key).await?;
            outln!("schedule {} removed", s.key);
        }
        SchedulesCommand::Status { json } => {
            let list = schedules.list().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for s in &list {
                    let when = |ms: Option<i64>| ms.map_or_else(|| "never".to_string(), format_ms);
                    outln!("{} ({})", s.key, s.display_name());
                    outln!("  last success: {}", when(s.last_success_at));
                    match (&s.last_error, s.last_error_at) {
                        (Some(e), at) => outln!("  last error:   {} at {}", e, when(at)),
                        (None, _) => outln!("  last error:   none"),
                    }
                    match &s.detail {
                        None => outln!("  on duty:      unknown (not polled yet)"),
                        Some(d) if d.people.is_empty() => outln!("  on duty:      nobody"),
                        Some(d) => {
                            for p in d.people.values() {
                                outln!(
                                    "  on duty:      {} <{}> until {}",
                                    p.name,
                                    p.key,
                                    format_ms(p.shift_end)
                                );
                            }
                        }
                    }
                    if let Some(d) = &s.detail
                        && !d.unknown.is_empty()
                    {
                        outln!("  not in the directory: {}", d.unknown.join(", "));
                    }
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

fn short_token(token: &str) -> String {
    if token.chars().count() <= 20 {
        token.to_string()
    } else {
        format!("{}…", token.chars().take(19).collect::<String>())
    }
}

async fn integrations(settings: Settings, json: bool) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let dir = Directory::load(store.clone()).await?;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let heartbeats = Heartbeats::new(store.clone(), dir, settings.heartbeat.clone(), wake);
    let list = heartbeats.list(None).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        outln!("{:<16} {:<8} {:<26} NAME", "ID", "STATE", "LAST BEAT");
        for i in &list {
            outln!(
                "{:<16} {:<8} {:<26} {}",
                i.id,
                i.state,
                i.last_beat_at
                    .map(format_ms)
                    .unwrap_or_else(|| "never".into()),
                i.name
            );
        }
    }
    store.close().await;
    Ok(())
}

async fn notify_test(
    settings: Settings,
    user: &str,
    kind: &str,
    message: Option<String>,
) -> anyhow::Result<()> {
    oncall_relay::install_crypto_provider();
    let Some(kind) = Kind::parse(kind) else {
        bail!("--kind `{kind}`: use call, sms, push or heartbeat");
    };
    let backends = Backends::from_settings(&settings.plugin)?;
    let store = open_store(&settings).await?;
    let dir = Directory::load(store.clone()).await?;
    let recipient = dir.get(user).await?;
    // The test goes out anyway (it checks the route), but say when OnCall itself would never
    // get this far for the user.
    if matches!(kind, Kind::Call | Kind::Sms) && !recipient.phone_verified() {
        let why = match (recipient.active, recipient.phone_number.is_some()) {
            (false, false) => "is inactive and has no phone number",
            (false, true) => "is inactive",
            _ => "has no phone number",
        };
        eprintln!(
            "warning: {} {why}: OnCall shows them as not verified and never sends them a {kind}; the relay would answer `number-not-verified`",
            recipient.email
        );
    }
    if let Some(route) = recipient.contacts.get("route")
        && !backend_names(&settings).contains(&route.as_str())
    {
        eprintln!(
            "warning: {}'s contact route={route} names no configured backend (configured: {}); it is skipped",
            recipient.email,
            backend_names(&settings).join(", ")
        );
    }
    let text = message.unwrap_or_else(|| {
        format!("Test {kind} from oncall-relay: if you can read or hear this, the route works.")
    });
    let new = NewNotification::to_user(kind, &recipient, text);
    let (id, attempts) =
        worker::deliver_test(&store, &dir, &backends, &settings.queue, new).await?;
    let mut delivered = false;
    for a in &attempts {
        outln!(
            "notification {id}: {} via {} in {} ms{}",
            a.outcome,
            a.backend,
            a.duration_ms,
            a.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        delivered |= a.outcome == "delivered";
    }
    store.close().await;
    if delivered {
        Ok(())
    } else {
        bail!("the test {kind} to {} was not delivered", recipient.email)
    }
}

fn check_config(settings: &Settings) -> anyhow::Result<()> {
    // The very checks `serve` makes before it connects, so that "OK" means it starts.
    oncall_relay::app::preflight(settings)?;
    outln!("configuration OK");
    outln!(
        "  database: {}",
        oncall_relay::store::driver_name(settings.db.driver)
    );
    outln!(
        "  tokens: {}{}",
        settings.app.auth_token.0.len(),
        if settings.app.allow_any_token && settings.app.auth_token.0.is_empty() {
            " (any token accepted: unsafe)"
        } else {
            ""
        }
    );
    outln!("  backends: {}", backend_names(settings).join(", "));
    outln!("  default backend: {}", settings.plugin.backend);
    for kind in oncall_relay::config::ROUTE_KINDS {
        if let Some(steps) = settings.plugin.routes.get(kind) {
            let chain: Vec<&str> = steps.iter().map(|s| s.backend.as_str()).collect();
            outln!("  route {kind}: {}", chain.join(" → "));
        }
    }
    for warning in oncall_relay::notify::backend::config_warnings(&settings.plugin) {
        outln!("  warning: {warning}");
    }
    Ok(())
}
