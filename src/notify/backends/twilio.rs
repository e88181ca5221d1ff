//! The `twilio` backend: SMS and voice calls through Twilio's REST API.
//!
//! Calls (kind `call`) are placed with inline TwiML that reads the message aloud
//! (`<Say loop="2">`), cleaned for speech and XML-escaped, shortened at a word boundary (with
//! a spoken marker) so the whole document stays within Twilio's 4,000 characters. Every
//! other kind is sent as SMS: shortened at a word to `max_segments` segments counted as
//! carriers do ([`crate::notify::sms`]), then split into numbered parts (or cut) at
//! `max_length`, one request per part, in order. The parts that went out are recorded, so a
//! retry after a failure on part 2 starts again at part 2.
//!
//! With a public hostname configured (`app.hostname`), a call asks Twilio to post its status
//! (`StatusCallback`, on `answered` and `completed`) to `hooks/twilio/<name>/status`, which
//! records whether it was answered (see `crate::notify::answer`).
//!
//! Twilio's 4xx answers are permanent (the next route takes over at once) except 408 and
//! 429; 5xx answers and connection errors are retried.

use reqwest::Url;
use reqwest::header::CONTENT_TYPE;

use super::{
    Base, Deliver, DeliveryError, Setup, http, idempotency_key, part_index, part_key, send_parts,
    within,
};
use crate::config::{Secret, TwilioSettings};
use crate::notify::shape;
use crate::notify::sms::{self, SmsLimit};
use crate::notify::{Notification, NotifyError};

/// Twilio's own limit on a message body.
const TWILIO_MAX_LENGTH: usize = 1600;
/// Twilio's limit on inline TwiML, in characters of the document as sent (escaped).
const TWIML_MAX_CHARS: usize = 4000;

/// Sends SMS and places calls through Twilio.
#[derive(Debug)]
pub struct Twilio {
    base: Base,
    account_sid: String,
    auth_token: Secret,
    from: String,
    messages_url: Url,
    calls_url: Url,
    limit: SmsLimit,
    voice: Option<String>,
    language: Option<String>,
    repeat: u32,
    /// Where Twilio posts a call's status; `None` without a public hostname.
    status_callback: Option<String>,
    /// Where a call's key press goes (OnCall's menu); `None` unless `replies` is on.
    keys_url: Option<String>,
    client: reqwest::Client,
}

/// OnCall's own phone menu, said after the message when keys are on.
pub const KEYS_MENU: &str = "Press 1 to acknowledge, 2 to resolve, 3 to silence for 30 minutes.";

