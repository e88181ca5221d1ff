//! `devices`: which user each mobile push token belongs to.

use clap::Subcommand;
use oncall_relay::config::Settings;
use oncall_relay::store::format_ms;

use super::output::{outln, print_json};
use super::{ListFormat, open_directory};

/// `devices` subcommands.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
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
    List(ListFormat),
    /// Forget a device.
    Remove {
        /// The device's push registration token.
        token: String,
    },
}

/// Runs a `devices` subcommand against the configured database.
pub async fn run(settings: Settings, cmd: DevicesCommand) -> anyhow::Result<()> {
    let (store, dir) = open_directory(&settings).await?;
    match cmd {
        DevicesCommand::Add { token, user, label } => {
            let d = dir.assign_device(&token, &user, label.as_deref()).await?;
            outln!(
                "device {} assigned to {}",
                short_token(&d.token),
                d.user_id.as_deref().unwrap_or("-")
            );
        }
        DevicesCommand::List(ListFormat { json: true }) => print_json(&dir.devices().await?)?,
        DevicesCommand::List(ListFormat { json: false }) => {
            outln!(
                "{:<24} {:<20} {:<24} {:<24} LABEL",
                "TOKEN",
                "USER",
                "FIRST SEEN",
                "LAST SEEN"
            );
            for d in &dir.devices().await? {
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
        DevicesCommand::Remove { token } => {
            let d = dir.remove_device(&token).await?;
            outln!("device {} removed", short_token(&d.token));
        }
    }
    store.close().await;
    Ok(())
}

/// Push tokens are long; the first 19 characters tell them apart in a table.
fn short_token(token: &str) -> String {
    if token.chars().count() <= 20 {
        token.to_string()
    } else {
        format!("{}…", token.chars().take(19).collect::<String>())
    }
}
