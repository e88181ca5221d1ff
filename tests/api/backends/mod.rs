//! The backends against local fakes. Every backend passes one conformance suite (the table at
//! the bottom: one row per backend setup, each row an [`Conformance`] implementation in the
//! backend's own file); each file keeps only what is particular to its backend.
//!
//! The suite speaks to a backend through its public settings (`oncall_relay::config`) and the
//! HTTP API only, so it holds however the backends are arranged inside the crate.

use std::time::Duration;

use oncall_relay::config::{self, BackendSettings, Settings};
use oncall_relay::directory::NewUser;

use crate::helpers::*;

mod email;
mod exec;
mod mattermost;
mod ntfy;
mod sip;
mod slack;
mod telegram;
mod twilio;
mod webhook;

/// One message the exact-request scenario sends: form path, recipient, text.
pub struct Message {
    pub path: &'static str,
    pub email: &'static str,
    pub message: &'static str,
}

pub const SMS: &str = "/api/v1/send_sms";
pub const CALL: &str = "/api/v1/make_call";
/// The recipient with contacts ([`Conformance::CONTACTS`]), name and phone number.
pub const ALICE: &str = "alice@example.com";
/// A recipient without contacts, so the backend's defaults apply.
pub const BOB: &str = "bob@example.com";
/// The text of the transient-failure scenario, for fakes that keep what they delivered.
pub const TRANSIENT_MESSAGE: &str = "second time lucky";

/// What the suite needs to know about one backend: how to point it at a local fake, what it
/// must send, and how that fake answers "never" and "later". For HTTP backends those are a 4xx
/// and a 5xx; for email an SMTP 5xx and 4xx; for exec a permanent and another exit code.
pub trait Conformance: Sized {
    /// The settings type of the backend.
    type Settings: Clone + Timed + 'static;
    /// Wraps its settings as `plugin.backends` holds them.
    const WRAP: fn(Self::Settings) -> BackendSettings;
    /// The backend's key under `plugin.backends`, which every startup error must name.
    const NAME: &'static str;
    /// Alice's contacts.
    const CONTACTS: &'static [(&'static str, &'static str)] = &[];
    /// What the exact-request scenario sends, in this order.
    const SENDS: &'static [Message];
    /// The form path of the failure scenarios (a kind the backend delivers).
    const PATH: &'static str = SMS;
    /// What the error of the permanent failure says.
    const PERMANENT_ERROR: &'static [&'static str];
    /// What the error of the first, transient attempt says.
    const TRANSIENT_ERROR: &'static [&'static str];
    /// Text that must never show in an error (tokens, passwords).
    const SECRETS: &'static [&'static str] = &[];
    /// Ways to spoil [`Conformance::base`] that the backend refuses at start.
    const SPOILED: &'static [Spoil<Self::Settings>];

    /// Starts the fake, answering with success.
    async fn start() -> Self;
    /// The backend's settings against the fake.
    fn base(&self) -> Self::Settings;
    /// Every answer from now on is a permanent failure.
    fn fail_permanently(&self);
    /// The next answer is a transient failure, then success.
    fn fail_once(&self);
    /// How many deliveries the fake has seen (requests, RCPT commands, runs).
    fn seen(&self) -> usize;
    /// Asserts what the fake received for [`Self::SENDS`]; `events` are in the same order.
    fn assert_sent(&self, events: &[NotificationRecord], alice: &User);
    /// Checks after the permanent failure, beyond the attempt count.
    fn after_permanent(&self) {}
    /// Checks after the transient failure was delivered, beyond the attempt count.
    fn after_transient(&self) {}

    /// [`Conformance::base`] as `plugin.backends` holds it.
    fn settings(&self) -> BackendSettings {
        (Self::WRAP)(self.base())
    }
    /// Text that must never show in an error: [`Conformance::SECRETS`] unless the fake's
    /// address is one.
    fn secrets(&self) -> Vec<String> {
        Self::SECRETS.iter().map(|s| s.to_string()).collect()
    }
    /// Settings the backend refuses, each with the field the error names.
    fn bad_settings(&self) -> Vec<(BackendSettings, &'static str)> {
        refused(Self::WRAP, self.base(), Self::SPOILED)
    }
    /// The settings with another request timeout.
    fn with_timeout(&self, timeout: Duration) -> BackendSettings {
        let mut settings = self.base();
        settings.set_timeout(timeout);
        (Self::WRAP)(settings)
    }
}

/// Settings with a request timeout.
pub trait Timed {
    /// Sets the request timeout to `timeout`.
    fn set_timeout(&mut self, timeout: Duration);
}

macro_rules! timed {
    ($($settings:ty),*) => {$(
        impl Timed for $settings {
            fn set_timeout(&mut self, timeout: Duration) {
                self.timeout = timeout;
            }
        }
    )*};
}

timed!(
    config::EmailSettings,
    config::ExecSettings,
    config::MattermostSettings,
    config::NtfySettings,
    config::SipSettings,
    config::SlackSettings,
    config::TelegramSettings,
    config::TwilioSettings,
    config::WebhookSettings
);

