//! The `webhook` backend: one HTTP request per notification.
//!
//! The URL and body are Jinja templates over the notification (`phone`, `message`, `kind`,
//! `user`, ...). With a JSON content type, values print JSON-encoded (`{"text": {{ message }}}`),
//! so quotes in an alert title cannot break the document. Values printed into the URL (and
//! into a form-encoded body) are percent-encoded, so `&to=...#` in an alert text stays text;
//! `|safe` or `url_encode: false` prints them as they are.

use std::str::FromStr;
use std::time::Duration;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use super::backend::{Backend, BoxFuture, DeliveryError};
use super::{Notification, NotifyError};
use crate::config::WebhookSettings;
use crate::store::format_ms;

/// Template steps allowed per render, so a runaway loop cannot stall deliveries.
const TEMPLATE_FUEL: u64 = 100_000;

/// Posts (or sends with another method) each notification to a URL.
#[derive(Debug)]
pub struct Webhook {
    name: String,
    method: reqwest::Method,
    headers: HeaderMap,
    timeout: Duration,
    templated_body: bool,
    content_type: String,
    env: Environment<'static>,
    client: reqwest::Client,
    bearer_token: Option<String>,
    basic_auth: Option<(String, String)>,
    signing_secret: Option<Vec<u8>>,
}

/// What templates see.
#[derive(Debug, Serialize)]
struct TemplateContext<'a> {
    id: i64,
    kind: &'a str,
    message: &'a str,
    phone: Option<&'a str>,
    phone_number: Option<&'a str>,
    email: &'a str,
    name: &'a str,
    user_id: &'a str,
    user: TemplateUser<'a>,
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
    contacts: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct TemplateUser<'a> {
    id: &'a str,
    email: &'a str,
    name: &'a str,
    phone_number: Option<&'a str>,
}

impl Webhook {
    /// Validates the settings and compiles the templates.
    pub fn new(
        name: &str,
        s: &WebhookSettings,
        client: reqwest::Client,
    ) -> Result<Webhook, NotifyError> {
        let bad = |message: String| NotifyError::BackendConfig {
            name: name.to_string(),
            message,
        };
        let method = reqwest::Method::from_str(&s.method.to_ascii_uppercase())
            .map_err(|_| bad(format!("`method`: `{}` is not an HTTP method", s.method)))?;
        let mut headers = HeaderMap::new();
        for (key, value) in &s.headers {
            let k = HeaderName::from_str(key)
                .map_err(|_| bad(format!("`headers`: `{key}` is not a header name")))?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| bad(format!("`headers.{key}`: not a valid header value")))?;
            v.set_sensitive(true);
            headers.insert(k, v);
        }
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let content_type = s.content_type.to_ascii_lowercase();
        let json_body = content_type.contains("json");
        let form_body = content_type.contains("x-www-form-urlencoded");
        let url_encode = s.url_encode;
        env.set_auto_escape_callback(move |template| match template {
            "body" if json_body => AutoEscape::Json,
            "body" if form_body && url_encode => AutoEscape::Custom(URL_ESCAPE.into()),
            "url" if url_encode => AutoEscape::Custom(URL_ESCAPE.into()),
            _ => AutoEscape::None,
        });
        set_url_escaping(&mut env);
        env.add_template_owned("url", s.url.clone())
            .map_err(|e| bad(format!("`url` template: {e}")))?;
        if s.url.trim().is_empty() {
            return Err(bad("`url` is required".into()));
        }
        if !s.url.contains("{{") {
            let parsed = reqwest::Url::parse(&s.url).map_err(|e| bad(format!("`url`: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("`url` must be http or https".into()));
            }
        }
        if let Some(body) = &s.body {
            env.add_template_owned("body", body.clone())
                .map_err(|e| bad(format!("`body` template: {e}")))?;
        }
        Ok(Webhook {
            name: name.to_string(),
            method,
            headers,
            timeout: s.timeout,
            templated_body: s.body.is_some(),
            content_type: s.content_type.clone(),
            env,
            client,
            bearer_token: s.bearer_token.as_ref().map(|t| t.expose().to_string()),
            basic_auth: s
                .basic_auth
                .as_ref()
                .map(|b| (b.username.clone(), b.password.expose().to_string())),
            signing_secret: s
                .signing_secret
                .as_ref()
                .map(|k| k.expose().as_bytes().to_vec()),
        })
    }

    fn render(&self, template: &str, ctx: &Value) -> Result<String, DeliveryError> {
        self.env
            .get_template(template)
            .and_then(|t| t.render(ctx.clone()))
            .map_err(|e| DeliveryError::Permanent(format!("{template} template: {e}")))
    }

    fn context<'a>(n: &'a Notification) -> TemplateContext<'a> {
        TemplateContext {
            id: n.id,
            kind: &n.kind,
            message: &n.message,
            phone: n.phone_number.as_deref(),
            phone_number: n.phone_number.as_deref(),
            email: &n.email,
            name: &n.name,
            user_id: &n.user_id,
            user: TemplateUser {
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
        }
    }
}

