//! What people read: a backend's texts per kind and language, in the reader's time zone.

use chrono::TimeZone;
use oncall_relay::config::MessageSettings;
use oncall_relay::directory::NewUser;

use crate::db_test;
use crate::helpers::*;

const SMS: &str = "Grafana OnCall: Alert group #2\"CPU high\" from stack: \"prod\", integration: Grafana Alerting, alerts registered: 1.";

/// The local `HH:MM` of `ms` in `zone`.
fn local_time(ms: i64, zone: chrono_tz::Tz) -> String {
    zone.timestamp_millis_opt(ms)
        .single()
        .expect("valid time")
        .format("%H:%M")
        .to_string()
}

async fn a_german_reader_in_berlin_gets_a_german_sms_with_local_time(db: TestDb) {
    let gateway = Fake::start().await;
    let mut s = webhook_settings(&db, &gateway.url);
    if let Some(oncall_relay::config::BackendSettings::Webhook(w)) =
        s.plugin.backends.get_mut("hook")
    {
        w.body = Some(
            r#"{"to": {{ phone }}, "text": {{ text }}, "oncall": {{ message }}, "number": {{ alert.number }}}"#
                .into(),
        );
    }
    s.plugin
        .messages
        .insert("hook".into(), MessageSettings::default());
    let app = TestApp::spawn(s).await;
    for (email, phone, language, timezone) in [
        (
            "greta@example.com",
            "+4930123456",
            Some("de"),
            "Europe/Berlin",
        ),
        ("sam@example.com", "+14155550100", None, "UTC"),
    ] {
        app.directory
            .add(NewUser {
                email: email.into(),
                phone_number: Some(phone.into()),
                language: language.map(str::to_string),
                timezone: Some(timezone.into()),
                ..NewUser::default()
            })
            .await
            .expect("user added");
    }
    for email in ["greta@example.com", "sam@example.com"] {
        let (status, body) = app.send("/api/v1/send_sms", email, SMS).await;
        assert_eq!(status, 200, "{body}");
    }
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    assert!(
        events.iter().all(|e| e.message == SMS),
        "OnCall's text is what is stored"
    );
    let accepted = |email: &str| event_where(&events, |e| e.email == email).created_at;
    let sent = |phone: &str| {
        gateway
            .requests()
            .iter()
            .map(|r| r.json())
            .find(|b| b["to"] == phone)
            .expect("sent")
    };
    let greta = sent("+4930123456");
    let berlin = local_time(accepted("greta@example.com"), chrono_tz::Europe::Berlin);
    assert_eq!(
        greta["text"],
        format!("Alarm #2: CPU high (Grafana Alerting, Alarme: 1) {berlin}")
    );
    assert_eq!(greta["oncall"], SMS);
    assert_eq!(greta["number"], 2);
    let sam = sent("+14155550100");
    let utc = local_time(accepted("sam@example.com"), chrono_tz::UTC);
    assert_eq!(
        sam["text"],
        format!("Alert #2: CPU high (Grafana Alerting, alerts: 1) {utc}")
    );
    app.stop().await;
}
db_test!(a_german_reader_in_berlin_gets_a_german_sms_with_local_time);

async fn a_lost_heartbeat_is_told_in_the_admins_language_and_time_zone(db: TestDb) {
    let fake = Fake::start().await;
    let mut s = crate::heartbeat::watchdog_settings(&db, &fake);
    s.plugin
        .messages
        .insert("hook".into(), MessageSettings::default());
    let app = TestApp::spawn(s).await;
    app.directory
        .add(NewUser {
            email: "olga@example.com".into(),
            phone_number: Some("+380441234567".into()),
            role: Some("admin".into()),
            language: Some("uk".into()),
            timezone: Some("Europe/Kyiv".into()),
            ..NewUser::default()
        })
        .await
        .expect("admin added");
    let created = crate::heartbeat::create(&app).await;
    let beat = crate::heartbeat::path_of(created["heartbeat"]["link"].as_str().expect("link"));
    assert_eq!(app.plain_get_status(&beat).await, 200);
    let alert = wait_for(std::time::Duration::from_secs(10), || async {
        crate::heartbeat::heartbeat_alerts(&fake).into_iter().next()
    })
    .await;
    let last = alert["details"]["last_beat_at_ms"]
        .as_i64()
        .expect("last beat");
    let kyiv = chrono_tz::Europe::Kyiv
        .timestamp_millis_opt(last)
        .single()
        .expect("time")
        .format("%d.%m.%Y %H:%M %Z");
    assert_eq!(
        alert["text"],
        format!("OnCall http://oncall-engine:8080: немає heartbeat з {kyiv}.")
    );
    assert!(
        str_of(&alert["message"]).contains("stopped sending heartbeats"),
        "templates still see OnCall's own text as `message`: {alert}"
    );
    app.stop().await;
}
db_test!(a_lost_heartbeat_is_told_in_the_admins_language_and_time_zone);
