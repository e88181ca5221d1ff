//! The twilio backend against a recording fake of Twilio's REST API.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, TwilioSettings};

use super::{CALL, Conformance, Message, SMS, assert_each_post, pairs, refused, to_alice};
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
        max_length: 1600,
        split: true,
        max_segments: 10,
        replies: false,
        voice: None,
        language: None,
        repeat: 2,
        timeout: Duration::from_secs(2),
    }
}

fn use_twilio(s: &mut Settings, t: TwilioSettings) {
    s.plugin.backend = "twilio".into();
    s.plugin
        .backends
        .insert("twilio".into(), BackendSettings::Twilio(t));
}

fn form(r: &Recorded) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&r.body).expect("form body")
}

async fn twilio_long_sms_arrives_as_ordered_parts(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::answering(Reply::Json(201, CREATED)).await;
    let mut s = settings(&db);
    use_twilio(
        &mut s,
        TwilioSettings {
            max_length: 60,
            ..twilio_settings(&fake)
        },
    );
    let app = TestApp::spawn_with_alice(s).await;
    let message = "Grafana OnCall: alert group #7 firing, CPU above 95 percent on db-1, db-2 and db-3 for ten minutes; runbook at the usual place.";
    app.send_ok("/api/v1/send_sms", "alice@example.com", message)
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    // Split at word boundaries, each part numbered and at most 60 characters long.
    let expected = [
        "(1/3) Grafana OnCall: alert group #7 firing, CPU above 95",
        "(2/3) percent on db-1, db-2 and db-3 for ten minutes;",
        "(3/3) runbook at the usual place.",
    ];
    let bodies: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| {
            form(r)
                .into_iter()
                .find(|(k, _)| k == "Body")
                .map(|(_, v)| v)
                .expect("Body")
        })
        .collect();
    assert_eq!(bodies, expected);
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

fn bodies(fake: &Fake) -> Vec<String> {
    fake.requests()
        .iter()
        .map(|r| {
            form(r)
                .into_iter()
                .find(|(k, _)| k == "Body")
                .map(|(_, v)| v)
                .expect("Body")
        })
        .collect()
}

/// Twilio accepts part 1, fails part 2 once: the retry starts at part 2, so the phone gets
/// each part once.
async fn twilio_retry_resends_no_part_already_sent(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let created = Reply::Json(201, CREATED);
    let unavailable = Reply::Json(503, r#"{"code": 20503, "message": "Service unavailable"}"#);
    fake.script(&[created, unavailable], created);
    let mut s = settings(&db);
    use_twilio(
        &mut s,
        TwilioSettings {
            max_length: 60,
            ..twilio_settings(&fake)
        },
    );
    let message = "Grafana OnCall: alert group #7 firing, CPU above 95 percent on db-1, db-2 and db-3 for ten minutes; runbook at the usual place.";
    let (app, events) = deliver_to_alice(s, "/api/v1/send_sms", message).await;
    assert_delivered_on_the_second_attempt(&events[0]);
    let first = events[0].attempt_log[0]
        .error
        .as_deref()
        .unwrap_or_default();
    assert!(first.starts_with("part 2/3: "), "{first}");
    let sent = bodies(&fake);
    let accepted: Vec<&str> = sent
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, b)| b.as_str())
        .collect();
    assert_eq!(
        accepted,
        [
            "(1/3) Grafana OnCall: alert group #7 firing, CPU above 95",
            "(2/3) percent on db-1, db-2 and db-3 for ten minutes;",
            "(3/3) runbook at the usual place.",
        ],
        "all requests: {sent:#?}"
    );
    app.stop().await;
}
db_test!(twilio_retry_resends_no_part_already_sent);