/// One way to spoil a backend's settings, and the field the error must name.
pub type Spoil<T> = (fn(&mut T), &'static str);

/// Bad settings of one backend type: each case changes `base` in one way.
pub fn refused<T: Clone>(
    variant: fn(T) -> BackendSettings,
    base: T,
    cases: &[Spoil<T>],
) -> Vec<(BackendSettings, &'static str)> {
    cases
        .iter()
        .map(|(change, field)| {
            let mut settings = base.clone();
            change(&mut settings);
            (variant(settings), *field)
        })
        .collect()
}

/// The [`Conformance`] methods of a row that wraps one HTTP [`Fake`]: how it answers a
/// delivery, a permanent failure and a transient one.
macro_rules! http_fake {
    ($ok:expr, $permanent:expr, $transient:expr $(,)?) => {
        async fn start() -> Self {
            Self(Fake::answering($ok).await)
        }
        fn fail_permanently(&self) {
            self.0.script(&[], $permanent);
        }
        fn fail_once(&self) {
            self.0.script(&[$transient], $ok);
        }
        fn seen(&self) -> usize {
            self.0.requests().len()
        }
    };
}
pub(crate) use http_fake;

/// A message to Alice.
pub const fn to_alice(path: &'static str, message: &'static str) -> Message {
    Message {
        path,
        email: ALICE,
        message,
    }
}

/// A message to Bob.
pub const fn to_bob(path: &'static str, message: &'static str) -> Message {
    Message {
        path,
        email: BOB,
        message,
    }
}

/// Delivers through the backend `name`, declared as `backend`.
pub fn use_backend(s: &mut Settings, name: &str, backend: BackendSettings) {
    s.plugin.backend = name.into();
    s.plugin.backends.insert(name.into(), backend);
}

/// The settings of `db`, delivering through the backend `name`, declared as `backend`.
pub fn with_backend(db: &TestDb, name: &str, backend: BackendSettings) -> Settings {
    let mut s = settings(db);
    use_backend(&mut s, name, backend);
    s
}

/// An app delivering through `B` against `fake`, with Alice and Bob in its directory.
async fn spawn<B: Conformance>(db: &TestDb, fake: &B) -> (TestApp, User) {
    let mut s = settings(db);
    use_backend(&mut s, B::NAME, fake.settings());
    let app = TestApp::spawn(s).await;
    let alice = app
        .add(NewUser {
            email: ALICE.into(),
            name: Some("Alice".into()),
            phone_number: Some("+4930123456".into()),
            contacts: contact_map(B::CONTACTS),
            ..NewUser::default()
        })
        .await;
    app.add_user(BOB, Some("+4930123457")).await;
    (app, alice)
}

/// Spawns an app on `s`, adds Alice with `contacts`, sends her `message` as an SMS and waits
/// until it is final.
pub async fn sms_to_alice(
    s: Settings,
    contacts: &[(&str, &str)],
    message: &str,
) -> (TestApp, Vec<NotificationRecord>) {
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts(ALICE, contacts).await;
    app.send_ok(SMS, ALICE, message).await;
    let events = app.wait_until_settled(1).await;
    (app, events)
}

/// A long alert for an SMS gateway: GSM-7 apart from one extension character per sentence.
pub const LONG_SMS: &str = "CPU above 95% on db-1 [prod] for ten minutes, see the runbook. ";

/// `sent` is `original` shortened at a word to exactly `max` SMS segments, marker included.
pub fn assert_shortened_to_segments(original: &str, sent: &str, max: usize) {
    use oncall_relay::notify::sms;
    assert!(sms::segments(original) > max, "the original fits already");
    assert_eq!(sms::segments(sent), max, "{sent}");
    let kept = sent.strip_suffix(sms::SHORTENED).expect("marker");
    assert!(original.starts_with(kept), "{kept}");
    assert!(
        original[kept.len()..].starts_with(' '),
        "cut inside a word: {kept}"
    );
}

/// Every request is a POST to `path` (when given) with these headers.
pub fn assert_each_post(requests: &[Recorded], path: Option<&str>, headers: &[(&str, &str)]) {
    for r in requests {
        assert_eq!(r.method, "POST");
        if let Some(path) = path {
            assert_eq!(r.uri.path(), path);
        }
        for (name, value) in headers {
            assert_eq!(r.headers[*name], *value, "{name}");
        }
    }
}

/// Owned key-value pairs, to compare with a decoded form or query.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_error_names(error: &str, expected: &[&str], secrets: &[String]) {
    for part in expected {
        assert!(error.contains(part), "{part:?} not in {error:?}");
    }
    for secret in secrets {
        assert!(
            !error.contains(secret.as_str()),
            "{secret:?} leaks: {error}"
        );
    }
}

