//! The ntfy backend: publishing to a topic against a loopback fake.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, NtfySettings, Secret, Settings};

use super::{
    CALL, Conformance, Message, SMS, Spoil, assert_each_post, http_fake, sms_to_alice, to_alice,
    to_bob, with_backend,
};
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

/// The settings of `db` with ntfy at `fake` as the backend, changed by `change`.
fn ntfy_settings(db: &TestDb, fake: &Fake, change: fn(&mut NtfySettings)) -> Settings {
    let mut ntfy = server(fake);
    change(&mut ntfy);
    with_backend(db, "alarm", BackendSettings::Ntfy(ntfy))
}

fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ASCII header")
}

async fn ntfy_basic_auth_custom_priority_and_non_ascii_title(db: TestDb) {
    let fake = Fake::start().await;
    let s = ntfy_settings(&db, &fake, |n| {
        n.token = None;
        n.user = Some("bot".into());
        n.password = Some(Secret("s3cret".into()));
        n.priority = 2;
    });
    let (app, events) = sms_to_alice(s, &[], "Störung auf db-1").await;
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

async fn ntfy_without_a_topic_fails_for_good(db: TestDb) {
    let fake = Fake::start().await;
    let s = ntfy_settings(&db, &fake, |n| n.topic = None);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.add_user_with_contacts("bob@example.com", &[("ntfy", "../admin")])
        .await;
    app.sms_alice("hello").await;
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

/// The conformance row: a team topic and a token; Alice has her own topic.
pub struct Row(Fake);

impl Conformance for Row {
    type Settings = NtfySettings;
    const WRAP: fn(NtfySettings) -> BackendSettings = BackendSettings::Ntfy;
    const NAME: &'static str = "alarm";
    const CONTACTS: &'static [(&'static str, &'static str)] = &[("ntfy", "alice-phone")];
    const SENDS: &'static [Message] = &[
        to_alice(CALL, "CPU high\non db-1"),
        to_bob(SMS, "Disk full"),
    ];
    const PERMANENT_ERROR: &'static [&'static str] = &["403", "forbidden"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["502"];
    const SECRETS: &'static [&'static str] = &["tk_testtoken"];
    const SPOILED: &'static [Spoil<NtfySettings>] = &[
        (|s| s.priority = 0, "`priority`"),
        (|s| s.important_priority = 6, "`important_priority`"),
        (|s| s.topic = Some("team/alerts".into()), "`topic`"),
        (
            |s| {
                s.user = Some("bot".into());
                s.password = Some(Secret("pw".into()));
            },
            "not both",
        ),
        (
            |s| {
                s.token = None;
                s.user = Some("bot".into());
            },
            "`password`",
        ),
        (|s| s.server = "ntfy.example.com".into(), "`server`"),
    ];

    http_fake!(
        Reply::Status(200),
        Reply::Json(
            403,
            r#"{"code":40301,"http":403,"error":"forbidden","link":"https://ntfy.sh/docs/publish/#authentication"}"#,
        ),
        Reply::Status(502),
    );
    fn base(&self) -> NtfySettings {
        server(&self.0)
    }
    fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
        let requests = self.0.requests();
        assert_each_post(&requests, None, &[("authorization", "Bearer tk_testtoken")]);
        // Alice's own topic for her call, the configured one for Bob's SMS.
        let expected = [
            (
                "/hook/alice-phone",
                "5",
                "rotating_light,call",
                "CPU high",
                "CPU high\non db-1",
            ),
            ("/hook/team-alerts", "3", "sms", "Disk full", "Disk full"),
        ];
        for (r, (path, priority, tags, title, body)) in requests.iter().zip(expected) {
            assert_eq!(r.uri.path(), path);
            let headers = (header(r, "priority"), header(r, "tags"), header(r, "title"));
            assert_eq!(headers, (priority, tags, title), "{path}");
            assert_eq!(&r.body[..], body.as_bytes(), "{path}");
        }
    }
}
