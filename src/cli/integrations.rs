//! `integrations`: the integrations OnCall created through its heartbeat, and their state.

use clap::Subcommand;
use oncall_relay::config::Settings;
use oncall_relay::heartbeat::Heartbeats;

use super::output::{outln, print_json, time_or_never};
use super::{ListFormat, open_directory};

/// `integrations` subcommands.
#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// List integrations with their heartbeat state.
    List(ListFormat),
}

/// Runs an `integrations` subcommand against the configured database.
pub async fn run(settings: Settings, cmd: IntegrationsCommand) -> anyhow::Result<()> {
    let IntegrationsCommand::List(ListFormat { json }) = cmd;
    let (store, dir) = open_directory(&settings).await?;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let heartbeats = Heartbeats::new(store.clone(), dir, settings.heartbeat.clone(), wake);
    let list = heartbeats.list(None).await?;
    if json {
        print_json(&list)?;
    } else {
        outln!("{:<16} {:<8} {:<26} NAME", "ID", "STATE", "LAST BEAT");
        for i in &list {
            outln!(
                "{:<16} {:<8} {:<26} {}",
                i.id,
                i.state,
                time_or_never(i.last_beat_at),
                i.name
            );
        }
    }
    store.close().await;
    Ok(())
}
