//! The `sip` backend: phone calls through Asterisk's REST interface (ARI).
//!
//! Each notification originates one channel: `POST {url}/ari/channels` with the endpoint
//! to dial (a template, `PJSIP/{{ phone }}@trunk` by default) and the dialplan location
//! (`context`, `extension`, `priority`) that answers and reads the message. The message,
//! cleaned for speech, travels as the channel variable `ONCALL_MESSAGE` (with `ONCALL_KIND`
//! and `ONCALL_ID`).
//!
//! 200 means Asterisk originated the call, not that anybody answered. 4xx answers are
//! permanent (the next route takes over at once) except 408 and 429; 5xx answers and
//! connection errors are retried.

use minijinja::Environment;
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;

use super::{Base, Deliver, DeliveryError, Setup, http, present};
use crate::config::{Secret, SipSettings};
use crate::notify::template::{self, Context};
use crate::notify::{Notification, NotifyError, shape};

/// Originates calls through Asterisk ARI.
#[derive(Debug)]
pub struct Sip {
    base: Base,
    channels_url: Url,
    username: String,
    password: Secret,
    endpoint_uses_phone: bool,
    context: String,
    extension: String,
    priority: u32,
    caller_id: Option<String>,
    ring_timeout: u64,
    templates: Environment<'static>,
    client: reqwest::Client,
}

impl Sip {
    /// Validates the settings and compiles the endpoint template.
    pub fn new(cx: &Setup<'_>, s: &SipSettings) -> Result<Sip, NotifyError> {
        let bad = cx.error();
        if s.url.trim().is_empty() {
            return Err(bad(
                "`url` is required: Asterisk's HTTP address, e.g. http://asterisk:8088".into(),
            ));
        }
        let base = http::base_url(&s.url, "url").map_err(&bad)?;
        if base.query().is_some() {
            return Err(bad("`url` must not carry a query".into()));
        }
        // Accept both `http://host:8088` and `http://host:8088/ari`.
        let root = base.as_str().trim_end_matches('/');
        let root = root.strip_suffix("/ari").unwrap_or(root);
        let channels_url =
            Url::parse(&format!("{root}/ari/channels")).map_err(|e| bad(format!("`url`: {e}")))?;
        if s.username.trim().is_empty() {
            return Err(bad("`username` is required (an ari.conf user)".into()));
        }
        if s.password.expose().is_empty() {
            return Err(bad("`password` is required".into()));
        }
        if s.endpoint.trim().is_empty() {
            return Err(bad("`endpoint` must not be empty".into()));
        }
        let mut templates = template::plain_environment();
        template::add(&mut templates, "endpoint", &s.endpoint).map_err(&bad)?;
        for (field, value) in [("context", &s.context), ("extension", &s.extension)] {
            if value.trim().is_empty() {
                return Err(bad(format!("`{field}` must not be empty")));
            }
        }
        if s.priority == 0 {
            return Err(bad("`priority` must be at least 1".into()));
        }
        if s.ring_timeout.as_secs() == 0 {
            return Err(bad("`ring_timeout` must be at least 1s".into()));
        }
        if s.timeout.is_zero() {
            return Err(bad("`timeout` must be more than 0".into()));
        }
        Ok(Sip {
            base: cx.base(s.timeout),
            channels_url,
            username: s.username.trim().to_string(),
            password: s.password.clone(),
            endpoint_uses_phone: s.endpoint.contains("phone"),
            context: s.context.trim().to_string(),
            extension: s.extension.trim().to_string(),
            priority: s.priority,
            caller_id: present(s.caller_id.as_deref()),
            ring_timeout: s.ring_timeout.as_secs(),
            templates,
            client: cx.client.clone(),
        })
    }

    /// The originate request's URL: everything but the variables is in the query.
    fn url(&self, n: &Notification) -> Result<Url, DeliveryError> {
        if self.endpoint_uses_phone
            && n.phone_number
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
        {
            return Err(DeliveryError::Permanent(
                "no phone number for this user".into(),
            ));
        }
        let endpoint = template::render(&self.templates, "endpoint", &Context::of(n).value())?;
        let endpoint = endpoint.trim();
        if endpoint.is_empty() {
            return Err(DeliveryError::Permanent(
                "the endpoint template rendered nothing".into(),
            ));
        }
        let mut url = self.channels_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("endpoint", endpoint)
                .append_pair("context", &self.context)
                .append_pair("extension", &self.extension)
                .append_pair("priority", &self.priority.to_string());
            if let Some(caller_id) = &self.caller_id {
                q.append_pair("callerId", caller_id);
            }
            q.append_pair("timeout", &self.ring_timeout.to_string());
        }
        Ok(url)
    }
}

impl Deliver for Sip {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let url = self.url(n)?;
        let body = serde_json::json!({
            "variables": {
                "ONCALL_MESSAGE": shape::speech(&n.message),
                "ONCALL_KIND": n.kind,
                "ONCALL_ID": n.id.to_string(),
            }
        });
        let request = http::keyed(self.client.post(url), n)
            .basic_auth(&self.username, Some(self.password.expose()))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(self.base.timeout);
        http::send(request, "ARI").await
    }
}