impl Twilio {
    /// Validates the settings.
    pub fn new(cx: &Setup<'_>, s: &TwilioSettings) -> Result<Twilio, NotifyError> {
        let bad = cx.error();
        let sid = s.account_sid.trim();
        if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(
                "`account_sid` is required: the account SID from the Twilio console (AC...)".into(),
            ));
        }
        if s.auth_token.expose().trim().is_empty() {
            return Err(bad("`auth_token` is required".into()));
        }
        if s.from.trim().is_empty() {
            return Err(bad(
                "`from` is required: a Twilio phone number in E.164 form (+15551234567)".into(),
            ));
        }
        let base = http::base_url(&s.api_base, "api_base").map_err(&bad)?;
        let endpoint = |resource: &str| {
            Url::parse(&format!(
                "{}/2010-04-01/Accounts/{sid}/{resource}.json",
                base.as_str().trim_end_matches('/')
            ))
            .map_err(|e| bad(format!("`api_base`: {e}")))
        };
        let (messages_url, calls_url) = (endpoint("Messages")?, endpoint("Calls")?);
        if s.max_length == 0 || s.max_length > TWILIO_MAX_LENGTH {
            return Err(bad(format!(
                "`max_length` must be between 1 and {TWILIO_MAX_LENGTH} (Twilio's limit)"
            )));
        }
        if s.max_segments == 0 {
            return Err(bad(
                "`max_segments` must be at least 1 (SMS segments per notification)".into(),
            ));
        }
        if s.repeat == 0 || s.repeat > 10 {
            return Err(bad(
                "`repeat` must be between 1 and 10 (how often a call says the message)".into(),
            ));
        }
        let token = |field: &str, value: &Option<String>| -> Result<Option<String>, NotifyError> {
            match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v)
                    if v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) =>
                {
                    Ok(Some(v.to_string()))
                }
                Some(v) => Err(bad(format!(
                    "`{field}`: `{v}` is not a Twilio {field} name (e.g. `Polly.Joanna`, `en-US`)"
                ))),
            }
        };
        let voice = token("voice", &s.voice)?;
        let language = token("language", &s.language)?;
        if s.timeout.is_zero() {
            return Err(bad("`timeout` must be more than 0".into()));
        }
        Ok(Twilio {
            base: cx.base(s.timeout),
            account_sid: sid.to_string(),
            auth_token: s.auth_token.clone(),
            from: s.from.trim().to_string(),
            messages_url,
            calls_url,
            limit: SmsLimit {
                max_length: s.max_length,
                split: s.split,
                max_segments: s.max_segments,
            },
            voice,
            language,
            repeat: s.repeat,
            status_callback: cx
                .hooks
                .as_deref()
                .map(|root| crate::notify::answer::twilio_status_url(root, cx.name)),
            keys_url: cx
                .hooks
                .as_deref()
                .filter(|_| s.replies)
                .map(|root| crate::notify::answer::twilio_hook_url(root, cx.name, "voice")),
            client: cx.client.clone(),
        })
    }

    /// The TwiML of a call: the message, cleaned for speech and shortened to fit
    /// [`TWIML_MAX_CHARS`], said `repeat` times.
    fn twiml(&self, message: &str, keys: Option<&str>) -> String {
        let mut voice_attrs = String::new();
        if let Some(voice) = &self.voice {
            voice_attrs.push_str(&format!(" voice=\"{}\"", xml_escape(voice)));
        }
        if let Some(language) = &self.language {
            voice_attrs.push_str(&format!(" language=\"{}\"", xml_escape(language)));
        }
        let attrs = format!("{voice_attrs} loop=\"{}\"", self.repeat);
        // With keys, the message is said inside OnCall's own menu; a key press ends it.
        let document = |said: &str| match keys {
            Some(action) => format!(
                "<Response><Gather input=\"dtmf\" numDigits=\"1\" timeout=\"8\" method=\"POST\" action=\"{}\">\
                 <Say{attrs}>{said}</Say><Say{voice_attrs}>{KEYS_MENU}</Say></Gather></Response>",
                xml_escape(action)
            ),
            None => format!("<Response><Say{attrs}>{said}</Say></Response>"),
        };
        let room = TWIML_MAX_CHARS.saturating_sub(document("").chars().count());
        let speech = shape::fit_speech(&shape::speech(message), room, |text| {
            xml_escape(text).chars().count()
        });
        document(&xml_escape(&speech))
    }

    async fn post(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        key: String,
    ) -> Result<(), DeliveryError> {
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the form: {e}")))?;
        let request = self
            .client
            .post(url.clone())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::IDEMPOTENCY_KEY, key)
            .body(body)
            .timeout(self.base.timeout);
        http::send(request, "Twilio").await
    }

    async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let to = n
            .phone_number
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| DeliveryError::Permanent("no phone number for this user".into()))?;
        if n.kind == "call" {
            // The notification travels in the URL, which Twilio signs.
            let keys = self
                .keys_url
                .as_ref()
                .map(|url| format!("{url}?n={}", n.id));
            let twiml = self.twiml(&n.message, keys.as_deref());
            let mut form = vec![("To", to), ("From", &self.from), ("Twiml", &twiml)];
            // The notification and attempt travel in the URL, which Twilio signs.
            let callback = self
                .status_callback
                .as_ref()
                .map(|url| format!("{url}?n={}&a={}", n.id, n.attempt));
            if let Some(url) = &callback {
                form.extend([
                    ("StatusCallback", url.as_str()),
                    ("StatusCallbackMethod", "POST"),
                    ("StatusCallbackEvent", "answered"),
                    ("StatusCallbackEvent", "completed"),
                ]);
            }
            return self.post(&self.calls_url, &form, idempotency_key(n)).await;
        }
        let parts = sms::parts(&n.message, self.limit);
        let segments: usize = parts.iter().map(|p| sms::segments(p)).sum();
        tracing::info!(
            id = n.id,
            backend = self.base.name,
            parts = parts.len(),
            segments,
            encoding = %sms::encoding(&n.message),
            "sending SMS"
        );
        let key = idempotency_key(n);
        send_parts(n, &self.base.name, &parts, |part| {
            let key = part_key(&key, part_index(&parts, part), parts.len());
            async move {
                self.post(
                    &self.messages_url,
                    &[("To", to), ("From", &self.from), ("Body", part)],
                    key,
                )
                .await
            }
        })
        .await
    }
}

