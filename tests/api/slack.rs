//! The slack backend: incoming webhooks and the Web API against a loopback fake.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, SlackSettings};

use crate::db_test;
use crate::helpers::*;

const OK: &str = r#"{"ok":true,"channel":"C123","ts":"1700000000.000100"}"#;

fn slack(s: &mut Settings, settings: SlackSettings) {
    s.plugin.backend = "chat".into();
    s.plugin
        .backends
        .insert("chat".into(), BackendSettings::Slack(settings));
}

fn incoming_webhook(fake: &Fake) -> SlackSettings {
    SlackSettings {
        webhook_url: Some(Secret(fake.url.clone())),
        timeout: Duration::from_secs(2),
        ..SlackSettings::default()
    }
}

fn web_api(fake: &Fake) -> SlackSettings {
    SlackSettings {
        token: Some(Secret("xoxb-test-token".into())),
        channel: Some("#oncall".into()),
        api_base: fake.url.clone(),
        timeout: Duration::from_secs(2),
        ..SlackSettings::default()
    }
}

async fn slack_incoming_webhook_posts_the_escaped_text(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    slack(&mut s, incoming_webhook(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "load <5> & rising")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    app.send_ok("/api/v1/make_call", "alice@example.com", "CPU high")
        .await;
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri.path(), "/hook");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.get("authorization").is_none());
    assert_eq!(
        r.json(),
        serde_json::json!({"text": "load &lt;5&gt; &amp; rising"})
    );
    assert_eq!(
        requests[1].json(),
        serde_json::json!({"text": ":rotating_light: CPU high"})
    );
    app.stop().await;
}
db_test!(slack_incoming_webhook_posts_the_escaped_text);

async fn slack_web_api_posts_to_the_users_id_or_the_channel(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[], Reply::Json(200, OK));
    let mut s = settings(&db);
    slack(&mut s, web_api(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("slack", "U0ALICE")])
        .await;
    app.add_user_with_contacts("bob@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "for alice")
        .await;
    app.send_ok("/api/v1/send_sms", "bob@example.com", "for bob")
        .await;
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri.path(), "/hook/chat.postMessage");
        assert_eq!(r.headers["authorization"], "Bearer xoxb-test-token");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let bodies: Vec<serde_json::Value> = requests.iter().map(Recorded::json).collect();
    assert!(bodies.contains(&serde_json::json!({"channel": "U0ALICE", "text": "for alice"})));
    assert!(bodies.contains(&serde_json::json!({"channel": "#oncall", "text": "for bob"})));
    app.stop().await;
}
db_test!(slack_web_api_posts_to_the_users_id_or_the_channel);

async fn slack_webhook_client_error_is_not_retried(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[], Reply::Status(404));
    let mut s = settings(&db);
    slack(&mut s, incoming_webhook(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "failed");
    assert_eq!(events[0].attempts, 1);
    let error = events[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("404"), "{error}");
    assert!(
        !error.contains(&fake.url),
        "the hook URL must not leak: {error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1);
    app.stop().await;
}
db_test!(slack_webhook_client_error_is_not_retried);

async fn slack_server_error_then_ok_is_delivered_on_the_second_attempt(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[Reply::Status(503)], Reply::Json(200, OK));
    let mut s = settings(&db);
    slack(&mut s, web_api(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    assert_eq!(events[0].attempts, 2);
    assert_eq!(fake.requests().len(), 2);
    app.stop().await;
}
db_test!(slack_server_error_then_ok_is_delivered_on_the_second_attempt);

async fn slack_api_error_in_a_200_answer_fails_for_good(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[],
        Reply::Json(200, r#"{"ok":false,"error":"channel_not_found"}"#),
    );
    let mut s = settings(&db);
    slack(&mut s, web_api(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("slack", "C0GONE")])
        .await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "failed");
    assert_eq!(e.attempts, 1);
    assert_eq!(e.attempt_log[0].outcome, "failed");
    let error = e.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("channel_not_found"), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1);
    app.stop().await;
}
db_test!(slack_api_error_in_a_200_answer_fails_for_good);

async fn slack_ratelimited_is_retried(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[Reply::Json(200, r#"{"ok":false,"error":"ratelimited"}"#)],
        Reply::Json(200, OK),
    );
    let mut s = settings(&db);
    slack(&mut s, web_api(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "delivered");
    assert_eq!(e.attempts, 2);
    assert_eq!(e.attempt_log[0].outcome, "retry");
    assert!(
        e.attempt_log[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("ratelimited")
    );
    app.stop().await;
}
db_test!(slack_ratelimited_is_retried);

#[tokio::test]
async fn slack_needs_exactly_one_mode() {
    let db = TestDb::new(Db::Sqlite).await;
    let fake = Fake::start().await;
    let cases = [
        (
            SlackSettings {
                token: Some(Secret("xoxb-1".into())),
                channel: Some("#oncall".into()),
                ..incoming_webhook(&fake)
            },
            "not both",
        ),
        (SlackSettings::default(), "webhook_url"),
        (
            SlackSettings {
                channel: None,
                ..web_api(&fake)
            },
            "channel",
        ),
        (
            SlackSettings {
                webhook_url: Some(Secret("not a url".into())),
                ..SlackSettings::default()
            },
            "webhook_url",
        ),
    ];
    for (settings_, expected) in cases {
        let mut s = settings(&db);
        slack(&mut s, settings_);
        let err = oncall_relay::Application::build(s)
            .await
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(text.contains("`chat`") && text.contains(expected), "{text}");
    }

    let mut s = settings(&db);
    slack(
        &mut s,
        SlackSettings {
            timeout: Duration::from_secs(600),
            ..incoming_webhook(&fake)
        },
    );
    let err = s.validate().expect_err("timeout too long");
    assert!(
        err.to_string().contains("plugin.backends.chat.timeout"),
        "{err}"
    );
}
