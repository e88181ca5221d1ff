//! The sip backend against a fake Asterisk ARI that records the originate request.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, SipSettings};

use crate::db_test;
use crate::helpers::*;

/// Basic auth of `relay:ar1pass`.
const AUTH: &str = "Basic cmVsYXk6YXIxcGFzcw==";
const CHANNEL: &str = r#"{"id": "1700000000.42", "name": "PJSIP/trunk-00000001", "state": "Down"}"#;

fn sip_settings(fake: &Fake) -> SipSettings {
    SipSettings {
        url: fake.url.trim_end_matches("/hook").to_string(),
        username: "relay".into(),
        password: Secret("ar1pass".into()),
        endpoint: "PJSIP/{{ phone }}@trunk".into(),
        context: "oncall".into(),
        extension: "oncall".into(),
        priority: 1,
        caller_id: None,
        ring_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(2),
    }
}

fn use_sip(s: &mut Settings, t: SipSettings) {
    s.plugin.backend = "asterisk".into();
    s.plugin
        .backends
        .insert("asterisk".into(), BackendSettings::Sip(t));
}

fn query(r: &Recorded) -> Vec<(String, String)> {
    serde_urlencoded::from_str(r.uri.query().unwrap_or("")).expect("query")
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn call(app: &TestApp, message: &str) {
    let resp = app
        .post_fields(
            "/api/v1/make_call",
            &[("email", "alice@example.com"), ("message", message)],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
}

async fn sip_call_is_one_exact_originate_request(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[], Reply::Json(200, CHANNEL));
    let mut s = settings(&db);
    use_sip(
        &mut s,
        SipSettings {
            caller_id: Some("\"OnCall\" <+4930000000>".into()),
            ..sip_settings(&fake)
        },
    );
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    call(
        &app,
        "Alert group #7: *CPU* high on db-1, see https://grafana.example/a/b",
    )
    .await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "delivered", "{e:?}");
    assert_eq!(e.backend.as_deref(), Some("asterisk"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri.path(), "/ari/channels");
    assert_eq!(
        query(r),
        pairs(&[
            ("endpoint", "PJSIP/+4930123456@trunk"),
            ("context", "oncall"),
            ("extension", "oncall"),
            ("priority", "1"),
            ("callerId", "\"OnCall\" <+4930000000>"),
            ("timeout", "30"),
        ])
    );
    assert_eq!(r.headers["authorization"], AUTH);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!({
            "variables": {
                "ONCALL_MESSAGE": "Alert group number 7: CPU high on db-1, see (link)",
                "ONCALL_KIND": "call",
                "ONCALL_ID": e.id.to_string(),
            }
        })
    );
    app.stop().await;
}
db_test!(sip_call_is_one_exact_originate_request);

async fn sip_endpoint_template_and_ari_suffix(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[], Reply::Json(200, CHANNEL));
    let mut s = settings(&db);
    use_sip(
        &mut s,
        SipSettings {
            // `/ari` at the end of the URL is accepted too.
            url: format!("{}/ari/", fake.url.trim_end_matches("/hook")),
            endpoint: "SIP/gw/{{ phone|replace('+', '00') }}".into(),
            context: "alerts".into(),
            extension: "s".into(),
            priority: 2,
            ring_timeout: Duration::from_secs(45),
            ..sip_settings(&fake)
        },
    );
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    call(&app, "ring").await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let r = &fake.requests()[0];
    assert_eq!(r.uri.path(), "/ari/channels");
    assert_eq!(
        query(r),
        pairs(&[
            ("endpoint", "SIP/gw/004930123456"),
            ("context", "alerts"),
            ("extension", "s"),
            ("priority", "2"),
            ("timeout", "45"),
        ])
    );
    app.stop().await;
}
db_test!(sip_endpoint_template_and_ari_suffix);

async fn sip_client_error_fails_without_retry(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[],
        Reply::Json(400, r#"{"message": "Endpoint parameter not provided"}"#),
    );
    let mut s = settings(&db);
    use_sip(&mut s, sip_settings(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    call(&app, "ring").await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "failed");
    assert_eq!(e.attempts, 1);
    let error = e.last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("400") && error.contains("Endpoint parameter"),
        "{error}"
    );
    assert!(!error.contains("ar1pass"), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1, "a 4xx is not retried");
    app.stop().await;
}
db_test!(sip_client_error_fails_without_retry);

async fn sip_server_error_is_retried_then_delivered(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[Reply::Json(500, r#"{"message": "Allocation failed"}"#)],
        Reply::Json(200, CHANNEL),
    );
    let mut s = settings(&db);
    use_sip(&mut s, sip_settings(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    call(&app, "ring").await;
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
            .is_some_and(|t| t.contains("500") && t.contains("Allocation failed")),
        "{e:?}"
    );
    assert_eq!(fake.requests().len(), 2);
    app.stop().await;
}
db_test!(sip_server_error_is_retried_then_delivered);

#[tokio::test]
async fn sip_bad_configuration_is_a_startup_error_naming_the_field() {
    let db = TestDb::new(Db::Sqlite).await;
    let fake = Fake::start().await;
    let cases = [
        (
            SipSettings {
                url: "".into(),
                ..sip_settings(&fake)
            },
            "`url`",
        ),
        (
            SipSettings {
                url: "asterisk:8088".into(),
                ..sip_settings(&fake)
            },
            "`url`",
        ),
        (
            SipSettings {
                username: "".into(),
                ..sip_settings(&fake)
            },
            "`username`",
        ),
        (
            SipSettings {
                password: Secret(String::new()),
                ..sip_settings(&fake)
            },
            "`password`",
        ),
        (
            SipSettings {
                endpoint: "PJSIP/{{ phone @trunk".into(),
                ..sip_settings(&fake)
            },
            "`endpoint`",
        ),
        (
            SipSettings {
                priority: 0,
                ..sip_settings(&fake)
            },
            "`priority`",
        ),
    ];
    for (t, field) in cases {
        let mut s = settings(&db);
        use_sip(&mut s, t);
        let err = oncall_relay::Application::build(s)
            .await
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(
            text.contains("asterisk") && text.contains(field),
            "{field}: {text}"
        );
    }
    let mut s = Settings::default();
    use_sip(
        &mut s,
        SipSettings {
            timeout: Duration::from_secs(60),
            ..sip_settings(&fake)
        },
    );
    let err = s.validate().expect_err("timeout too long");
    assert!(
        err.to_string().contains("plugin.backends.asterisk.timeout"),
        "{err}"
    );
}
