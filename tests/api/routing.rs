//! Routes per kind: conditions, fallback to the next backend, and giving up.

use std::time::Duration;

use oncall_relay::config::RouteSettings;

use crate::db_test;
use crate::helpers::*;

fn step(backend: &str) -> RouteSettings {
    RouteSettings {
        backend: backend.into(),
        ..RouteSettings::default()
    }
}

/// A step only admins take.
fn admins_only(backend: &str) -> RouteSettings {
    RouteSettings {
        roles: vec!["admin".into()],
        ..step(backend)
    }
}

/// Adds the admin boss@example.com (+4930123456) with `contacts`.
async fn add_boss(app: &TestApp, contacts: &[(&str, &str)]) {
    app.add(oncall_relay::directory::NewUser {
        email: "boss@example.com".into(),
        phone_number: Some("+4930123456".into()),
        role: Some("admin".into()),
        contacts: contact_map(contacts),
        ..Default::default()
    })
    .await;
}

/// What the two-step scenarios send.
const MESSAGE: &str = "disk full";

/// Alice is sent [`MESSAGE`] as `kind` (sms or call) over two webhooks routed in order: each
/// step is a name, the status its webhook answers every request with, and its attempts.
/// The notification must end as `ended` says: its status, then each attempt's backend and
/// outcome (`"delivered: gateway retry, chat delivered"`). Each webhook is asked once per
/// attempt on it, no more, even a while later; the one that delivered got the message.
async fn falls_back(db: &TestDb, kind: &str, steps: [(&str, u16, u32); 2], ended: &str) {
    let fakes = [Fake::start().await, Fake::start().await];
    let mut s = settings(db);
    for ((name, status, _), fake) in steps.iter().zip(&fakes) {
        fake.script(&[], Reply::Status(*status));
        add_webhook(&mut s, name, &fake.url);
    }
    let route = steps
        .iter()
        .map(|(name, _, attempts)| RouteSettings {
            attempts: (*attempts > 1).then_some(*attempts),
            ..step(name)
        })
        .collect();
    s.plugin.routes.insert(kind.into(), route);
    let path = if kind == "sms" {
        "/api/v1/send_sms"
    } else {
        "/api/v1/make_call"
    };
    let (app, events) = deliver_to_alice(s, path, MESSAGE).await;
    let e = &events[0];
    let (status, attempts) = ended.split_once(": ").expect("status: attempts");
    let attempts: Vec<(&str, &str)> = attempts
        .split(", ")
        .map(|a| a.split_once(' ').expect("backend outcome"))
        .collect();
    assert_eq!(e.status, status, "{e:?}");
    assert_eq!(outcomes(e), attempts);
    assert_eq!(e.attempts as usize, attempts.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ((name, _, _), fake) in steps.iter().zip(&fakes) {
        let tried = attempts.iter().filter(|(b, _)| b == name).count();
        assert_eq!(fake.requests().len(), tried, "{name}: once per attempt");
    }
    if status == "delivered" {
        let (last, _) = attempts.last().expect("an attempt");
        assert_eq!(e.backend.as_deref(), Some(*last));
        let (_, fake) = steps
            .iter()
            .zip(&fakes)
            .find(|((n, _, _), _)| n == last)
            .expect("step");
        assert_eq!(fake.requests()[0].json()["message"], MESSAGE);
    }
    app.stop().await;
}

async fn calls_for_admins_take_their_own_route(db: TestDb) {
    let (voice, other) = (Fake::start().await, Fake::start().await);
    let mut s = settings(&db);
    add_webhook(&mut s, "voice", &voice.url);
    add_webhook(&mut s, "other", &other.url);
    let route = vec![admins_only("voice"), step("other")];
    s.plugin.routes.insert("call".into(), route);
    let app = TestApp::spawn(s).await;
    add_boss(&app, &[]).await;
    app.add_user("dev@example.com", Some("+4930123457")).await;
    app.send_ok("/api/v1/make_call", "boss@example.com", "admin call")
        .await;
    app.send_ok("/api/v1/make_call", "dev@example.com", "editor call")
        .await;
    // SMS has no route: the default backend (stdout).
    app.send_ok("/api/v1/send_sms", "boss@example.com", "sms")
        .await;
    let events = app.wait_until_settled(3).await;
    assert!(events.iter().all(|e| e.status == "delivered"));
    let by_message = |m: &str| event_where(&events, |e| e.message == m).backend.clone();
    assert_eq!(by_message("admin call").as_deref(), Some("voice"));
    assert_eq!(by_message("editor call").as_deref(), Some("other"));
    assert_eq!(by_message("sms").as_deref(), Some("stdout"));
    assert_eq!(voice.requests().len(), 1);
    assert_eq!(voice.requests()[0].json()["message"], "admin call");
    assert_eq!(other.requests().len(), 1);
    app.stop().await;
}
db_test!(calls_for_admins_take_their_own_route);

async fn sms_falls_back_from_a_failing_gateway_once(db: TestDb) {
    let ended = "delivered: gateway retry, gateway fallback, chat delivered";
    falls_back(&db, "sms", [("gateway", 503, 2), ("chat", 200, 1)], ended).await;
}
db_test!(sms_falls_back_from_a_failing_gateway_once);

/// A 4xx is not retried on the same backend.
async fn a_client_error_falls_back_at_once_and_all_failing_ends_failed(db: TestDb) {
    let ended = "failed: first fallback, second retry, second failed";
    falls_back(&db, "call", [("first", 401, 1), ("second", 500, 2)], ended).await;
}
db_test!(a_client_error_falls_back_at_once_and_all_failing_ends_failed);

#[test]
fn a_route_to_an_unknown_backend_is_a_startup_error() {
    let mut s = oncall_relay::config::Settings::default();
    s.plugin.routes.insert("sms".into(), vec![step("nowhere")]);
    let err = s.validate().expect_err("unknown backend");
    assert!(
        err.to_string().contains("plugin.routes.sms[0].backend"),
        "{err}"
    );
    let mut s = oncall_relay::config::Settings::default();
    s.plugin.routes.insert("fax".into(), vec![step("stdout")]);
    assert!(s.validate().is_err());
}

async fn a_users_preferred_route_and_contacts_reach_the_backend(db: TestDb) {
    let (personal, default) = (Fake::start().await, Fake::start().await);
    let mut s = webhook_settings(&db, &default.url);
    s.plugin.backends.insert(
        "personal".into(),
        oncall_relay::config::BackendSettings::Webhook(oncall_relay::config::WebhookSettings {
            url: personal.url.clone(),
            method: "POST".into(),
            headers: Default::default(),
            timeout: Duration::from_secs(2),
            body: Some(r#"{"chat": {{ contacts.telegram }}, "text": {{ message }}}"#.into()),
            content_type: "application/json".into(),
            ..Default::default()
        }),
    );
    let app = TestApp::spawn(s).await;
    app.directory
        .add(oncall_relay::directory::NewUser {
            email: "a@example.com".into(),
            phone_number: Some("+4930123456".into()),
            contacts: [
                ("route".to_string(), "personal".to_string()),
                ("Telegram".to_string(), "4242".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .await
        .expect("add");
    app.add_user("b@example.com", Some("+4930123457")).await;
    app.send_ok("/api/v1/send_sms", "a@example.com", "for a")
        .await;
    app.send_ok("/api/v1/send_sms", "b@example.com", "for b")
        .await;
    app.wait_until_settled(2).await;
    assert_eq!(personal.requests().len(), 1);
    assert_eq!(
        personal.requests()[0].json(),
        serde_json::json!({"chat": "4242", "text": "for a"})
    );
    assert_eq!(default.requests().len(), 1);
    assert_eq!(default.requests()[0].json()["message"], "for b");
    assert_eq!(
        default.requests()[0].json()["contacts"],
        serde_json::json!({})
    );

    // Removing the preferred route sends the next one to the default backend.
    app.directory
        .update(
            "a@example.com",
            oncall_relay::directory::UserPatch {
                contacts: [("route".to_string(), String::new())].into_iter().collect(),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    app.send_ok("/api/v1/send_sms", "a@example.com", "again for a")
        .await;
    app.wait_until_settled(3).await;
    assert_eq!(default.requests().len(), 2);
    assert_eq!(default.requests()[1].json()["contacts"]["telegram"], "4242");
    app.stop().await;
}
db_test!(a_users_preferred_route_and_contacts_reach_the_backend);

async fn admin_calls_take_route_a_and_sms_falls_back_to_telegram(db: TestDb) {
    use oncall_relay::config::{BackendSettings, Secret, TelegramSettings};
    let (route_a, gateway, telegram) = (
        Fake::start().await,
        Fake::start().await,
        Fake::start().await,
    );
    gateway.script(&[], Reply::Status(502));
    telegram.script(&[], Reply::Json(200, r#"{"ok": true, "result": {}}"#));
    let mut s = settings(&db);
    add_webhook(&mut s, "route_a", &route_a.url);
    add_webhook(&mut s, "sms_gateway", &gateway.url);
    s.plugin.backends.insert(
        "telegram".into(),
        BackendSettings::Telegram(TelegramSettings {
            token: Secret("1:abc".into()),
            api_base: telegram.url.clone(),
            timeout: Duration::from_secs(2),
            ..Default::default()
        }),
    );
    s.plugin
        .routes
        .insert("call".into(), vec![admins_only("route_a")]);
    s.plugin.routes.insert(
        "sms".into(),
        vec![
            RouteSettings {
                attempts: Some(2),
                ..step("sms_gateway")
            },
            step("telegram"),
        ],
    );
    let app = TestApp::spawn(s).await;
    add_boss(&app, &[("telegram", "777")]).await;
    app.send_ok("/api/v1/make_call", "boss@example.com", "wake up")
        .await;
    app.send_ok("/api/v1/send_sms", "boss@example.com", "disk full")
        .await;
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    assert_eq!(route_a.requests().len(), 1);
    assert_eq!(route_a.requests()[0].json()["message"], "wake up");
    assert_eq!(gateway.requests().len(), 2, "two tries on the gateway");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = telegram.requests();
    assert_eq!(sent.len(), 1, "nothing lost or doubled");
    assert_eq!(sent[0].json()["chat_id"], 777);
    assert_eq!(sent[0].json()["text"], "disk full");
    app.stop().await;
}
db_test!(admin_calls_take_route_a_and_sms_falls_back_to_telegram);
