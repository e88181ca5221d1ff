//! `templates render`: what a person would receive from a backend, and its SMS size.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use oncall_relay::config::Settings;
use oncall_relay::notify::texts;
use oncall_relay::notify::{Kind, Reader, sms};

use super::output::outln;

/// The `templates` subcommands.
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Show a text as a backend would send it (`plugin.messages`), with its SMS segment count.
    Render(Render),
}

/// What to render.
#[derive(Debug, Args)]
pub struct Render {
    /// Backend name under `plugin.backends` [default: plugin.backend]
    #[arg(long)]
    backend: Option<String>,
    /// call, sms, push, heartbeat or schedule
    #[arg(long, default_value = "sms")]
    kind: String,
    /// The reader's language tag, e.g. de or pt-BR [default: the backend's language]
    #[arg(long)]
    lang: Option<String>,
    /// The reader's IANA time zone
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// OnCall's text, e.g. `Grafana OnCall: Alert group #2"CPU high" from stack: "prod",
    /// integration: Grafana Alerting, alerts registered: 1.`
    #[arg(long, default_value = "")]
    text: String,
    /// The notification's details as JSON (a heartbeat's `state`, `instance`,
    /// `last_beat_at_ms`; a schedule's `schedule`, `shift_start_ms`, `shift_end_ms`)
    #[arg(long, value_name = "JSON")]
    details: Option<String>,
}

/// Runs a `templates` subcommand.
pub fn run(settings: &Settings, cmd: TemplatesCommand) -> anyhow::Result<()> {
    let TemplatesCommand::Render(r) = cmd;
    let backend = r.backend.unwrap_or_else(|| settings.plugin.backend.clone());
    let kind = Kind::parse(&r.kind).with_context(|| {
        format!(
            "--kind {}: not call, sms, push, heartbeat or schedule",
            r.kind
        )
    })?;
    let language = r
        .lang
        .as_deref()
        .map(oncall_relay::directory::parse_language)
        .transpose()?;
    if r.tz.parse::<chrono_tz::Tz>().is_err() {
        anyhow::bail!("--tz {}: not an IANA time zone", r.tz);
    }
    let details = r
        .details
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .context("--details is not JSON")?;
    let reader = Reader {
        language,
        timezone: Some(r.tz),
        original: None,
    };
    let preview = texts::preview(&settings.plugin, &backend, kind, reader, &r.text, details)
        .map_err(|e| anyhow::anyhow!("backend `{backend}`: {e}"))?;
    if !preview.configured {
        outln!(
            "# `plugin.messages.{backend}` is not set: OnCall's text is sent as it came; built-in texts once it is set:"
        );
    }
    if let Some(title) = &preview.title {
        outln!("title: {title}");
    }
    outln!("{}", preview.text);
    let m = sms::measure(&preview.text);
    let worded = preview
        .worded
        .map(|(language, medium)| format!(", {language}, {}", medium.as_str()))
        .unwrap_or_default();
    outln!(
        "# {} SMS segment{} ({}, {} {}){worded}",
        m.segments,
        if m.segments == 1 { "" } else { "s" },
        m.encoding,
        m.units,
        if m.encoding == sms::Encoding::Gsm7 {
            "septets"
        } else {
            "UTF-16 units"
        },
    );
    Ok(())
}
