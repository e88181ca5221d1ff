//! `events`: the notifications log and its delivery attempts.

use anyhow::Context;
use clap::Subcommand;
use oncall_relay::ack::registry;
use oncall_relay::config::Settings;
use oncall_relay::notify::{EventFilter, breaker, events};
use oncall_relay::store::{format_ms, now_ms};

use super::output::{outln, print_json};
use super::{ListFormat, open_store};

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List notifications, newest first, with their delivery attempts.
    List {
        /// Only since this long ago (e.g. 1h, 2d) or this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this user (email or id).
        #[arg(long)]
        user: Option<String>,
        /// Only this status: queued, delivering, awaiting_answer, delivered, failed, duplicate, refused.
        #[arg(long)]
        status: Option<String>,
        /// Only this kind: call or sms.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many notifications.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        format: ListFormat,
    },
    /// List what people did from their pages (replies, keys) and what OnCall answered.
    Actions {
        /// Only since this long ago (e.g. 1h, 2d) or this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this person (email).
        #[arg(long)]
        user: Option<String>,
        /// At most this many actions.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        format: ListFormat,
    },
    /// List the changes of the backends' circuit breakers (opened, half-open, closed).
    Circuits {
        /// Only since this long ago (e.g. 1h, 2d) or this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this backend.
        #[arg(long)]
        backend: Option<String>,
        /// At most this many changes.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        format: ListFormat,
    },
}

/// Runs an `events` subcommand against the configured database.
pub async fn run(settings: Settings, cmd: EventsCommand) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let (since, user, status, kind, limit, format) = match cmd {
        EventsCommand::List {
            since,
            user,
            status,
            kind,
            limit,
            format,
        } => (since, user, status, kind, limit, format),
        EventsCommand::Actions {
            since,
            user,
            limit,
            format,
        } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let actions = registry::actions(&store, user.as_deref(), since, limit).await?;
            print_actions(&actions, format.json)?;
            store.close().await;
            return Ok(());
        }
        EventsCommand::Circuits {
            since,
            backend,
            limit,
            format,
        } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let changes = breaker::changes(&store, backend.as_deref(), since, limit).await?;
            print_circuit_changes(&changes, format.json)?;
            store.close().await;
            return Ok(());
        }
    };
    let filter = EventFilter {
        since: since.as_deref().map(parse_since).transpose()?,
        user,
        status,
        kind,
        limit,
        before_id: None,
    };
    let records = events::list(&store, &filter).await?;
    if format.json {
        print_json(&records)?;
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

fn print_actions(actions: &[registry::ActionRecord], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(actions);
    }
    outln!(
        "{:<24} {:<14} {:<24} {:<14} {:<12} {:<10} DETAIL",
        "TIME",
        "CHANNEL",
        "EMAIL",
        "ALERT GROUP",
        "ACTION",
        "OUTCOME"
    );
    for a in actions {
        outln!(
            "{:<24} {:<14} {:<24} {:<14} {:<12} {:<10} {}",
            format_ms(a.created_at),
            a.channel,
            a.email,
            a.alert_group_id.as_deref().unwrap_or("-"),
            a.action,
            a.outcome,
            a.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn print_circuit_changes(changes: &[breaker::CircuitChange], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(changes);
    }
    outln!(
        "{:<24} {:<16} {:<10} {:<8} {:<24} ERROR",
        "TIME",
        "BACKEND",
        "STATE",
        "FAILURES",
        "OPEN UNTIL"
    );
    for c in changes {
        outln!(
            "{:<24} {:<16} {:<10} {:<8} {:<24} {}",
            format_ms(c.changed_at),
            c.backend,
            c.state,
            c.failures,
            c.open_until.map(format_ms).unwrap_or_else(|| "-".into()),
            c.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// `--since`: a duration back from now, or an RFC 3339 time.
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
