//! Templating shared by every backend: one Jinja environment setup (fuel limit, undefined
//! variables are errors, the `url` escape mode), the variables templates see, and rendering.
//!
//! Values printed into a template whose escape mode is [`AutoEscape::Custom`] with
//! [`URL_ESCAPE`] are percent-encoded, so `&to=...#` in an alert text stays text; `|safe`
//! prints a value as it is and `|urlencode` is not encoded twice.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::Serialize;

use super::Notification;
use super::backends::DeliveryError;
use super::oncall_text::AlertText;
use crate::store::format_ms;

/// Template steps allowed per render, so a runaway loop cannot stall deliveries.
const TEMPLATE_FUEL: u64 = 100_000;

/// The auto-escape mode of URL templates.
pub(crate) const URL_ESCAPE: &str = "url";

/// What stays as it is in a percent-encoded value: RFC 3986's unreserved characters. `/` is
/// encoded too, so a value cannot add path segments.
const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A fuel-limited environment where undefined variables are errors and `escape` picks each
/// template's escape mode by its name.
pub(crate) fn environment(
    escape: impl Fn(&str) -> AutoEscape + Send + Sync + 'static,
) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(escape);
    set_url_escaping(&mut env);
    super::texts::clock::add_filters(&mut env);
    env
}

/// An environment without escaping: the templates render argv elements, subjects, endpoints.
pub(crate) fn plain_environment() -> Environment<'static> {
    environment(|_| AutoEscape::None)
}

/// Teaches `env` the `url` auto-escape mode: values print percent-encoded unless marked safe
/// (`|safe`, or the output of `|urlencode`, which is not encoded twice).
fn set_url_escaping(env: &mut Environment<'static>) {
    env.set_formatter(|out, state, value| {
        if !matches!(state.auto_escape(), AutoEscape::Custom(name) if name == URL_ESCAPE) {
            return minijinja::escape_formatter(out, state, value);
        }
        if value.is_safe() {
            write!(out, "{value}")?;
        } else if !(value.is_none() || value.is_undefined()) {
            let text = value.to_string();
            write!(
                out,
                "{}",
                percent_encoding::utf8_percent_encode(&text, URL_VALUE)
            )?;
        }
        Ok(())
    });
    env.add_filter(
        "urlencode",
        |value: &Value| -> Result<Value, minijinja::Error> {
            minijinja::filters::urlencode(value).map(Value::from_safe_string)
        },
    );
}

/// Renders a template; a failure is permanent (the same notification fails the same way).
pub(crate) fn render(
    env: &Environment<'static>,
    template: &str,
    ctx: &Value,
) -> Result<String, DeliveryError> {
    env.get_template(template)
        .and_then(|t| t.render(ctx.clone()))
        .map_err(|e| DeliveryError::Permanent(format!("{template} template: {e}")))
}

/// Adds a template from the settings; the error names the setting.
pub(crate) fn add(env: &mut Environment<'static>, name: &str, source: &str) -> Result<(), String> {
    env.add_template_owned(name.to_string(), source.to_string())
        .map_err(|e| format!("`{name}` template: {e}"))
}

/// The variables templates see; also the webhook's default body and an `exec` program's
/// stdin.
#[derive(Debug, Serialize)]
pub(crate) struct Context<'a> {
    id: i64,
    kind: &'a str,
    /// OnCall's text, as it came.
    message: &'a str,
    /// What this backend sends: its wording of `message` (see `plugin.messages`), else `message`.
    text: &'a str,
    /// The parts of OnCall's text (`alert.number`, `alert.title`, ...).
    alert: AlertText,
    /// The recipient's language tag, if known.
    language: Option<&'a str>,
    /// The recipient's time zone (`UTC` if unknown).
    timezone: &'a str,
    phone: Option<&'a str>,
    phone_number: Option<&'a str>,
    email: &'a str,
    name: &'a str,
    user_id: &'a str,
    user: ContextUser<'a>,
    attempt: i64,
    created_at: String,
    created_at_ms: i64,
    /// A push's title (the message's first line otherwise).
    title: &'a str,
    /// A critical push, a call, or a heartbeat alert.
    important: bool,
    /// Kind-specific details: a push's `data`, `device_token`, ...
    details: Option<&'a serde_json::Value>,
    /// The recipient's backend addresses (`telegram`, `email`, ...).
    #[serde(serialize_with = "crate::directory::serialize_contacts")]
    contacts: &'a BTreeMap<String, String>,
    /// One-click links that act on the page (`acknowledge`, `resolve`, `silence`), when
    /// `app.hostname` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<&'a serde_json::Value>,
    /// The alert group the page is about (`id`, `title`, `state`, `labels`, `permalink`), with
    /// `grafana.oncall.incident_details` on and the page linked.
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_group: Option<&'a serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct ContextUser<'a> {
    id: &'a str,
    email: &'a str,
    name: &'a str,
    phone_number: Option<&'a str>,
}

impl<'a> Context<'a> {
    /// The variables of `n`.
    pub(crate) fn of(n: &'a Notification) -> Context<'a> {
        let message = n.reader.original.as_deref().unwrap_or(&n.message);
        Context {
            id: n.id,
            kind: &n.kind,
            message,
            text: &n.message,
            alert: AlertText::parse(message),
            language: n.reader.language.as_deref(),
            timezone: n.reader.timezone.as_deref().unwrap_or("UTC"),
            phone: n.phone_number.as_deref(),
            phone_number: n.phone_number.as_deref(),
            email: &n.email,
            name: &n.name,
            user_id: &n.user_id,
            user: ContextUser {
                id: &n.user_id,
                email: &n.email,
                name: &n.name,
                phone_number: n.phone_number.as_deref(),
            },
            attempt: n.attempt,
            created_at: format_ms(n.created_at),
            created_at_ms: n.created_at,
            title: n.title(),
            important: n.important(),
            details: n.payload.as_ref(),
            contacts: &n.contacts,
            links: n.links.as_ref(),
            alert_group: n.alert_group.as_ref(),
        }
    }

    /// The variables as a template value.
    pub(crate) fn value(&self) -> Value {
        Value::from(minijinja::value::Serde(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(url: &str, message: &str) -> String {
        let mut env = environment(|_| AutoEscape::Custom(URL_ESCAPE.into()));
        add(&mut env, "url", url).expect("template");
        let ctx = Value::from(minijinja::value::Serde(
            &serde_json::json!({"message": message, "phone": "+4930123"}),
        ));
        render(&env, "url", &ctx).expect("render")
    }

    #[test]
    fn url_values_are_percent_encoded_unless_marked_safe() {
        let attack = "x&to=%2B1999#";
        assert_eq!(
            rendered("https://gw/send?to={{ phone }}&text={{ message }}", attack),
            "https://gw/send?to=%2B4930123&text=x%26to%3D%252B1999%23"
        );
        // `|urlencode` keeps working and is not encoded twice.
        assert_eq!(
            rendered("https://gw/send?to={{ phone|urlencode }}", attack),
            "https://gw/send?to=%2B4930123"
        );
        // A value cannot add path segments.
        assert_eq!(
            rendered("https://gw/{{ message }}", "../admin"),
            "https://gw/..%2Fadmin"
        );
        assert_eq!(
            rendered("https://gw/send?{{ message|safe }}", "a=1&b=2"),
            "https://gw/send?a=1&b=2"
        );
    }
}
