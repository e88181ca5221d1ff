//! The `webhook` backend: one HTTP request per notification.
//!
//! The URL and body are Jinja templates over the notification (`phone`, `message`, `kind`,
//! `user`, ...). With a JSON content type, values print JSON-encoded (`{"text": {{ message }}}`),
//! so quotes in an alert title cannot break the document. Values printed into the URL (and
//! into a form-encoded body) are percent-encoded, so `&to=...#` in an alert text stays text;
//! `|safe` or `url_encode: false` prints them as they are.

use std::str::FromStr;

use minijinja::{AutoEscape, Environment};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::{Base, Deliver, DeliveryError, Setup, http};
use crate::config::WebhookSettings;
use crate::notify::template::{self, Context, URL_ESCAPE};
use crate::notify::{Notification, NotifyError};

/// Posts (or sends with another method) each notification to a URL.
#[derive(Debug)]
pub struct Webhook {
    base: Base,
    method: reqwest::Method,
    headers: HeaderMap,
    templated_body: bool,
    content_type: String,
    env: Environment<'static>,
    client: reqwest::Client,
    bearer_token: Option<String>,
    basic_auth: Option<(String, String)>,
    signing_secret: Option<Vec<u8>>,
    max_segments: Option<usize>,
}

impl Webhook {
    /// Validates the settings and compiles the templates.
    pub fn new(cx: &Setup<'_>, s: &WebhookSettings) -> Result<Webhook, NotifyError> {
        let bad = cx.error();
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
        let content_type = s.content_type.to_ascii_lowercase();
        let json_body = content_type.contains("json");
        let form_body = content_type.contains("x-www-form-urlencoded");
        let url_encode = s.url_encode;
        let mut env = template::environment(move |template| match template {
            "body" if json_body => AutoEscape::Json,
            "body" if form_body && url_encode => AutoEscape::Custom(URL_ESCAPE.into()),
            "url" if url_encode => AutoEscape::Custom(URL_ESCAPE.into()),
            _ => AutoEscape::None,
        });
        template::add(&mut env, "url", &s.url).map_err(&bad)?;
        if s.url.trim().is_empty() {
            return Err(bad("`url` is required".into()));
        }
        if !s.url.contains("{{") {
            http::base_url(&s.url, "url").map_err(&bad)?;
        }
        if let Some(body) = &s.body {
            template::add(&mut env, "body", body).map_err(&bad)?;
        }
        let max_segments = super::max_segments(cx, s.max_segments)?;
        Ok(Webhook {
            max_segments,
            base: cx.base(s.timeout),
            method,
            headers,
            templated_body: s.body.is_some(),
            content_type: s.content_type.clone(),
            env,
            client: cx.client.clone(),
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
}

impl Deliver for Webhook {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let n = super::fit_sms(n, self.max_segments);
        let ctx = Context::of(&n);
        let value = ctx.value();
        let url = template::render(&self.env, "url", &value)?;
        let url = reqwest::Url::parse(url.trim())
            .map_err(|e| DeliveryError::Permanent(format!("rendered url is invalid: {e}")))?;
        let (body, content_type) = if self.templated_body {
            (
                template::render(&self.env, "body", &value)?,
                self.content_type.clone(),
            )
        } else {
            let json = serde_json::to_string(&ctx)
                .map_err(|e| DeliveryError::Permanent(format!("cannot encode body: {e}")))?;
            (json, "application/json".to_string())
        };
        let mut request = http::keyed(
            self.client
                .request(self.method.clone(), url)
                .timeout(self.base.timeout)
                .headers(self.headers.clone()),
            &n,
        );
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
        http::send(request, "").await
    }
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
    use crate::notify::backends::testing::setup;

    fn rendered_url(url: &str, url_encode: bool, message: &str) -> String {
        let settings = WebhookSettings {
            url: url.into(),
            url_encode,
            ..WebhookSettings::default()
        };
        crate::install_crypto_provider();
        let hook = Webhook::new(&setup("t"), &settings).expect("webhook");
        let ctx = minijinja::Value::from(minijinja::value::Serde(
            &serde_json::json!({"message": message, "phone": "+4930123"}),
        ));
        template::render(&hook.env, "url", &ctx).expect("render")
    }

    #[test]
    fn url_encode_setting_switches_url_escaping() {
        // The escaping itself is tested in `template`; here the setting turns it on and off.
        let attack = "x&to=%2B1999#";
        assert_eq!(
            rendered_url("https://gw/send?text={{ message }}", true, attack),
            "https://gw/send?text=x%26to%3D%252B1999%23"
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
