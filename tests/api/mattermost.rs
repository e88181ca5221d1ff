//! The mattermost (and rocketchat) backend: incoming webhooks against a loopback fake.

use std::io::Write;
use std::time::Duration;

use oncall_relay::config::{BackendSettings, MattermostSettings, Overrides, Secret, Settings};

use crate::db_test;
use crate::helpers::*;

fn hook(fake: &Fake) -> MattermostSettings {
    MattermostSettings {
        url: Secret(fake.url.clone()),
        username: Some("OnCall".into()),
        channel: Some("oncall-alerts".into()),
        timeout: Duration::from_secs(2),
    }
}

fn mattermost(s: &mut Settings, settings: MattermostSettings) {
    s.plugin.backend = "mm".into();
    s.plugin
        .backends
        .insert("mm".into(), BackendSettings::Mattermost(settings));
}

async fn mattermost_posts_to_the_users_channel_or_the_configured_one(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    mattermost(&mut s, hook(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("mattermost", "@alice")])
        .await;
    app.add_user_with_contacts("bob@example.com", &[]).await;
    app.send_ok(
        "/api/v1/send_sms",
        "alice@example.com",
        "Disk full on **db-1**",
    )
    .await;
    app.send_ok("/api/v1/make_call", "bob@example.com", "CPU high")
        .await;
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri.path(), "/hook");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let bodies: Vec<serde_json::Value> = requests.iter().map(Recorded::json).collect();
    assert!(bodies.contains(&serde_json::json!({
        "text": "Disk full on **db-1**",
        "username": "OnCall",
        "channel": "@alice"
    })));
    assert!(bodies.contains(&serde_json::json!({
        "text": ":rotating_light: CPU high",
        "username": "OnCall",
        "channel": "oncall-alerts"
    })));
    app.stop().await;
}
db_test!(mattermost_posts_to_the_users_channel_or_the_configured_one);

async fn rocketchat_uses_the_same_hook_format(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    let mut s = settings(&db);
    s.plugin.backend = "rc".into();
    s.plugin.backends.insert(
        "rc".into(),
        BackendSettings::Rocketchat(MattermostSettings {
            username: None,
            channel: None,
            ..hook(&fake)
        }),
    );
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("rocketchat", "@alice.rc")])
        .await;
    app.add_user_with_contacts("bob@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "for alice")
        .await;
    app.send_ok("/api/v1/send_sms", "bob@example.com", "for bob")
        .await;
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"));
    assert!(events.iter().all(|e| e.backend.as_deref() == Some("rc")));
    let bodies: Vec<serde_json::Value> = fake.requests().iter().map(Recorded::json).collect();
    assert!(bodies.contains(&serde_json::json!({"text": "for alice", "channel": "@alice.rc"})));
    assert!(bodies.contains(&serde_json::json!({"text": "for bob"})));
    app.stop().await;
}
db_test!(rocketchat_uses_the_same_hook_format);

#[test]
fn mattermost_and_rocketchat_types_load_from_yaml() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(
        b"plugin:\n  backend: mm\n  backends:\n    mm:\n      type: mattermost\n      url: https://chat.example.com/hooks/abc\n      username: OnCall\n    rc:\n      type: rocketchat\n      url: https://rc.example.com/hooks/x/y\n      channel: '#alerts'\n      timeout: 5s\n",
    )
    .expect("write");
    let s = Settings::load_from_env(Some(file.path()), &Overrides::default(), Vec::new())
        .expect("loads");
    assert!(matches!(
        &s.plugin.backends["mm"],
        BackendSettings::Mattermost(m) if m.username.as_deref() == Some("OnCall") && m.timeout == Duration::from_secs(10)
    ));
    assert!(matches!(
        &s.plugin.backends["rc"],
        BackendSettings::Rocketchat(m) if m.channel.as_deref() == Some("#alerts") && m.timeout == Duration::from_secs(5)
    ));
    assert!(
        !format!("{s:?}").contains("hooks/abc"),
        "the hook URL is a secret"
    );
}

async fn mattermost_client_error_is_not_retried(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(
        &[],
        Reply::Json(
            400,
            r#"{"id":"web.incoming_webhook.channel.app_error","message":"Couldn't find the channel.","status_code":400}"#,
        ),
    );
    let mut s = settings(&db);
    mattermost(&mut s, hook(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "hello")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "failed");
    assert_eq!(events[0].attempts, 1);
    let error = events[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("400") && error.contains("find the channel"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 1);
    app.stop().await;
}
db_test!(mattermost_client_error_is_not_retried);

async fn mattermost_server_error_then_ok_is_delivered_on_the_second_attempt(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::start().await;
    fake.script(&[Reply::Status(500)], Reply::Status(200));
    let mut s = settings(&db);
    mattermost(&mut s, hook(&fake));
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[]).await;
    app.send_ok("/api/v1/make_call", "alice@example.com", "ring")
        .await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    assert_eq!(events[0].attempts, 2);
    assert_eq!(fake.requests().len(), 2);
    app.stop().await;
}
db_test!(mattermost_server_error_then_ok_is_delivered_on_the_second_attempt);

#[tokio::test]
async fn mattermost_bad_settings_are_startup_errors_naming_the_backend() {
    let db = TestDb::new(Db::Sqlite).await;
    let fake = Fake::start().await;
    for url in [
        "",
        "chat.example.com/hooks/abc",
        "ftp://chat.example.com/hooks/abc",
    ] {
        let mut s = settings(&db);
        mattermost(
            &mut s,
            MattermostSettings {
                url: Secret(url.into()),
                ..hook(&fake)
            },
        );
        let err = oncall_relay::Application::build(s)
            .await
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(text.contains("`mm`") && text.contains("`url`"), "{text}");
    }

    let mut s = settings(&db);
    s.plugin.backend = "rc".into();
    s.plugin.backends.insert(
        "rc".into(),
        BackendSettings::Rocketchat(MattermostSettings {
            timeout: s.queue.lease,
            ..hook(&fake)
        }),
    );
    let err = s.validate().expect_err("timeout too long");
    assert!(
        err.to_string().contains("plugin.backends.rc.timeout"),
        "{err}"
    );
}