impl Backend for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let ctx = Self::context(n);
            let value = Value::from(minijinja::value::Serde(&ctx));
            let url = self.render("url", &value)?;
            let url = reqwest::Url::parse(url.trim())
                .map_err(|e| DeliveryError::Permanent(format!("rendered url is invalid: {e}")))?;
            let (body, content_type) = if self.templated_body {
                (self.render("body", &value)?, self.content_type.clone())
            } else {
                let json = serde_json::to_string(&ctx)
                    .map_err(|e| DeliveryError::Permanent(format!("cannot encode body: {e}")))?;
                (json, "application/json".to_string())
            };
            let mut request = self
                .client
                .request(self.method.clone(), url)
                .timeout(self.timeout)
                .headers(self.headers.clone());
            if let Some(token) = &self.bearer_token {
                request = request.bearer_auth(token);
            }
            if let Some((user, password)) = &self.basic_auth {
                request = request.basic_auth(user, Some(password));
            }
            let body = if self.method == reqwest::Method::GET {
                String::new()
            } else {
                body
            };
            if let Some(secret) = &self.signing_secret {
                let timestamp = (crate::store::now_ms() / 1000).to_string();
                request = request
                    .header("X-Relay-Timestamp", &timestamp)
                    .header("X-Relay-Signature", sign(secret, &timestamp, &body));
            }
            if self.method != reqwest::Method::GET {
                request = request.header(CONTENT_TYPE, content_type).body(body);
            }
            let response = request.send().await.map_err(super::http::request_failed)?;
            super::http::check(response, "").await
        })
    }
}

/// The auto-escape mode of URL templates.
const URL_ESCAPE: &str = "url";

/// What stays as it is in a percent-encoded value: RFC 3986's unreserved characters. `/` is
/// encoded too, so a value cannot add path segments.
const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`: the receiver recomputes it with the
/// shared secret, and rejects old timestamps to stop replays.
pub fn sign(secret: &[u8], timestamp: &str, body: &str) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered_url(url: &str, url_encode: bool, message: &str) -> String {
        let settings = WebhookSettings {
            url: url.into(),
            url_encode,
            ..WebhookSettings::default()
        };
        crate::install_crypto_provider();
        let hook = Webhook::new("t", &settings, reqwest::Client::new()).expect("webhook");
        let ctx = Value::from(minijinja::value::Serde(
            &serde_json::json!({"message": message, "phone": "+4930123"}),
        ));
        hook.render("url", &ctx).expect("render")
    }

    #[test]
    fn url_values_are_percent_encoded_unless_marked_safe() {
        let attack = "x&to=%2B1999#";
        assert_eq!(
            rendered_url(
                "https://gw/send?to={{ phone }}&text={{ message }}",
                true,
                attack
            ),
            "https://gw/send?to=%2B4930123&text=x%26to%3D%252B1999%23"
        );
        // `|urlencode` keeps working and is not encoded twice.
        assert_eq!(
            rendered_url("https://gw/send?to={{ phone|urlencode }}", true, attack),
            "https://gw/send?to=%2B4930123"
        );
        // A value cannot add path segments.
        assert_eq!(
            rendered_url("https://gw/{{ message }}", true, "../admin"),
            "https://gw/..%2Fadmin"
        );
        // The opt-outs: `|safe` for one value, `url_encode: false` for the backend.
        assert_eq!(
            rendered_url("https://gw/send?{{ message|safe }}", true, "a=1&b=2"),
            "https://gw/send?a=1&b=2"
        );
        assert_eq!(
            rendered_url("https://gw/send?text={{ message }}", false, attack),
            "https://gw/send?text=x&to=%2B1999#"
        );
    }

    #[test]
    fn signature_matches_a_known_hmac() {
        // Same value as Python's hmac.new(b"Jefe", b'1700000000.{"a":1}', sha256).hexdigest().
        assert_eq!(
            sign(b"Jefe", "1700000000", r#"{"a":1}"#),
            "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }
}
