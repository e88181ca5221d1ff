//! The twilio backend against a recording fake of Twilio's REST API.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, TwilioSettings};

use super::{
    CALL, Conformance, Message, SMS, Spoil, assert_each_post, assert_shortened_to_segments,
    http_fake, pairs, to_alice, with_backend,
};
use crate::db_test;
use crate::helpers::*;

/// Basic auth of `AC0123456789abcdef:tw-t0ken`.
const AUTH: &str = "Basic QUMwMTIzNDU2Nzg5YWJjZGVmOnR3LXQwa2Vu";
const CREATED: &str = r#"{"sid": "SM0123", "status": "queued"}"#;

fn twilio_settings(fake: &Fake) -> TwilioSettings {
    TwilioSettings {
        account_sid: "AC0123456789abcdef".into(),
        auth_token: Secret("tw-t0ken".into()),
        from: "+15550001111".into(),
        api_base: fake.url.trim_end_matches("/hook").to_string(),
        timeout: Duration::from_secs(2),
        ..TwilioSettings::default()
    }
}

/// The settings of `db`, delivering through Twilio at `fake`, changed by `change`.
fn with_twilio(db: &TestDb, fake: &Fake, change: fn(&mut TwilioSettings)) -> Settings {
    let mut t = twilio_settings(fake);
    change(&mut t);
    with_backend(db, "twilio", BackendSettings::Twilio(t))
}

/// The value of `key` in a request's form body.
fn field(r: &Recorded, key: &str) -> String {
    form(r)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key}"))
}

fn form(r: &Recorded) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&r.body).expect("form body")
}

/// The SMS texts Twilio was asked to send, in order.
fn bodies(fake: &Fake) -> Vec<String> {
    fake.requests().iter().map(|r| field(r, "Body")).collect()
}

/// An alert that takes three parts of at most 60 characters.
const LONG: &str = "Grafana OnCall: alert group #7 firing, CPU above 95 percent on db-1, db-2 and db-3 for ten minutes; runbook at the usual place.";
/// [`LONG`] split at word boundaries, each part numbered.
const PARTS: [&str; 3] = [
    "(1/3) Grafana OnCall: alert group #7 firing, CPU above 95",
    "(2/3) percent on db-1, db-2 and db-3 for ten minutes;",
    "(3/3) runbook at the usual place.",
];

async fn twilio_long_sms_arrives_as_ordered_parts(db: TestDb) {
    let fake = Fake::answering(Reply::Json(201, CREATED)).await;
    let s = with_twilio(&db, &fake, |t| t.max_length = 60);
    let (app, events) = deliver_to_alice(s, SMS, LONG).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let bodies = bodies(&fake);
    assert_eq!(bodies, PARTS);
    for (i, body) in bodies.iter().enumerate() {
        assert!(body.chars().count() <= 60, "{body}");
        assert!(
            body.starts_with(&format!("({}/{}) ", i + 1, bodies.len())),
            "{body}"
        );
    }
    app.stop().await;
}
db_test!(twilio_long_sms_arrives_as_ordered_parts);

/// Twilio accepts part 1, fails part 2 once: the retry starts at part 2, so the phone gets
/// each part once.
async fn twilio_retry_resends_no_part_already_sent(db: TestDb) {
    let fake = Fake::start().await;
    let created = Reply::Json(201, CREATED);
    let unavailable = Reply::Json(503, r#"{"code": 20503, "message": "Service unavailable"}"#);
    fake.script(&[created, unavailable], created);
    let s = with_twilio(&db, &fake, |t| t.max_length = 60);
    let (app, events) = deliver_to_alice(s, SMS, LONG).await;
    assert_delivered_on_the_second_attempt(&events[0]);
    let first = attempt_error(&events[0], 0);
    assert!(first.starts_with("part 2/3: "), "{first}");
    let sent = bodies(&fake);
    let accepted: Vec<&str> = sent
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, b)| b.as_str())
        .collect();
    assert_eq!(accepted, PARTS, "all requests: {sent:#?}");
    app.stop().await;
}
db_test!(twilio_retry_resends_no_part_already_sent);

/// A long UCS-2 text (Cyrillic and emoji) is shortened at a word to the configured segments,
/// counted as the carrier counts them, not in characters.
async fn twilio_sms_is_shortened_to_max_segments(db: TestDb) {
    use oncall_relay::notify::sms;
    let fake = Fake::answering(Reply::Json(201, CREATED)).await;
    let s = with_twilio(&db, &fake, |t| t.max_segments = 2);
    let message = "🚨 Сервер db-1 недоступен, диск заполнен. ".repeat(10);
    assert!(message.chars().count() < 1600, "fits in max_length");
    let (app, events) = deliver_to_alice(s, SMS, &message).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let sent = bodies(&fake);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sms::measure(&sent[0]).encoding, sms::Encoding::Ucs2);
    assert_shortened_to_segments(&message, &sent[0], 2);
    app.stop().await;
}
db_test!(twilio_sms_is_shortened_to_max_segments);

