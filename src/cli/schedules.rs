//! `schedules`: the OnCall schedules the relay tracks, and who is on duty.

use clap::Subcommand;
use oncall_relay::config::Settings;
use oncall_relay::schedules::{NewSchedule, Schedule, Schedules, Transport};
use oncall_relay::store::format_ms;

use super::output::{outln, print_json, time_or_never};
use super::{ListFormat, open_directory};

/// `schedules` subcommands.
#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
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
    List(ListFormat),
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

/// Runs a `schedules` subcommand against the configured database.
pub async fn run(settings: Settings, cmd: SchedulesCommand) -> anyhow::Result<()> {
    let (store, dir) = open_directory(&settings).await?;
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
        SchedulesCommand::List(ListFormat { json: true })
        | SchedulesCommand::Status { json: true } => print_json(&schedules.list().await?)?,
        SchedulesCommand::List(ListFormat { json: false }) => {
            outln!(
                "{:<16} {:<24} {:<9} {:<7} ICAL URL",
                "KEY",
                "NAME",
                "TRANSPORT",
                "SOURCE"
            );
            for s in &schedules.list().await? {
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
        SchedulesCommand::Remove { key } => {
            let s = schedules.remove(&key).await?;
            outln!("schedule {} removed", s.key);
        }
        SchedulesCommand::Status { json: false } => {
            for s in &schedules.list().await? {
                print_status(s)?;
            }
        }
    }
    store.close().await;
    Ok(())
}

/// One schedule's polling state and who is on duty, as text.
fn print_status(s: &Schedule) -> anyhow::Result<()> {
    outln!("{} ({})", s.key, s.display_name());
    outln!("  last success: {}", time_or_never(s.last_success_at));
    match (&s.last_error, s.last_error_at) {
        (Some(e), at) => outln!("  last error:   {} at {}", e, time_or_never(at)),
        (None, _) => outln!("  last error:   none"),
    }
    outln!("  state:        {}", s.state.describe());
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
    if let Some(d) = &s.detail {
        for a in &d.ambiguous {
            outln!("  ambiguous:    {a} (nobody assumed)");
        }
        for w in &d.warnings {
            outln!("  warning:      {w}");
        }
    }
    Ok(())
}
