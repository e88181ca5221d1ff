//! The telegram backend: Bot API sendMessage against a loopback fake.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, TelegramSettings};

use crate::db_test;
use crate::helpers::*;

const BOT_TOKEN: &str = "123456:ABC-def_ghi";

fn bot(s: &mut Settings, fake: &Fake, chat_id: Option<&str>) {
    s.plugin.backend = "tg".into();
    s.plugin.backends.insert(
        "tg".into(),
        BackendSettings::Telegram(TelegramSettings {
            token: Secret(BOT_TOKEN.into()),
            chat_id: chat_id.map(str::to_string),
            api_base: fake.url.clone(),
            timeout: Duration::from_secs(2),
        }),
    );
}

async fn telegram_sends_to_the_users_chat_and_rings_only_for_calls(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    bot(&mut s, &fake, Some("@oncall_team"));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("telegram", "987654321")])
        .await;
    app.add_user_with_contacts("bob@example.com", &[]).await;
    app.send_ok(
        "/api/v1/send_sms",
        "alice@example.com",
        "Disk \"full\" on db-1",
    )
    .await;
    app.send_ok("/api/v1/make_call", "bob@example.com", "CPU high")
        .await;
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    assert!(events.iter().all(|e| e.backend.as_deref() == Some("tg")));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri.path(), format!("/hook/bot{BOT_TOKEN}/sendMessage"));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let bodies: Vec<serde_json::Value> = requests.iter().map(Recorded::json).collect();
    assert!(bodies.contains(&serde_json::json!({
        "chat_id": 987654321,
        "text": "Disk \"full\" on db-1",
        "disable_notification": true
    })));
    assert!(bodies.contains(&serde_json::json!({
        "chat_id": "@oncall_team",
        "text": "CPU high",
        "disable_notification": false
    })));
    app.stop().await;
}
db_test!(telegram_sends_to_the_users_chat_and_rings_only_for_calls);

async fn telegram_splits_a_long_message_into_ordered_parts(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("telegram", "42")])
        .await;
    let words: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
    let message = words.join(" ");
    assert!(message.chars().count() > 2 * 4096);
    app.send_ok("/api/v1/send_sms", "alice@example.com", &message)
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    assert_eq!(events[0].attempts, 1);
    let texts: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().expect("text").to_string())
        .collect();
    assert!(texts.len() >= 4, "{} parts", texts.len());
    let mut rejoined = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        assert!(t.chars().count() <= 4096, "part {i} too long");
        let prefix = format!("({}/{}) ", i + 1, texts.len());
        let rest = t.strip_prefix(&prefix).expect("numbered part");
        rejoined.extend(rest.split_whitespace().map(str::to_string));
    }
    assert_eq!(rejoined, words, "every word arrives, in order");
    app.stop().await;
}
db_test!(telegram_splits_a_long_message_into_ordered_parts);

async fn telegram_chat_not_found_fails_without_retry(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[],
        Reply::Json(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        ),
    );
    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("telegram", "42")])
        .await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "failed");
    assert_eq!(e.attempts, 1);
    let error = e.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("chat not found"), "{error}");
    assert!(
        !error.contains(BOT_TOKEN),
        "the token must not leak: {error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1);
    app.stop().await;
}
db_test!(telegram_chat_not_found_fails_without_retry);

async fn telegram_server_error_then_success_is_delivered_on_the_second_attempt(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[Reply::Status(502)], Reply::Json(200, r#"{"ok":true}"#));
    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("telegram", "42")])
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
db_test!(telegram_server_error_then_success_is_delivered_on_the_second_attempt);

async fn telegram_flood_control_is_retried(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[Reply::Json(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        )],
        Reply::Status(200),
    );
    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("telegram", "42")])
        .await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    let e = &events[0];
    assert_eq!(e.status, "delivered");
    assert_eq!(e.attempts, 2);
    let first = e.attempt_log[0].error.as_deref().unwrap_or_default();
    assert!(
        first.contains("429") && first.contains("retry after 3s"),
        "{first}"
    );
    app.stop().await;
}
db_test!(telegram_flood_control_is_retried);

async fn telegram_without_any_chat_fails_for_good(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "failed");
    assert_eq!(events[0].attempts, 1);
    let error = events[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("telegram") && error.contains("chat_id"),
        "{error}"
    );
    assert!(fake.requests().is_empty());
    app.stop().await;
}
db_test!(telegram_without_any_chat_fails_for_good);

#[tokio::test]
async fn telegram_bad_settings_are_startup_errors_naming_the_backend() {
    let db = TestDb::new(Db::Sqlite).await;
    let fake = Fake::start().await;

    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    if let Some(BackendSettings::Telegram(t)) = s.plugin.backends.get_mut("tg") {
        t.token = Secret(String::new());
    }
    let err = oncall_relay::Application::build(s)
        .await
        .err()
        .expect("must fail");
    let text = err.to_string();
    assert!(text.contains("tg") && text.contains("token"), "{text}");

    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    if let Some(BackendSettings::Telegram(t)) = s.plugin.backends.get_mut("tg") {
        t.api_base = "ftp://example.com".into();
    }
    let err = oncall_relay::Application::build(s)
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("api_base"), "{err}");

    let mut s = settings(&db);
    bot(&mut s, &fake, None);
    if let Some(BackendSettings::Telegram(t)) = s.plugin.backends.get_mut("tg") {
        t.timeout = s.queue.lease;
    }
    let err = s.validate().expect_err("timeout too long");
    assert!(
        err.to_string().contains("plugin.backends.tg.timeout"),
        "{err}"
    );
}