async fn twilio_a_long_call_is_shortened_to_fit_the_twiml_limit(db: TestDb) {
    let fake = Fake::answering(Reply::Json(201, CREATED)).await;
    let s = with_twilio(&db, &fake, |_| {});
    let message = "Disk & inode usage above 95 percent on db-1 ".repeat(137);
    let message = &message[..6000];
    let (app, events) = deliver_to_alice(s, CALL, message).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let twiml = field(&requests[0], "Twiml");
    let length = twiml.chars().count();
    assert!(length <= 4000, "{length} characters");
    assert!(
        twiml.ends_with("… message shortened.</Say></Response>"),
        "{twiml}"
    );
    assert!(
        twiml.starts_with("<Response><Say loop=\"2\">Disk &amp; inode usage"),
        "{twiml}"
    );
    app.stop().await;
}
db_test!(twilio_a_long_call_is_shortened_to_fit_the_twiml_limit);

const SMS_TEXT: &str = "Disk full on db-1 & \"db-2\"";
const CALL_TEXT: &str =
    r#"Alert #42: CPU > 90% & "disk" 'full' on <b>db-1</b> https://grafana.example/d/x?a=1&b=2"#;

/// The conformance row: an SMS and a spoken call with a voice and a language.
pub struct Row(Fake);

impl Row {
    fn twilio(&self) -> TwilioSettings {
        TwilioSettings {
            voice: Some("Polly.Joanna".into()),
            language: Some("en-US".into()),
            ..twilio_settings(&self.0)
        }
    }
}

impl Conformance for Row {
    type Settings = TwilioSettings;
    const WRAP: fn(TwilioSettings) -> BackendSettings = BackendSettings::Twilio;
    const NAME: &'static str = "twilio";
    const SENDS: &'static [Message] = &[to_alice(SMS, SMS_TEXT), to_alice(CALL, CALL_TEXT)];
    const PERMANENT_ERROR: &'static [&'static str] = &["400", "21211"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["503"];
    const SECRETS: &'static [&'static str] = &["tw-t0ken"];
    const SPOILED: &'static [Spoil<TwilioSettings>] = &[
        (|s| s.account_sid = "".into(), "`account_sid`"),
        (|s| s.account_sid = "AC../../x".into(), "`account_sid`"),
        (|s| s.auth_token = Secret(String::new()), "`auth_token`"),
        (|s| s.from = " ".into(), "`from`"),
        (|s| s.api_base = "ftp://api.twilio.com".into(), "`api_base`"),
        (|s| s.max_length = 5000, "`max_length`"),
        (|s| s.max_segments = 0, "`max_segments`"),
        (|s| s.repeat = 0, "`repeat`"),
        (|s| s.voice = Some("alice\" onload=\"x".into()), "`voice`"),
    ];

    http_fake!(
        Reply::Json(201, CREATED),
        Reply::Json(
            400,
            r#"{"code": 21211, "message": "The 'To' number +4930123456 is not a valid phone number.", "status": 400}"#,
        ),
        Reply::Json(503, r#"{"code": 20503, "message": "Service unavailable"}"#),
    );
    fn base(&self) -> TwilioSettings {
        self.twilio()
    }
    fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
        let requests = self.0.requests();
        assert_each_post(
            &requests,
            None,
            &[
                ("authorization", AUTH),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        );
        let (sms, call) = (&requests[0], &requests[1]);
        assert_eq!(
            sms.uri.path(),
            "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
        );
        assert_eq!(
            form(sms),
            pairs(&[
                ("To", "+4930123456"),
                ("From", "+15550001111"),
                ("Body", SMS_TEXT)
            ])
        );
        assert_eq!(
            call.uri.path(),
            "/2010-04-01/Accounts/AC0123456789abcdef/Calls.json"
        );
        assert_eq!(
            form(call),
            pairs(&[
                ("To", "+4930123456"),
                ("From", "+15550001111"),
                (
                    "Twiml",
                    "<Response><Say voice=\"Polly.Joanna\" language=\"en-US\" loop=\"2\">Alert number 42: CPU 90% &amp; disk &apos;full&apos; on db-1 (link)</Say></Response>"
                ),
            ])
        );
    }
}
