//! The `email` backend: one plain-text mail per notification over SMTP.
//!
//! The recipient is the user's `email` contact from the directory, else the user's own email
//! address, else the configured `to` (for notifications without a user, such as heartbeat
//! alerts when no admin exists). The subject is `[OnCall] <title>` unless a `subject`
//! template is configured; the body is the message.
//!
//! SMTP 5xx answers are permanent (the next route takes over at once); 4xx answers, timeouts
//! and connection or TLS errors are retried.

use std::sync::OnceLock;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncTransport, Message, Tokio1Executor};
use minijinja::Environment;

use super::{Base, Deliver, DeliveryError, Setup, contact, http, present, within};
use crate::config::{EmailSettings, SmtpSecurity};
use crate::notify::template::{self, Context};
use crate::notify::{Notification, NotifyError};

/// The subject when no `subject` template is configured.
const DEFAULT_SUBJECT: &str = "[OnCall] {{ title }}";

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Sends each notification as an email.
pub struct Email {
    base: Base,
    from: Mailbox,
    to: Option<Mailbox>,
    templates: Environment<'static>,
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    /// Built on first use: lettre's connection pool needs a running Tokio runtime.
    transport: OnceLock<Transport>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("name", &self.base.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from.to_string())
            .field("to", &self.to.as_ref().map(|m| m.to_string()))
            .field("timeout", &self.base.timeout)
            .finish_non_exhaustive()
    }
}

impl Email {
    /// Validates the settings: host, addresses, credentials and the subject template.
    pub fn new(cx: &Setup<'_>, s: &EmailSettings) -> Result<Email, NotifyError> {
        let bad = cx.error();
        let host = s.host.trim();
        if host.is_empty() {
            return Err(bad("`host` is required (the SMTP server)".into()));
        }
        if host.contains('/') || host.contains(' ') {
            return Err(bad(format!(
                "`host`: `{host}` is not a host name (write the port in `port`)"
            )));
        }
        let from: Mailbox = s
            .from
            .trim()
            .parse()
            .map_err(|e| bad(format!("`from`: `{}` is not an email address: {e}", s.from)))?;
        let to = match present(s.to.as_deref()) {
            Some(to) => Some(
                to.parse::<Mailbox>()
                    .map_err(|e| bad(format!("`to`: `{to}` is not an email address: {e}")))?,
            ),
            None => None,
        };
        let credentials = match (&s.username, &s.password) {
            (Some(user), Some(password)) if !user.is_empty() => Some(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            )),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "`username` and `password` must be given together".into()
                ));
            }
        };
        let tls = match s.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls => Tls::Required(
                TlsParameters::new(host.to_string())
                    .map_err(|e| bad(format!("`security`: {e}")))?,
            ),
            SmtpSecurity::Tls => Tls::Wrapper(
                TlsParameters::new(host.to_string())
                    .map_err(|e| bad(format!("`security`: {e}")))?,
            ),
        };
        let port = s.port.unwrap_or(match s.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        if port == 0 {
            return Err(bad("`port` must not be 0".into()));
        }
        if s.timeout.is_zero() {
            return Err(bad("`timeout` must be more than 0".into()));
        }
        let mut templates = template::plain_environment();
        let subject = s.subject.as_deref().unwrap_or(DEFAULT_SUBJECT);
        template::add(&mut templates, "subject", subject).map_err(&bad)?;
        Ok(Email {
            base: cx.base(s.timeout),
            from,
            to,
            templates,
            host: host.to_string(),
            port,
            tls,
            credentials,
            transport: OnceLock::new(),
        })
    }

    fn transport(&self) -> &Transport {
        self.transport.get_or_init(|| {
            let mut builder = Transport::builder_dangerous(self.host.clone())
                .port(self.port)
                .tls(self.tls.clone())
                .timeout(Some(self.base.timeout));
            if let Some(c) = &self.credentials {
                builder = builder.credentials(c.clone());
            }
            builder.build()
        })
    }

    /// The user's `email` contact, else the user's address, else the configured `to`.
    fn recipient(&self, n: &Notification) -> Result<Mailbox, DeliveryError> {
        let candidate = contact(n, &["email"]).or(Some(n.email.trim()).filter(|e| !e.is_empty()));
        match candidate {
            Some(address) => address.parse::<Address>().map(Mailbox::from).map_err(|e| {
                DeliveryError::Permanent(format!("`{address}` is not an email address: {e}"))
            }),
            None => self.to.clone().ok_or_else(|| {
                DeliveryError::Permanent(
                    "no recipient: the notification has no user email and `to` is not set".into(),
                )
            }),
        }
    }

    fn message(&self, n: &Notification) -> Result<Message, DeliveryError> {
        let subject = template::render(&self.templates, "subject", &Context::of(n).value())?;
        // A header cannot span lines.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        Message::builder()
            .from(self.from.clone())
            .to(self.recipient(n)?)
            .subject(subject)
            .message_id(Some(message_id(n, &self.from)))
            .header(ContentType::TEXT_PLAIN)
            .body(n.message.clone())
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the email: {e}")))
    }
}