/// A long UCS-2 text (Cyrillic and emoji) is shortened at a word to the configured segments,
/// counted as the carrier counts them, not in characters.
async fn twilio_sms_is_shortened_to_max_segments(db: Db) {
    use oncall_relay::notify::sms;
    let db = TestDb::new(db).await;
    let fake = Fake::answering(Reply::Json(201, CREATED)).await;
    let mut s = settings(&db);
    use_twilio(
        &mut s,
        TwilioSettings {
            max_segments: 2,
            ..twilio_settings(&fake)
        },
    );
    let message = "🚨 Сервер db-1 недоступен, диск заполнен. ".repeat(10);
    assert!(message.chars().count() < 1600 && sms::segments(&message) > 2);
    let (app, events) = deliver_to_alice(s, "/api/v1/send_sms", &message).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let sent = bodies(&fake);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let length = sms::measure(&sent[0]);
    assert_eq!((length.encoding, length.segments), (sms::Encoding::Ucs2, 2));
    let kept = sent[0].strip_suffix(sms::SHORTENED).expect("marker");
    assert!(message.starts_with(kept), "{kept}");
    assert!(
        message[kept.len()..].starts_with(' '),
        "cut inside a word: {kept}"
    );
    app.stop().await;
}
db_test!(twilio_sms_is_shortened_to_max_segments);

async fn twilio_a_long_call_is_shortened_to_fit_the_twiml_limit(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::answering(Reply::Json(201, CREATED)).await;
    let mut s = settings(&db);
    use_twilio(&mut s, twilio_settings(&fake));
    let message = "Disk & inode usage above 95 percent on db-1 ".repeat(137);
    let message = &message[..6000];
    let (app, events) = deliver_to_alice(s, "/api/v1/make_call", message).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let twiml = form(&requests[0])
        .into_iter()
        .find(|(k, _)| k == "Twiml")
        .map(|(_, v)| v)
        .expect("Twiml");
    assert!(
        twiml.chars().count() <= 4000,
        "{} characters",
        twiml.chars().count()
    );
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
    const NAME: &'static str = "twilio";
    const SENDS: &'static [Message] = &[to_alice(SMS, SMS_TEXT), to_alice(CALL, CALL_TEXT)];
    const PERMANENT_ERROR: &'static [&'static str] = &["400", "21211"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["503"];

    async fn start() -> Self {
        Row(Fake::answering(Reply::Json(201, CREATED)).await)
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings::Twilio(self.twilio())
    }
    fn fail_permanently(&self) {
        self.0.script(
            &[],
            Reply::Json(
                400,
                r#"{"code": 21211, "message": "The 'To' number +4930123456 is not a valid phone number.", "status": 400}"#,
            ),
        );
    }
    fn fail_once(&self) {
        self.0.script(
            &[Reply::Json(
                503,
                r#"{"code": 20503, "message": "Service unavailable"}"#,
            )],
            Reply::Json(201, CREATED),
        );
    }
    fn seen(&self) -> usize {
        self.0.requests().len()
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
    fn secrets(&self) -> Vec<String> {
        vec!["tw-t0ken".into()]
    }
    fn bad_settings(&self) -> Vec<(BackendSettings, &'static str)> {
        let base = || twilio_settings(&self.0);
        refused(
            BackendSettings::Twilio,
            [
                (
                    TwilioSettings {
                        account_sid: "".into(),
                        ..base()
                    },
                    "`account_sid`",
                ),
                (
                    TwilioSettings {
                        account_sid: "AC../../x".into(),
                        ..base()
                    },
                    "`account_sid`",
                ),
                (
                    TwilioSettings {
                        auth_token: Secret(String::new()),
                        ..base()
                    },
                    "`auth_token`",
                ),
                (
                    TwilioSettings {
                        from: " ".into(),
                        ..base()
                    },
                    "`from`",
                ),
                (
                    TwilioSettings {
                        api_base: "ftp://api.twilio.com".into(),
                        ..base()
                    },
                    "`api_base`",
                ),
                (
                    TwilioSettings {
                        max_length: 5000,
                        ..base()
                    },
                    "`max_length`",
                ),
                (
                    TwilioSettings {
                        max_segments: 0,
                        ..base()
                    },
                    "`max_segments`",
                ),
                (
                    TwilioSettings {
                        repeat: 0,
                        ..base()
                    },
                    "`repeat`",
                ),
                (
                    TwilioSettings {
                        voice: Some("alice\" onload=\"x".into()),
                        ..base()
                    },
                    "`voice`",
                ),
            ],
        )
    }
    fn with_timeout(&self, timeout: Duration) -> BackendSettings {
        BackendSettings::Twilio(TwilioSettings {
            timeout,
            ..self.twilio()
        })
    }
}
