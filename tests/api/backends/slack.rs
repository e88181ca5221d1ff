//! The slack backend: incoming webhooks and the Web API against a loopback fake.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, SlackSettings};

use super::{
    CALL, Conformance, Message, SMS, Spoil, assert_each_post, http_fake, sms_to_alice, to_alice,
    to_bob,
};
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

async fn slack_api_error_in_a_200_answer_fails_for_good(db: TestDb) {
    let fake = Fake::answering(Reply::Json(
        200,
        r#"{"ok":false,"error":"channel_not_found"}"#,
    ))
    .await;
    let mut s = settings(&db);
    slack(&mut s, web_api(&fake));
    let (app, events) = sms_to_alice(s, &[("slack", "C0GONE")], "hello").await;
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

async fn slack_ratelimited_is_retried(db: TestDb) {
    let fake = Fake::start().await;
    fake.script(
        &[Reply::Json(200, r#"{"ok":false,"error":"ratelimited"}"#)],
        Reply::Json(200, OK),
    );
    let mut s = settings(&db);
    slack(&mut s, web_api(&fake));
    let (app, events) = sms_to_alice(s, &[], "hello").await;
    let e = &events[0];
    assert_delivered_on_the_second_attempt(e);
    assert!(attempt_error(e, 0).contains("ratelimited"));
    app.stop().await;
}
db_test!(slack_ratelimited_is_retried);

async fn slack_retry_after_header_is_honoured(db: TestDb) {
    let fake = Fake::start().await;
    fake.script(
        &[Reply::RetryAfter(
            429,
            "2",
            r#"{"ok":false,"error":"ratelimited"}"#,
        )],
        Reply::Json(200, OK),
    );
    let mut s = settings(&db);
    quick_retries(&mut s);
    slack(&mut s, web_api(&fake));
    let (app, events) = sms_to_alice(s, &[], "hello").await;
    let e = &events[0];
    assert_delivered_on_the_second_attempt(e);
    fake.assert_second_request_waited_2s("Slack");
    app.stop().await;
}
db_test!(slack_retry_after_header_is_honoured);

async fn slack_webhook_retry_after_header_is_honoured(db: TestDb) {
    let fake = Fake::start().await;
    fake.script(
        &[Reply::RetryAfter(429, "2", r#""rate_limited""#)],
        Reply::Status(200),
    );
    let mut s = settings(&db);
    quick_retries(&mut s);
    slack(&mut s, incoming_webhook(&fake));
    let (app, events) = sms_to_alice(s, &[], "hello").await;
    assert_eq!(events[0].status, "delivered");
    assert_eq!(events[0].attempts, 2);
    fake.assert_second_request_waited_2s("Slack");
    app.stop().await;
}
db_test!(slack_webhook_retry_after_header_is_honoured);

/// The conformance row for incoming webhooks: the hook URL is the secret.
pub struct IncomingWebhook(Fake);

impl Conformance for IncomingWebhook {
    type Settings = SlackSettings;
    const WRAP: fn(SlackSettings) -> BackendSettings = BackendSettings::Slack;
    const NAME: &'static str = "chat";
    const SENDS: &'static [Message] = &[
        to_alice(SMS, "load <5> & rising"),
        to_alice(CALL, "CPU high"),
    ];
    const PERMANENT_ERROR: &'static [&'static str] = &["404"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["503"];
    const SPOILED: &'static [Spoil<SlackSettings>] = &[
        (
            |s| {
                s.token = Some(Secret("xoxb-1".into()));
                s.channel = Some("#oncall".into());
            },
            "not both",
        ),
        (|s| *s = SlackSettings::default(), "webhook_url"),
        (
            |s| {
                *s = SlackSettings::default();
                s.webhook_url = Some(Secret("not a url".into()));
            },
            "webhook_url",
        ),
    ];

    http_fake!(Reply::Status(200), Reply::Status(404), Reply::Status(503));
    fn base(&self) -> SlackSettings {
        incoming_webhook(&self.0)
    }
    fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
        let requests = self.0.requests();
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
    }
    fn secrets(&self) -> Vec<String> {
        vec![self.0.url.clone()]
    }
}

/// The conformance row for the Web API: a bot token, a default channel, Alice's own id.
pub struct WebApi(Fake);

impl Conformance for WebApi {
    type Settings = SlackSettings;
    const WRAP: fn(SlackSettings) -> BackendSettings = BackendSettings::Slack;
    const NAME: &'static str = "chat";
    const CONTACTS: &'static [(&'static str, &'static str)] = &[("slack", "U0ALICE")];
    const SENDS: &'static [Message] = &[to_alice(SMS, "for alice"), to_bob(SMS, "for bob")];
    const PERMANENT_ERROR: &'static [&'static str] = &["403"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["503"];
    const SECRETS: &'static [&'static str] = &["xoxb-test-token"];
    const SPOILED: &'static [Spoil<SlackSettings>] = &[(|s| s.channel = None, "channel")];

    http_fake!(Reply::Json(200, OK), Reply::Status(403), Reply::Status(503));
    fn base(&self) -> SlackSettings {
        web_api(&self.0)
    }
    fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
        let requests = self.0.requests();
        assert_each_post(
            &requests,
            Some("/hook/chat.postMessage"),
            &[
                ("authorization", "Bearer xoxb-test-token"),
                ("content-type", "application/json"),
            ],
        );
        assert_eq!(
            requests[0].json(),
            serde_json::json!({"channel": "U0ALICE", "text": "for alice"})
        );
        assert_eq!(
            requests[1].json(),
            serde_json::json!({"channel": "#oncall", "text": "for bob"})
        );
    }
}
