//! The twilio backend against a recording fake of Twilio's REST API.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, TwilioSettings};
use oncall_relay::notify::shape::{self, TextLimit};

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

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn post(app: &TestApp, path: &str, message: &str) {
    let resp = app
        .post_fields(
            path,
            &[("email", "alice@example.com"), ("message", message)],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
}

async fn twilio_sms_is_one_exact_request(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[], Reply::Json(201, CREATED));
    let mut s = settings(&db);
    use_twilio(&mut s, twilio_settings(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    post(&app, "/api/v1/send_sms", "Disk full on db-1 & \"db-2\"").await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.uri.path(),
        "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
    );
    assert_eq!(r.headers["authorization"], AUTH);
    assert_eq!(
        r.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        form(r),
        pairs(&[
            ("To", "+4930123456"),
            ("From", "+15550001111"),
            ("Body", "Disk full on db-1 & \"db-2\"")
        ])
    );
    app.stop().await;
}
db_test!(twilio_sms_is_one_exact_request);

async fn twilio_long_sms_arrives_as_ordered_parts(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[], Reply::Json(201, CREATED));
    let mut s = settings(&db);
    use_twilio(
        &mut s,
        TwilioSettings {
            max_length: 60,
            ..twilio_settings(&fake)
        },
    );
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    let message = "Grafana OnCall: alert group #7 firing, CPU above 95 percent on db-1, db-2 and db-3 for ten minutes; runbook at the usual place.";
    post(&app, "/api/v1/send_sms", message).await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let expected = shape::parts(
        message,
        TextLimit {
            max_length: 60,
            split: true,
        },
    );
    assert!(expected.len() >= 3, "{expected:?}");
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

async fn twilio_call_says_the_cleaned_escaped_message(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[], Reply::Json(201, r#"{"sid": "CA0123"}"#));
    let mut s = settings(&db);
    use_twilio(
        &mut s,
        TwilioSettings {
            voice: Some("Polly.Joanna".into()),
            language: Some("en-US".into()),
            ..twilio_settings(&fake)
        },
    );
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    post(
        &app,
        "/api/v1/make_call",
        r#"Alert #42: CPU > 90% & "disk" 'full' on <b>db-1</b> https://grafana.example/d/x?a=1&b=2"#,
    )
    .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        r.uri.path(),
        "/2010-04-01/Accounts/AC0123456789abcdef/Calls.json"
    );
    assert_eq!(r.headers["authorization"], AUTH);
    assert_eq!(
        form(r),
        pairs(&[
            ("To", "+4930123456"),
            ("From", "+15550001111"),
            (
                "Twiml",
                "<Response><Say voice=\"Polly.Joanna\" language=\"en-US\" loop=\"2\">Alert number 42: CPU 90% &amp; disk &apos;full&apos; on db-1 (link)</Say></Response>"
            ),
        ])
    );
    app.stop().await;
}
db_test!(twilio_call_says_the_cleaned_escaped_message);

async fn twilio_client_error_fails_without_retry(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[],
        Reply::Json(
            400,
            r#"{"code": 21211, "message": "The 'To' number +4930123456 is not a valid phone number.", "status": 400}"#,
        ),
    );
    let mut s = settings(&db);
    use_twilio(&mut s, twilio_settings(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    post(&app, "/api/v1/send_sms", "unreachable").await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "failed");
    assert_eq!(e.attempts, 1);
    let error = e.last_error.as_deref().unwrap_or("");
    assert!(error.contains("400") && error.contains("21211"), "{error}");
    assert!(!error.contains("tw-t0ken"), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1, "a 4xx is not retried");
    app.stop().await;
}
db_test!(twilio_client_error_fails_without_retry);

async fn twilio_server_error_is_retried_then_delivered(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[Reply::Json(
            503,
            r#"{"code": 20503, "message": "Service unavailable"}"#,
        )],
        Reply::Json(201, CREATED),
    );
    let mut s = settings(&db);
    use_twilio(&mut s, twilio_settings(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    post(&app, "/api/v1/make_call", "ring ring").await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "delivered", "{e:?}");
    assert_eq!(e.attempts, 2);
    let outcomes: Vec<&str> = e.attempt_log.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "delivered"]);
    assert!(
        e.attempt_log[0]
            .error
            .as_deref()
            .is_some_and(|t| t.contains("503")),
        "{e:?}"
    );
    assert_eq!(fake.requests().len(), 2);
    app.stop().await;
}
db_test!(twilio_server_error_is_retried_then_delivered);

#[tokio::test]
async fn twilio_bad_configuration_is_a_startup_error_naming_the_field() {
    let db = TestDb::new(Db::Sqlite).await;
    let fake = Fake::start().await;
    let cases = [
        (
            TwilioSettings {
                account_sid: "".into(),
                ..twilio_settings(&fake)
            },
            "`account_sid`",
        ),
        (
            TwilioSettings {
                account_sid: "AC../../x".into(),
                ..twilio_settings(&fake)
            },
            "`account_sid`",
        ),
        (
            TwilioSettings {
                auth_token: Secret(String::new()),
                ..twilio_settings(&fake)
            },
            "`auth_token`",
        ),
        (
            TwilioSettings {
                from: " ".into(),
                ..twilio_settings(&fake)
            },
            "`from`",
        ),
        (
            TwilioSettings {
                api_base: "ftp://api.twilio.com".into(),
                ..twilio_settings(&fake)
            },
            "`api_base`",
        ),
        (
            TwilioSettings {
                max_length: 5000,
                ..twilio_settings(&fake)
            },
            "`max_length`",
        ),
        (
            TwilioSettings {
                repeat: 0,
                ..twilio_settings(&fake)
            },
            "`repeat`",
        ),
        (
            TwilioSettings {
                voice: Some("alice\" onload=\"x".into()),
                ..twilio_settings(&fake)
            },
            "`voice`",
        ),
    ];
    for (t, field) in cases {
        let mut s = settings(&db);
        use_twilio(&mut s, t);
        let err = oncall_relay::Application::build(s)
            .await
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(
            text.contains("twilio") && text.contains(field),
            "{field}: {text}"
        );
    }
    let mut s = Settings::default();
    use_twilio(
        &mut s,
        TwilioSettings {
            timeout: Duration::from_secs(60),
            ..twilio_settings(&fake)
        },
    );
    let err = s.validate().expect_err("timeout too long");
    assert!(
        err.to_string().contains("plugin.backends.twilio.timeout"),
        "{err}"
    );
}
