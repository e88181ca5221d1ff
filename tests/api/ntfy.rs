//! The ntfy backend: publishing to a topic against a loopback fake.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, NtfySettings, Secret, Settings};

use crate::db_test;
use crate::helpers::*;

fn server(fake: &Fake) -> NtfySettings {
    NtfySettings {
        server: fake.url.clone(),
        topic: Some("team-alerts".into()),
        token: Some(Secret("tk_testtoken".into())),
        timeout: Duration::from_secs(2),
        ..NtfySettings::default()
    }
}

fn ntfy(s: &mut Settings, settings: NtfySettings) {
    s.plugin.backend = "alarm".into();
    s.plugin
        .backends
        .insert("alarm".into(), BackendSettings::Ntfy(settings));
}

fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ASCII header")
}

async fn ntfy_call_is_urgent_on_the_users_topic_and_sms_is_default_on_the_team_topic(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    ntfy(&mut s, server(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("ntfy", "alice-phone")])
        .await;
    app.add_user_with_contacts("bob@example.com", &[]).await;
    app.send_ok(
        "/api/v1/make_call",
        "alice@example.com",
        "CPU high\non db-1",
    )
    .await;
    app.send_ok("/api/v1/send_sms", "bob@example.com", "Disk full")
        .await;
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let call = requests
        .iter()
        .find(|r| r.uri.path() == "/hook/alice-phone")
        .expect("the call went to alice's own topic");
    assert_eq!(call.method, "POST");
    assert_eq!(header(call, "priority"), "5");
    assert_eq!(header(call, "tags"), "rotating_light,call");
    assert_eq!(header(call, "title"), "CPU high");
    assert_eq!(header(call, "authorization"), "Bearer tk_testtoken");
    assert_eq!(&call.body[..], b"CPU high\non db-1");

    let sms = requests
        .iter()
        .find(|r| r.uri.path() == "/hook/team-alerts")
        .expect("the SMS went to the configured topic");
    assert_eq!(sms.method, "POST");
    assert_eq!(header(sms, "priority"), "3");
    assert_eq!(header(sms, "tags"), "sms");
    assert_eq!(header(sms, "title"), "Disk full");
    assert_eq!(header(sms, "authorization"), "Bearer tk_testtoken");
    assert_eq!(&sms.body[..], b"Disk full");
    app.stop().await;
}
db_test!(ntfy_call_is_urgent_on_the_users_topic_and_sms_is_default_on_the_team_topic);

async fn ntfy_basic_auth_custom_priority_and_non_ascii_title(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    ntfy(
        &mut s,
        NtfySettings {
            token: None,
            user: Some("bot".into()),
            password: Some(Secret("s3cret".into())),
            priority: 2,
            ..server(&fake)
        },
    );
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "Störung auf db-1")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    let r = &fake.requests()[0];
    assert_eq!(r.uri.path(), "/hook/team-alerts");
    assert_eq!(header(r, "authorization"), "Basic Ym90OnMzY3JldA==");
    assert_eq!(header(r, "priority"), "2");
    assert_eq!(header(r, "title"), "=?UTF-8?B?U3TDtnJ1bmcgYXVmIGRiLTE=?=");
    assert_eq!(
        std::str::from_utf8(&r.body).expect("utf-8"),
        "Störung auf db-1"
    );
    app.stop().await;
}
db_test!(ntfy_basic_auth_custom_priority_and_non_ascii_title);

async fn ntfy_client_error_is_not_retried(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[],
        Reply::Json(
            403,
            r#"{"code":40301,"http":403,"error":"forbidden","link":"https://ntfy.sh/docs/publish/#authentication"}"#,
        ),
    );
    let mut s = settings(&db);
    ntfy(&mut s, server(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "failed");
    assert_eq!(events[0].attempts, 1);
    let error = events[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("403") && error.contains("forbidden"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1);
    app.stop().await;
}
db_test!(ntfy_client_error_is_not_retried);

async fn ntfy_server_error_then_ok_is_delivered_on_the_second_attempt(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[Reply::Status(502)], Reply::Status(200));
    let mut s = settings(&db);
    ntfy(&mut s, server(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("ntfy", "alice-phone")])
        .await;
    app.send_ok("/api/v1/make_call", "alice@example.com", "ring")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    assert_eq!(events[0].attempts, 2);
    assert_eq!(events[0].attempt_log[0].outcome, "retry");
    assert_eq!(fake.requests().len(), 2);
    app.stop().await;
}
db_test!(ntfy_server_error_then_ok_is_delivered_on_the_second_attempt);

async fn ntfy_without_a_topic_fails_for_good(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    ntfy(
        &mut s,
        NtfySettings {
            topic: None,
            ..server(&fake)
        },
    );
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.add_user_with_contacts("bob@example.com", &[("ntfy", "../admin")])
        .await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    app.send_ok("/api/v1/send_sms", "bob@example.com", "hello")
        .await;
    let events = app.wait_until_settled(2).await;
    for e in &events {
        assert_eq!(e.status, "failed");
        assert_eq!(e.attempts, 1);
        let error = e.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("topic"), "{error}");
    }
    assert!(fake.requests().is_empty());
    app.stop().await;
}
db_test!(ntfy_without_a_topic_fails_for_good);

#[tokio::test]
async fn ntfy_bad_settings_are_startup_errors_naming_the_backend() {
    let db = TestDb::new(Db::Sqlite).await;
    let fake = Fake::start().await;
    let cases = [
        (
            NtfySettings {
                priority: 0,
                ..server(&fake)
            },
            "`priority`",
        ),
        (
            NtfySettings {
                important_priority: 6,
                ..server(&fake)
            },
            "`important_priority`",
        ),
        (
            NtfySettings {
                topic: Some("team/alerts".into()),
                ..server(&fake)
            },
            "`topic`",
        ),
        (
            NtfySettings {
                user: Some("bot".into()),
                password: Some(Secret("pw".into())),
                ..server(&fake)
            },
            "not both",
        ),
        (
            NtfySettings {
                token: None,
                user: Some("bot".into()),
                ..server(&fake)
            },
            "`password`",
        ),
        (
            NtfySettings {
                server: "ntfy.example.com".into(),
                ..server(&fake)
            },
            "`server`",
        ),
    ];
    for (settings_, expected) in cases {
        let mut s = settings(&db);
        ntfy(&mut s, settings_);
        let err = oncall_relay::Application::build(s)
            .await
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(
            text.contains("`alarm`") && text.contains(expected),
            "{expected}: {text}"
        );
    }

    let mut s = settings(&db);
    ntfy(
        &mut s,
        NtfySettings {
            timeout: Duration::from_secs(60),
            ..server(&fake)
        },
    );
    let err = s.validate().expect_err("timeout too long");
    assert!(
        err.to_string().contains("plugin.backends.alarm.timeout"),
        "{err}"
    );
}
