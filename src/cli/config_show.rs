//! `config`: the effective configuration, secrets hidden.

use oncall_relay::config::Settings;
use oncall_relay::telemetry;

use super::output::out;

/// Prints the settings as YAML with every secret masked.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let mut shown = serde_json::to_value(settings)?;
    redact(&mut shown, "");
    out!("{}", yaml_serde::to_string(&shown)?);
    Ok(())
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
