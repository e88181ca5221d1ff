//! `check-config`: the checks `serve` makes before it connects, and a summary of what it
//! would run with.

use oncall_relay::config::Settings;

use super::backend_names;
use super::output::outln;

/// Validates the settings, then prints the database, backends and routes they name.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
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
    for (name, m) in &settings.plugin.messages {
        let count: usize = m
            .templates
            .values()
            .chain(m.titles.values())
            .map(|l| l.len())
            .sum();
        outln!(
            "  messages {name}: {}, {count} template(s){}",
            m.language.as_deref().unwrap_or("en"),
            if m.builtin { ", built-in texts" } else { "" }
        );
    }
    let answers = oncall_relay::notify::answer::warnings(settings);
    for warning in oncall_relay::notify::backend::config_warnings(&settings.plugin)
        .into_iter()
        .chain(answers)
    {
        outln!("  warning: {warning}");
    }
    Ok(())
}
