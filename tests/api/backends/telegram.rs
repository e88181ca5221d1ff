//! The telegram backend: Bot API sendMessage against a loopback fake.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, TelegramSettings};

use super::{Conformance, Message, SMS, Spoil, http_fake, sms_to_alice, to_alice, with_backend};
use crate::db_test;
use crate::helpers::*;

const BOT_TOKEN: &str = "123456:ABC-def_ghi";

fn telegram(fake: &Fake, chat_id: Option<&str>) -> TelegramSettings {
    TelegramSettings {
        token: Secret(BOT_TOKEN.into()),
        chat_id: chat_id.map(str::to_string),
        api_base: fake.url.clone(),
        timeout: Duration::from_secs(2),
        ..TelegramSettings::default()
    }
}

/// The settings of `db`, delivering through a bot at `fake` with `chat_id` as its default.
fn bot(db: &TestDb, fake: &Fake, chat_id: Option<&str>) -> Settings {
    with_backend(db, "tg", BackendSettings::Telegram(telegram(fake, chat_id)))
}

/// The conformance row: a bot with a default chat; Alice has her own chat id.
pub struct Row(Fake);

impl Conformance for Row {
    type Settings = TelegramSettings;
    const WRAP: fn(TelegramSettings) -> BackendSettings = BackendSettings::Telegram;
    const NAME: &'static str = "tg";
    const CONTACTS: &'static [(&'static str, &'static str)] = &[("telegram", "987654321")];
    const SENDS: &'static [Message] = &[to_alice(SMS, "Disk \"full\" on db-1")];
    const PERMANENT_ERROR: &'static [&'static str] = &["chat not found"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["502"];
    const SECRETS: &'static [&'static str] = &[BOT_TOKEN];
    const SPOILED: &'static [Spoil<TelegramSettings>] = &[
        (|t| t.token = Secret(String::new()), "token"),
        (|t| t.api_base = "ftp://example.com".into(), "api_base"),
    ];

    http_fake!(
        Reply::Json(200, r#"{"ok":true}"#),
        Reply::Json(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        ),
        Reply::Status(502),
    );
    fn base(&self) -> TelegramSettings {
        telegram(&self.0, Some("@oncall_team"))
    }
    fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
        let r = &self.0.requests()[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri.path(), format!("/hook/bot{BOT_TOKEN}/sendMessage"));
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.json(),
            serde_json::json!({
                "chat_id": 987654321,
                "text": "Disk \"full\" on db-1",
                "disable_notification": true
            })
        );
    }
}

/// A user without a telegram contact gets the configured chat; a call rings.
async fn telegram_call_rings_in_the_default_chat(db: TestDb) {
    let fake = Fake::start().await;
    let s = bot(&db, &fake, Some("@oncall_team"));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("bob@example.com", &[]).await;
    app.send_ok("/api/v1/make_call", "bob@example.com", "CPU high")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered", "{events:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].json(),
        serde_json::json!({
            "chat_id": "@oncall_team",
            "text": "CPU high",
            "disable_notification": false
        })
    );
    app.stop().await;
}
db_test!(telegram_call_rings_in_the_default_chat);

async fn telegram_splits_a_long_message_into_ordered_parts(db: TestDb) {
    let fake = Fake::start().await;
    let s = bot(&db, &fake, None);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("telegram", "42")])
        .await;
    let words: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
    let message = words.join(" ");
    assert!(message.chars().count() > 2 * 4096);
    app.sms_alice(&message).await;
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

/// Telegram takes part 1 and fails part 2 once: the retry starts at part 2, so the chat
/// shows each part once.
async fn telegram_retry_resends_no_part_already_sent(db: TestDb) {
    let fake = Fake::start().await;
    let ok = Reply::Json(200, r#"{"ok":true}"#);
    fake.script(&[ok, Reply::Status(502)], ok);
    let s = bot(&db, &fake, None);
    let message = (0..1500)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let (app, events) = sms_to_alice(s, &[("telegram", "42")], &message).await;
    assert_delivered_on_the_second_attempt(&events[0]);
    let texts: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().expect("text").to_string())
        .collect();
    let count = texts.len() - 1;
    assert!(count >= 3, "{count} parts");
    let first = attempt_error(&events[0], 0);
    assert!(first.starts_with(&format!("part 2/{count}: ")), "{first}");
    // The failed request was part 2; what Telegram accepted is every part once, in order.
    assert_eq!(texts[1], texts[2]);
    let accepted: Vec<&String> = texts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, t)| t)
        .collect();
    for (i, t) in accepted.iter().enumerate() {
        assert!(
            t.starts_with(&format!("({}/{count}) ", i + 1)),
            "part {i}: {t:.20}"
        );
    }
    app.stop().await;
}
db_test!(telegram_retry_resends_no_part_already_sent);

async fn telegram_flood_control_is_retried(db: TestDb) {
    let fake = Fake::start().await;
    fake.script(
        &[Reply::Json(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 2","parameters":{"retry_after":2}}"#,
        )],
        Reply::Status(200),
    );
    let mut s = bot(&db, &fake, None);
    quick_retries(&mut s);
    let (app, events) = sms_to_alice(s, &[("telegram", "42")], "hello").await;
    let e = &events[0];
    assert_delivered_on_the_second_attempt(e);
    let first = attempt_error(e, 0);
    assert!(
        first.contains("429") && first.contains("retry after 2s"),
        "{first}"
    );
    fake.assert_second_request_waited_2s("Telegram");
    app.stop().await;
}
db_test!(telegram_flood_control_is_retried);

async fn telegram_without_any_chat_fails_for_good(db: TestDb) {
    let fake = Fake::start().await;
    let s = bot(&db, &fake, None);
    let (app, events) = sms_to_alice(s, &[], "hello").await;
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