impl Deliver for Twilio {
    fn base(&self) -> &Base {
        &self.base
    }

    fn reports_answer(&self, n: &Notification) -> bool {
        self.status_callback.is_some() && n.kind == "call"
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        // One budget for all parts of a long SMS.
        within(self.base.timeout, self.send(n), || {
            format!("Twilio did not answer within {:?}", self.base.timeout)
        })
        .await
    }
}

/// Escapes text for XML content and attribute values; control characters, which XML 1.0
/// does not allow, become spaces.
fn xml_escape(text: &str) -> String {
    let allowed: String = text
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    quick_xml::escape::escape(allowed.as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::backends::testing::setup;
    use std::time::Duration;

    fn twilio(api_base: &str) -> Twilio {
        crate::install_crypto_provider();
        let settings = TwilioSettings {
            account_sid: "AC1".into(),
            auth_token: Secret("t".into()),
            from: "+15550001111".into(),
            api_base: api_base.into(),
            timeout: Duration::from_secs(1),
            ..TwilioSettings::default()
        };
        Twilio::new(&setup("tw"), &settings).expect("valid")
    }

    fn notification(kind: &str, phone: Option<&str>) -> Notification {
        Notification {
            phone_number: phone.map(str::to_string),
            message: "OnCall heartbeat silent".into(),
            ..crate::notify::backends::testing::notification(kind)
        }
    }

    #[tokio::test]
    async fn no_phone_number_is_permanent_without_a_request() {
        // Port 9 (discard) on loopback: a request would fail as transient, not permanent.
        let t = twilio("http://127.0.0.1:9");
        for kind in ["heartbeat", "push", "call"] {
            let err = t
                .deliver(&notification(kind, None))
                .await
                .expect_err("no phone");
            assert_eq!(
                err,
                DeliveryError::Permanent("no phone number for this user".into())
            );
        }
    }

    #[test]
    fn twiml_says_the_message_repeat_times() {
        let t = twilio("https://api.twilio.com");
        assert_eq!(
            t.twiml("Disk <b>full</b> & \"hot\"", None),
            "<Response><Say loop=\"2\">Disk full &amp; hot</Say></Response>"
        );
        assert_eq!(
            t.calls_url.as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json"
        );
    }

    #[test]
    fn twiml_fits_twilio_limit_after_escaping() {
        let mut t = twilio("https://api.twilio.com");
        t.voice = Some("Polly.Joanna".into());
        t.language = Some("en-US".into());
        // About 5,500 characters: a document longer than Twilio takes, as once seen.
        let long = "CPU & memory high on db-1 ".repeat(211);
        assert_eq!(long.chars().count(), 5486);
        let ampersands = "R&D && ops & sre & ".repeat(300);
        for message in [long.as_str(), ampersands.as_str()] {
            let twiml = t.twiml(message, None);
            assert!(twiml.chars().count() <= TWIML_MAX_CHARS, "{}", twiml.len());
            assert!(
                twiml.ends_with(&format!("{}</Say></Response>", shape::SHORTENED)),
                "{twiml}"
            );
            // Close to the limit: nothing more than a word was given away.
            assert!(
                twiml.chars().count() > TWIML_MAX_CHARS - 30,
                "{}",
                twiml.len()
            );
        }
    }

    #[test]
    fn twiml_with_keys_offers_the_menu_and_still_fits() {
        let t = twilio("https://api.twilio.com");
        let keys = "https://relay.example.com/hooks/twilio/tw/voice?n=7&x=1";
        let twiml = t.twiml("Disk full", Some(keys));
        assert!(
            twiml.starts_with("<Response><Gather input=\"dtmf\" numDigits=\"1\""),
            "{twiml}"
        );
        assert!(
            twiml
                .contains("action=\"https://relay.example.com/hooks/twilio/tw/voice?n=7&amp;x=1\"")
        );
        assert!(twiml.contains(&format!("<Say>{KEYS_MENU}</Say></Gather></Response>")));
        let long = "CPU & memory high on db-1 ".repeat(211);
        assert!(t.twiml(&long, Some(keys)).chars().count() <= TWIML_MAX_CHARS);
    }

    #[test]
    fn xml_is_escaped() {
        assert_eq!(
            xml_escape("a & b <c> \"d\" 'e'\u{7}"),
            "a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; "
        );
    }
}
