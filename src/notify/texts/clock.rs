//! Times in texts: shown in the reader's time zone, in the numeric form their language uses
//! (`01.12.2026 14:00 CET` in German, `2026-12-01 14:00 CET` in English). Numeric forms keep
//! SMS short and need no month names.

use std::fmt::Write;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// The date and time pattern of a language tag (its first subtag counts).
fn pattern(language: &str) -> &'static str {
    let primary = language.split('-').next().unwrap_or(language);
    match primary {
        "de" | "ru" | "uk" | "pl" | "cs" | "fi" | "nb" | "da" | "tr" => "%d.%m.%Y %H:%M %Z",
        "fr" | "es" | "pt" | "it" | "el" => "%d/%m/%Y %H:%M %Z",
        "nl" => "%d-%m-%Y %H:%M %Z",
        _ => "%Y-%m-%d %H:%M %Z",
    }
}

/// Adds the `datetime`, `date` and `time` filters: a Unix-ms number (or an RFC 3339 text)
/// shown in the template's `timezone` and `language` (UTC and English when absent);
/// `datetime(format="%H:%M")` takes a strftime pattern.
pub(crate) fn add_filters(env: &mut Environment<'static>) {
    env.add_filter(
        "datetime",
        |state: &State, value: &Value, kwargs: Kwargs| {
            let format: Option<String> = kwargs.get("format")?;
            kwargs.assert_all_used()?;
            let language = text_of(state, "language").unwrap_or_default();
            let format = format.unwrap_or_else(|| pattern(&language).to_string());
            show(state, value, &format)
        },
    );
    env.add_filter("date", |state: &State, value: &Value| {
        let language = text_of(state, "language").unwrap_or_default();
        let format = pattern(&language)
            .split(' ')
            .next()
            .unwrap_or("%Y-%m-%d")
            .to_string();
        show(state, value, &format)
    });
    env.add_filter("time", |state: &State, value: &Value| {
        show(state, value, "%H:%M")
    });
}

fn text_of(state: &State, name: &str) -> Option<String> {
    state
        .lookup(name)
        .filter(|v| v.kind() == ValueKind::String)
        .and_then(|v| v.as_str().map(str::to_string))
}

/// The zone of a name, UTC for a missing or unknown one.
pub(crate) fn zone(name: Option<&str>) -> Tz {
    name.and_then(|n| n.trim().parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

fn show(state: &State, value: &Value, format: &str) -> Result<String, Error> {
    let at: DateTime<Utc> = match value.kind() {
        ValueKind::Undefined | ValueKind::None => return Ok(String::new()),
        ValueKind::Number => {
            let ms = i64::try_from(value.clone()).map_err(|_| not_a_time(value))?;
            Utc.timestamp_millis_opt(ms)
                .single()
                .ok_or_else(|| not_a_time(value))?
        }
        ValueKind::String => value
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| not_a_time(value))?,
        _ => return Err(not_a_time(value)),
    };
    let zone = zone(text_of(state, "timezone").as_deref());
    let mut out = String::new();
    // Written, not `to_string()`: a bad pattern is an error here, never a panic.
    write!(out, "{}", at.with_timezone(&zone).format(format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`{format}` is not a valid time format"),
        )
    })?;
    Ok(out)
}

fn not_a_time(value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{value} is not a time (Unix milliseconds or RFC 3339)"),
    )
}

#[cfg(test)]
mod tests {
    use minijinja::context;

    use super::*;

    fn shown(template: &str, tz: &str, language: &str) -> String {
        let mut env = Environment::new();
        add_filters(&mut env);
        env.render_str(
            template,
            context! { at => 1_764_597_600_000_i64, timezone => tz, language => language },
        )
        .expect("render")
    }

    #[test]
    fn times_are_shown_in_the_readers_zone_and_language() {
        // 2025-12-01 14:00 UTC.
        for (template, tz, language, expected) in [
            ("{{ at|datetime }}", "UTC", "en", "2025-12-01 14:00 UTC"),
            (
                "{{ at|datetime }}",
                "Europe/Berlin",
                "de",
                "01.12.2025 15:00 CET",
            ),
            (
                "{{ at|datetime }}",
                "America/Sao_Paulo",
                "pt-BR",
                "01/12/2025 11:00 -03",
            ),
            (
                "{{ at|time }} {{ at|date }}",
                "Europe/Kyiv",
                "uk",
                "16:00 01.12.2025",
            ),
            (
                "{{ at|datetime(format='%H:%M %d.%m.') }}",
                "Nowhere/Else",
                "de",
                "14:00 01.12.",
            ),
            ("{{ none|datetime }}", "UTC", "en", ""),
        ] {
            assert_eq!(shown(template, tz, language), expected, "{template} {tz}");
        }
    }

    #[test]
    fn a_bad_format_is_an_error_not_a_panic() {
        let mut env = Environment::new();
        add_filters(&mut env);
        let err = env
            .render_str("{{ 0|datetime(format='%Q%') }}", context! {})
            .expect_err("bad format");
        assert!(err.to_string().contains("not a valid time format"), "{err}");
    }
}
