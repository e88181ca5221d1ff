//! Refused requests on record: each refusal shows in `events list` and the admin API with
//! the email as sent, while the engine's answers stay as they were.

use serde_json::json;

use crate::db_test;
use crate::helpers::*;

const ADMIN: &str = "admin-token-987";

async fn every_refusal_is_on_record_with_the_email_as_sent(db: TestDb) {
    let mut s = settings(&db);
    s.app.admin_token =
        oncall_relay::config::Tokens(vec![oncall_relay::config::Secret(ADMIN.into())]);
    s.queue.deliver = false;
    s.limits.call.per_user = 1;
    // Refusals are not notifications: they must not use up the installation's cap.
    s.limits.call.total = 2;
    let app = TestApp::spawn_with_alice(s).await;
    app.add_user("bob@example.com", None).await;

    for _ in 0..3 {
        let (status, body) = app
            .send("/api/v1/make_call", "Nobody@Example.com", "db down")
            .await;
        assert_eq!((status, body), (404, json!({"error": "user-not-found"})));
    }
    let (status, body) = app
        .send("/api/v1/send_sms", "bob@example.com", "db down")
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "number-not-verified"}))
    );
    app.call_alice("first").await;
    let (status, body) = app
        .send("/api/v1/make_call", "alice@example.com", "second")
        .await;
    assert_eq!((status, body), (400, json!({"error": "limit-exceeded"})));
    let (status, body) = app
        .post_fields_json("/api/v1/send_sms", &[("email", "carol@example.com")])
        .await;
    assert_eq!(
        (status, body),
        (400, json!({"message": ["This field is required."]}))
    );
    let push = app
        .post_raw("/mobile_app/v1/fcm_relay", "application/json", "{}")
        .await;
    assert_eq!(push.status().as_u16(), 400);

    // Refusals are written with the next group commit, not before the answer.
    let refused = wait_for(std::time::Duration::from_secs(10), || async {
        let refused: Vec<_> = app
            .events()
            .await
            .into_iter()
            .filter(|e| e.status == "refused")
            .collect();
        (refused.len() == 7).then_some(refused)
    })
    .await;
    assert!(
        refused
            .iter()
            .all(|e| e.finished_at.is_some() && e.attempts == 0)
    );

    // Each reason, found by the email as sent, in the admin API and then in `events list`.
    let expected = [
        ("Nobody@Example.com", "call", "user-not-found", 3),
        ("bob@example.com", "sms", "number-not-verified", 1),
        ("alice@example.com", "call", "limit-exceeded", 1),
        ("carol@example.com", "sms", "invalid-request", 1),
    ];
    for (email, kind, reason, count) in expected {
        let query = format!("status=refused&user={}", email.replace('@', "%40"));
        let (status, page) = admin_get(&app, &format!("/api/admin/v1/events?{query}")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["count"], count, "{email}: {page}");
        let first = &page["results"][0];
        assert_eq!(
            (&first["email"], &first["kind"], &first["last_error"]),
            (&json!(email), &json!(kind), &json!(reason)),
            "{page}"
        );
    }
    let (_, page) = admin_get(&app, "/api/admin/v1/events?status=refused&kind=push").await;
    assert_eq!(
        page["results"][0]["last_error"], "invalid-request",
        "{page}"
    );
    app.stop().await;

    for (email, kind, reason, count) in expected {
        let listed = relay_json(
            &db,
            &[
                "events", "list", "--json", "--user", email, "--status", "refused", "--since", "1h",
            ],
        );
        let listed = listed.as_array().expect("list");
        assert_eq!(listed.len(), count, "{email}: {listed:?}");
        assert_eq!(listed[0]["email"], email);
        assert_eq!(listed[0]["kind"], kind);
        assert_eq!(listed[0]["last_error"], reason);
    }
    let bob = relay_json(
        &db,
        &["events", "list", "--json", "--user", "BOB@example.com"],
    );
    assert_eq!(bob[0]["message"], "db down", "{bob}");
    let alice = relay_json(
        &db,
        &["events", "list", "--json", "--user", "alice@example.com"],
    );
    let alice: Vec<_> = alice
        .as_array()
        .expect("list")
        .iter()
        .map(|e| {
            (
                e["status"].clone(),
                e["last_error"].clone(),
                e["message"].clone(),
            )
        })
        .collect();
    assert_eq!(
        alice,
        vec![
            (json!("refused"), json!("limit-exceeded"), json!("second")),
            (json!("queued"), json!(null), json!("first")),
        ]
    );
    let carol = relay_json(
        &db,
        &["events", "list", "--json", "--user", "carol@example.com"],
    );
    assert_eq!(carol[0]["last_error"], "invalid-request", "{carol}");
    assert_eq!(carol[0]["message"], "message: This field is required.");
    // The table view names the reason too.
    let table = ok(&relay(&db, &["events", "list", "--status", "refused"]));
    assert!(table.contains("user-not-found"), "{table}");
}
db_test!(every_refusal_is_on_record_with_the_email_as_sent);

async fn admin_get(app: &TestApp, path: &str) -> (u16, serde_json::Value) {
    json_of(
        app.client
            .get(app.url(path))
            .header("Authorization", format!("Bearer {ADMIN}"))
            .send()
            .await
            .expect("send"),
    )
    .await
}