/// Each message arrives as exactly the request the backend's service expects, at once.
pub async fn sends_the_exact_request<B: Conformance>(db: TestDb) {
    let fake = B::start().await;
    let (app, alice) = spawn(&db, &fake).await;
    let mut events = Vec::new();
    for (i, send) in B::SENDS.iter().enumerate() {
        app.send_ok(send.path, send.email, send.message).await;
        let settled = app.wait_until_settled(i + 1).await;
        let new = settled
            .into_iter()
            .find(|e| {
                events
                    .iter()
                    .all(|seen: &NotificationRecord| seen.id != e.id)
            })
            .expect("a new notification");
        assert_eq!(new.status, "delivered", "{new:?}");
        assert_eq!(new.backend.as_deref(), Some(B::NAME));
        assert_eq!(new.attempts, 1);
        events.push(new);
    }
    assert_eq!(fake.seen(), B::SENDS.len());
    fake.assert_sent(&events, &alice);
    app.stop().await;
}

/// A permanent failure (4xx) fails the notification at its first attempt, without retry.
pub async fn permanent_failure_is_not_retried<B: Conformance>(db: TestDb) {
    let fake = B::start().await;
    fake.fail_permanently();
    let (app, _) = spawn(&db, &fake).await;
    app.send_ok(B::PATH, ALICE, "hello").await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "failed", "{e:?}");
    assert_eq!(e.attempts, 1);
    assert_eq!(e.attempt_log[0].outcome, "failed");
    let error = e.last_error.as_deref().unwrap_or_default();
    assert_error_names(error, B::PERMANENT_ERROR, &fake.secrets());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.seen(), 1, "a permanent failure is not retried");
    fake.after_permanent();
    app.stop().await;
}

/// A transient failure (5xx) is retried, and the retry delivers.
pub async fn transient_failure_is_retried_then_delivered<B: Conformance>(db: TestDb) {
    let fake = B::start().await;
    fake.fail_once();
    let (app, _) = spawn(&db, &fake).await;
    app.send_ok(B::PATH, ALICE, TRANSIENT_MESSAGE).await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "delivered", "{e:?}");
    assert_eq!(e.attempts, 2);
    let outcomes: Vec<&str> = e.attempt_log.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "delivered"]);
    let first = attempt_error(e, 0);
    assert_error_names(first, B::TRANSIENT_ERROR, &fake.secrets());
    assert_eq!(fake.seen(), 2);
    fake.after_transient();
    app.stop().await;
}

/// Bad settings stop the start with an error naming the backend and the field; a request
/// timeout as long as the queue's lease is refused by validation.
pub async fn bad_settings_are_refused_at_start<B: Conformance>() {
    let db = TestDb::new(Db::Sqlite).await;
    let fake = B::start().await;
    let cases = fake.bad_settings();
    assert!(!cases.is_empty());
    for (backend, field) in cases {
        let mut s = settings(&db);
        use_backend(&mut s, B::NAME, backend);
        let err = oncall_relay::Application::build(s)
            .await
            .err()
            .unwrap_or_else(|| panic!("{}: must fail for {field}", B::NAME));
        let text = err.to_string();
        assert!(
            text.contains(&format!("`{}`", B::NAME)) && text.contains(field),
            "{field}: {text}"
        );
    }
    let mut s = Settings::default();
    let too_long = fake.with_timeout(s.queue.lease);
    use_backend(&mut s, B::NAME, too_long);
    let err = s.validate().expect_err("timeout too long");
    let path = format!("plugin.backends.{}.timeout", B::NAME);
    assert!(err.to_string().contains(&path), "{err}");
}

/// The table: one row per backend setup, each running every scenario on both databases.
macro_rules! conformance {
    ($($row:ident => $backend:ty),* $(,)?) => {
        mod conformance {$(
            mod $row {
                use crate::backends as suite;
                use crate::db_test;
                use crate::helpers::TestDb;

                async fn sends_the_exact_request(db: TestDb) {
                    suite::sends_the_exact_request::<$backend>(db).await
                }
                db_test!(sends_the_exact_request);

                async fn permanent_failure_is_not_retried(db: TestDb) {
                    suite::permanent_failure_is_not_retried::<$backend>(db).await
                }
                db_test!(permanent_failure_is_not_retried);

                async fn transient_failure_is_retried_then_delivered(db: TestDb) {
                    suite::transient_failure_is_retried_then_delivered::<$backend>(db).await
                }
                db_test!(transient_failure_is_retried_then_delivered);

                #[tokio::test]
                async fn bad_settings_are_refused_at_start() {
                    suite::bad_settings_are_refused_at_start::<$backend>().await
                }
            }
        )*}
    };
}

conformance! {
    webhook => crate::backends::webhook::Row,
    telegram => crate::backends::telegram::Row,
    slack_incoming_webhook => crate::backends::slack::IncomingWebhook,
    slack_web_api => crate::backends::slack::WebApi,
    mattermost => crate::backends::mattermost::Mattermost,
    rocketchat => crate::backends::mattermost::Rocketchat,
    ntfy => crate::backends::ntfy::Row,
    exec => crate::backends::exec::Row,
    email => crate::backends::email::Row,
    twilio => crate::backends::twilio::Row,
    sip => crate::backends::sip::Row,
}