/// A Message-ID made of the idempotency key, so that a repeat carries the same one and a
/// mail system that drops duplicates by Message-ID drops it.
fn message_id(n: &Notification, from: &Mailbox) -> String {
    format!("<{}@{}>", super::idempotency_key(n), from.email.domain())
}

impl Deliver for Email {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        {
            let message = self.message(n)?;
            let send = async {
                self.transport().send(message).await.map(drop).map_err(|e| {
                    let text = format!("SMTP {}", http::error_chain(&e));
                    if e.is_permanent() {
                        DeliveryError::Permanent(text)
                    } else {
                        DeliveryError::Transient(text)
                    }
                })
            };
            within(self.base.timeout, send, || {
                format!("SMTP: no answer within {:?}", self.base.timeout)
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::backends::testing::setup;
    use std::time::Duration;

    fn settings(to: Option<&str>) -> EmailSettings {
        EmailSettings {
            host: "smtp.example.com".into(),
            port: None,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            from: "oncall@example.com".into(),
            to: to.map(str::to_string),
            subject: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn notification(email: &str, contact: Option<&str>) -> Notification {
        Notification {
            id: 7,
            email: email.into(),
            message: "OnCall heartbeat silent\nno beat for 10 minutes".into(),
            payload: Some(serde_json::json!({"title": "OnCall heartbeat silent"})),
            contacts: contact
                .map(|c| [("email".to_string(), c.to_string())].into_iter().collect())
                .unwrap_or_default(),
            ..crate::notify::backends::testing::notification("heartbeat")
        }
    }

    #[test]
    fn recipient_is_contact_then_user_then_configured_to() {
        crate::install_crypto_provider();
        let email = Email::new(&setup("mail"), &settings(Some("ops@example.com"))).expect("valid");
        assert_eq!(email.port, 587);
        let to = |n: &Notification| email.recipient(n).map(|m| m.email.to_string());
        assert_eq!(
            to(&notification("a@example.com", Some("pager@example.org"))),
            Ok("pager@example.org".into())
        );
        assert_eq!(
            to(&notification("a@example.com", None)),
            Ok("a@example.com".into())
        );
        assert_eq!(to(&notification("", None)), Ok("ops@example.com".into()));

        let without_to = Email::new(&setup("mail"), &settings(None)).expect("valid");
        assert!(matches!(
            without_to.recipient(&notification("", None)),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            without_to.recipient(&notification("not an address", None)),
            Err(DeliveryError::Permanent(_))
        ));
    }

    #[test]
    fn subject_is_the_title_on_one_line() {
        crate::install_crypto_provider();
        let email = Email::new(&setup("mail"), &settings(Some("ops@example.com"))).expect("valid");
        let message = email.message(&notification("", None)).expect("message");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(
            text.contains("Subject: [OnCall] OnCall heartbeat silent\r\n"),
            "{text}"
        );
        assert!(text.contains("To: ops@example.com\r\n"), "{text}");
    }
}
