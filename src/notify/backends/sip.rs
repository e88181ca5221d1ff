//! The `sip` backend: phone calls through Asterisk's REST interface (ARI).
//!
//! Each notification originates one channel: `POST {url}/ari/channels` with the endpoint
//! to dial (a template, `PJSIP/{{ phone }}@trunk` by default) and the dialplan location
//! (`context`, `extension`, `priority`) that answers and reads the message. The message,
//! cleaned for speech, travels as the channel variable `ONCALL_MESSAGE` (with `ONCALL_KIND`
//! and `ONCALL_ID`).
//!
//! With `app` set, the call is originated into that Stasis application instead, with the
//! channel id `oncall-<notification id>-<attempt>`: the relay reads the app's events
//! (`crate::ack::asterisk`), records whether the call was answered, and hands the answered
//! channel to the dialplan location above.
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
    app: Option<String>,
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
        let channels_url = ari_url(&s.url, "channels").map_err(&bad)?;
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
            app: present(s.app.as_deref()),
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
            q.append_pair("endpoint", endpoint);
            match &self.app {
                Some(app) => {
                    q.append_pair("app", app)
                        .append_pair("channelId", &channel_id(n.id, n.attempt));
                }
                None => {
                    q.append_pair("context", &self.context)
                        .append_pair("extension", &self.extension)
                        .append_pair("priority", &self.priority.to_string());
                }
            }
            if let Some(caller_id) = &self.caller_id {
                q.append_pair("callerId", caller_id);
            }
            q.append_pair("timeout", &self.ring_timeout.to_string());
        }
        Ok(url)
    }
}

/// The address of ARI resource `resource` (`channels`, `events`) on the Asterisk at `url`,
/// given as `http://host:8088` or `http://host:8088/ari`.
pub fn ari_url(url: &str, resource: &str) -> Result<Url, String> {
    let base = http::base_url(url, "url")?;
    if base.query().is_some() {
        return Err("`url` must not carry a query".into());
    }
    let root = base.as_str().trim_end_matches('/');
    let root = root.strip_suffix("/ari").unwrap_or(root);
    Url::parse(&format!("{root}/ari/{resource}")).map_err(|e| format!("`url`: {e}"))
}

/// The id of the channel that attempt `attempt` of notification `id` originates.
pub fn channel_id(id: i64, attempt: i64) -> String {
    format!("{CHANNEL_PREFIX}{id}-{attempt}")
}

/// The notification and attempt a channel id made by [`channel_id`] stands for.
pub fn parse_channel_id(channel: &str) -> Option<(i64, i64)> {
    let (id, attempt) = channel.strip_prefix(CHANNEL_PREFIX)?.split_once('-')?;
    Some((id.parse().ok()?, attempt.parse().ok()?))
}

const CHANNEL_PREFIX: &str = "oncall-";

impl Deliver for Sip {
    fn base(&self) -> &Base {
        &self.base
    }

    fn reports_answer(&self, n: &Notification) -> bool {
        self.app.is_some() && n.kind == "call"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_name_notification_and_attempt() {
        assert_eq!(channel_id(42, 3), "oncall-42-3");
        assert_eq!(parse_channel_id("oncall-42-3"), Some((42, 3)));
        for foreign in [
            "1700000000.42",
            "oncall-42",
            "oncall-x-1",
            "oncall-1-2-3",
            "",
        ] {
            assert_eq!(parse_channel_id(foreign), None, "{foreign}");
        }
    }
}
