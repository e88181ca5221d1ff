//! E9 `mobile_app/v1/fcm_relay`: validation, durable acceptance, device routing.

use crate::db_test;
use crate::helpers::*;

fn firebase_message(token: &str) -> serde_json::Value {
    // The shape the engine sends (apps/mobile_app/tasks), trimmed of nothing that matters.
    serde_json::json!({
        "token": token,
        "data": {
            "title": "[#42] CPU high",
            "subtitle": "Grafana Alerting, Firing",
            "orgId": "1",
            "orgName": "Main Org.",
            "alertGroupId": "IAB2C3D4E5F6G",
            "status": "1",
            "type": "oncall.critical_message",
            "thread_id": "IAB2C3D4E5F6G",
            "important_notification_sound_name": "ambulance.mp3",
            "important_notification_volume_type": "constant",
            "important_notification_volume": "0.8",
            "important_notification_override_dnd": "true"
        },
        "apns": {
            "headers": {"apns-priority": "10"},
            "payload": {"aps": {
                "alert": {"title": "[#42] CPU high", "body": "Grafana Alerting, Firing"},
                "badge": 1,
                "sound": {"critical": 1, "name": "ambulance.aiff", "volume": 0.8},
                "thread-id": "IAB2C3D4E5F6G",
                "interruption-level": "critical"
            }}
        },
        "android": {"priority": "high"}
    })
}

async fn relay(app: &TestApp, body: &serde_json::Value) -> reqwest::Response {
    app.client
        .post(app.url("/mobile_app/v1/fcm_relay"))
        .header("Authorization", TOKEN)
        .json(body)
        .send()
        .await
        .expect("send")
}

fn routed(db: &TestDb, personal: &Fake, team: &Fake) -> oncall_relay::config::Settings {
    let mut s = settings(db);
    add_webhook(&mut s, "personal", &personal.url);
    add_webhook(&mut s, "team", &team.url);
    s.push.backend = "personal".into();
    s.push.fallback_backend = "team".into();
    s
}

async fn a_push_for_an_assigned_device_reaches_its_user(db: TestDb) {
    let (personal, team) = (Fake::start().await, Fake::start().await);
    let app = TestApp::spawn(routed(&db, &personal, &team)).await;
    let user = app.add_user("alice@example.com", Some("+4930123456")).await;
    app.directory
        .assign_device("fcm-token-alice", "alice@example.com", Some("phone"))
        .await
        .expect("assign");

    let resp = relay(&app, &firebase_message("fcm-token-alice")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.expect("body"), "", "empty body");
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].kind, "push");
    assert_eq!(events[0].status, "delivered");
    assert_eq!(events[0].backend.as_deref(), Some("personal"));
    let body = personal.requests()[0].json();
    assert_eq!(body["user"]["id"], user.id.as_str());
    assert_eq!(body["kind"], "push");
    assert_eq!(body["title"], "[#42] CPU high");
    assert_eq!(body["important"], true);
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("CPU high")
            && message.contains("Main Org.")
            && message.contains("IAB2C3D4E5F6G"),
        "{message}"
    );
    assert_eq!(body["details"]["data"]["orgId"], "1");
    assert!(team.requests().is_empty());
    app.stop().await;
}
db_test!(a_push_for_an_assigned_device_reaches_its_user);

async fn an_unknown_device_goes_to_the_fallback_and_is_registered(db: TestDb) {
    let (personal, team) = (Fake::start().await, Fake::start().await);
    let app = TestApp::spawn(routed(&db, &personal, &team)).await;
    // A test push: title, orgName and sound keys only.
    let test_push = serde_json::json!({
        "token": "fcm-token-unknown",
        "data": {"title": "Test notification", "orgName": "Main Org.", "default_notification_sound_name": "default.mp3"},
        "apns": {"payload": {"aps": {"alert": {"title": "Test notification"}}}}
    });
    let resp = relay(&app, &test_push).await;
    assert_eq!(resp.status().as_u16(), 200);
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    assert_eq!(events[0].backend.as_deref(), Some("team"));
    let body = team.requests()[0].json();
    assert_eq!(body["title"], "Test notification");
    assert_eq!(body["important"], false);
    assert_eq!(body["details"]["device_token"], "fcm-token-unknown");
    assert!(personal.requests().is_empty());
    let devices = app.directory.devices().await.expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].token, "fcm-token-unknown");
    assert!(devices[0].user_id.is_none(), "registered unassigned");

    // Once assigned, the same token goes to its user.
    app.add_user("bob@example.com", Some("+4930123456")).await;
    app.directory
        .assign_device("fcm-token-unknown", "bob@example.com", None)
        .await
        .expect("assign");
    assert_eq!(relay(&app, &test_push).await.status().as_u16(), 200);
    app.wait_until_settled(2).await;
    assert_eq!(personal.requests().len(), 1);
    assert_eq!(personal.requests()[0].json()["email"], "bob@example.com");
    app.stop().await;
}
db_test!(an_unknown_device_goes_to_the_fallback_and_is_registered);

async fn malformed_pushes_are_400_json(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    for field in ["token", "data", "apns"] {
        let mut msg = firebase_message("t");
        msg.as_object_mut().expect("object").remove(field);
        let (status, body) = json_of(relay(&app, &msg).await).await;
        assert_eq!(status, 400, "without {field}");
        assert!(body[field].is_array(), "{field}: {body}");
    }
    for raw in ["not json", "[1, 2]", ""] {
        let resp = app
            .post_raw("/mobile_app/v1/fcm_relay/", "application/json", raw)
            .await;
        let (status, body) = json_of(resp).await;
        assert_eq!(status, 400, "{raw:?}");
        assert!(body["detail"].is_string());
    }
    assert_eq!(
        status_of(
            app.client
                .post(app.url("/mobile_app/v1/fcm_relay"))
                .json(&firebase_message("t"))
        )
        .await,
        403,
        "token required"
    );
    assert!(app.accepted_events().await.is_empty());
    app.stop().await;
}
db_test!(malformed_pushes_are_400_json);
