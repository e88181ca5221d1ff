//! `notify test`: one real notification through the configured routes.

use anyhow::bail;
use clap::Subcommand;
use oncall_relay::config::Settings;
use oncall_relay::directory::User;
use oncall_relay::notify::{Backends, Kind, NewNotification, worker};

use super::output::outln;
use super::{backend_names, open_directory};

/// `notify` subcommands.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
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

/// Runs a `notify` subcommand; fails unless some backend delivered.
pub async fn run(settings: Settings, cmd: NotifyCommand) -> anyhow::Result<()> {
    let NotifyCommand::Test {
        user,
        kind,
        message,
    } = cmd;
    oncall_relay::install_crypto_provider();
    let Some(kind) = Kind::parse(&kind) else {
        bail!("--kind `{kind}`: use call, sms, push or heartbeat");
    };
    let backends = Backends::from_settings(&settings.plugin)?;
    let (store, dir) = open_directory(&settings).await?;
    let recipient = dir.get(&user).await?;
    warn_unreachable(&settings, kind, &recipient);
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
    // The breakers as the servers last recorded them: a step skipped by `serve` shows here.
    match oncall_relay::notify::breaker::circuits(&store).await {
        Ok(circuits) => {
            for c in &circuits {
                outln!("circuit breaker {}", c.describe());
            }
        }
        Err(e) => eprintln!("warning: cannot read the circuit breakers: {e}"),
    }
    store.close().await;
    if delivered {
        Ok(())
    } else {
        bail!("the test {kind} to {} was not delivered", recipient.email)
    }
}

/// The test goes out anyway (it checks the route), but says on stderr when OnCall itself would
/// never get this far for the user, or when the user's own route is skipped.
fn warn_unreachable(settings: &Settings, kind: Kind, recipient: &User) {
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
        && !backend_names(settings).contains(&route.as_str())
    {
        eprintln!(
            "warning: {}'s contact route={route} names no configured backend (configured: {}); it is skipped",
            recipient.email,
            backend_names(settings).join(", ")
        );
    }
}
