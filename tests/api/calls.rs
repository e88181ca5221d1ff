//! E7/E8 `make_call` and `send_sms`: every answer of the contract and bad input.

use crate::db_test;
use crate::helpers::*;

const CALL: &str = "You are invited to check an Alert Group from Grafana OnCall. Alert via Grafana Alerting with title \"CPU high\" triggered 3 times";
const SMS: &str = "Grafana OnCall: Alert group #2\"CPU high\" from stack: \"prod\", integration: Grafana Alerting, alerts registered: 1.";

async fn accepted_calls_and_sms_reach_the_webhook(db: TestDb) {
    let fake = Fake::start().await;
    let s = webhook_settings(&db, &fake.url);
    let app = TestApp::spawn(s).await;
    let user = app
        .add_user("alice@example.com", Some("+49 30 123456"))
        .await;

    for (path, message) in [("/api/v1/make_call", CALL), ("/api/v1/send_sms/", SMS)] {
        let (status, body) = app.send(path, "alice@example.com", message).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, serde_json::json!({}));
    }
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let mut kinds = Vec::new();
    for r in &requests {
        let body = r.json();
        assert_eq!(body["phone"], "+4930123456");
        assert_eq!(body["user"]["id"], user.id.as_str());
        assert_eq!(body["email"], "alice@example.com");
        kinds.push(str_of(&body["kind"]).to_string());
        let expected = if body["kind"] == "call" { CALL } else { SMS };
        assert_eq!(body["message"], expected, "message passed through intact");
    }
    kinds.sort();
    assert_eq!(kinds, ["call", "sms"]);
    app.stop().await;
}
db_test!(accepted_calls_and_sms_reach_the_webhook);

/// Every form to each of `emails` on each of `paths` is answered `status` with
/// `{"error": error}`, and nothing is queued.
async fn assert_refused(app: &TestApp, emails: &[&str], paths: &[&str], status: u16, error: &str) {
    for email in emails {
        for path in paths {
            let answer = app.send(path, email, "hi").await;
            let expected = (status, serde_json::json!({ "error": error }));
            assert_eq!(answer, expected, "{path} {email}");
        }
    }
    assert!(app.accepted_events().await.is_empty(), "nothing queued");
}

async fn unknown_user_is_404_user_not_found(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let paths = ["/api/v1/make_call", "/api/v1/send_sms"];
    assert_refused(&app, &["ghost@example.com"], &paths, 404, "user-not-found").await;
    app.stop().await;
}
db_test!(unknown_user_is_404_user_not_found);

async fn user_without_phone_or_inactive_is_400_number_not_verified(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    app.add_user("nophone@example.com", None).await;
    app.directory
        .add(oncall_relay::directory::NewUser {
            email: "gone@example.com".into(),
            phone_number: Some("+4930123456".into()),
            active: Some(false),
            ..Default::default()
        })
        .await
        .expect("add");
    let emails = ["nophone@example.com", "GONE@example.com"];
    let paths = ["/api/v1/make_call/", "/api/v1/send_sms"];
    assert_refused(&app, &emails, &paths, 400, "number-not-verified").await;
    app.stop().await;
}
db_test!(user_without_phone_or_inactive_is_400_number_not_verified);

async fn invalid_input_is_400_json_naming_the_field(db: TestDb) {
    let app = TestApp::spawn_with_alice(settings(&db)).await;
    let cases: &[(&str, &str)] = &[
        ("email=not-an-email&message=hi", "email"),
        ("message=hi", "email"),
        ("email=alice%40example.com&message=", "message"),
        ("email=alice%40example.com&message=%20%20", "message"),
        ("email=alice%40example.com", "message"),
    ];
    for (body, field) in cases {
        let (status, json) = json_of(app.post_form("/api/v1/make_call", body).await).await;
        assert_eq!(status, 400, "{body}");
        assert!(json[field].is_array(), "{body} → {json}");
    }
    // Not valid UTF-8: still a JSON 400, never a 500.
    let not_utf8 = vec![b'e', b'm', b'=', 0xff, 0xfe];
    let resp = app.post_raw("/api/v1/send_sms", FORM, not_utf8).await;
    let (status, json) = json_of(resp).await;
    assert_eq!(status, 400);
    assert!(json["detail"].is_string());
    // Broken JSON body.
    let broken = "{\"email\": ";
    let resp = app
        .post_raw("/api/v1/make_call", "application/json", broken)
        .await;
    let (status, _) = json_of(resp).await;
    assert_eq!(status, 400);
    assert!(app.accepted_events().await.is_empty(), "nothing queued");
    app.stop().await;
}
db_test!(invalid_input_is_400_json_naming_the_field);

async fn one_mebibyte_body_is_413_json_and_16k_message_is_kept(db: TestDb) {
    let fake = Fake::start().await;
    let s = webhook_settings(&db, &fake.url);
    let app = TestApp::spawn_with_alice(s).await;

    let huge = format!(
        "email=alice%40example.com&message={}",
        "a".repeat(1024 * 1024)
    );
    let (status, body) = json_of(app.post_form("/api/v1/make_call", &huge).await).await;
    assert_eq!(status, 413);
    assert!(body["detail"].is_string());

    let long: String = (0..16 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    // The server closes a connection whose body it refused unread; a new client keeps the
    // next request off that connection.
    let resp = reqwest::Client::new()
        .post(app.url("/api/v1/send_sms"))
        .header("Authorization", TOKEN)
        .header("Content-Type", FORM)
        .body(
            serde_urlencoded::to_string([("email", "alice@example.com"), ("message", &long)])
                .expect("encode"),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    app.wait_until_settled(1).await;
    assert_eq!(
        fake.requests()[0].json()["message"],
        long.as_str(),
        "not truncated"
    );
    app.stop().await;
}
db_test!(one_mebibyte_body_is_413_json_and_16k_message_is_kept);

async fn json_bodies_are_accepted_too(db: TestDb) {
    let app = TestApp::spawn_with_alice(settings(&db)).await;
    let call = serde_json::json!({"email": "Alice@Example.com", "message": "hi"});
    let answer = app.post_json("/api/v1/make_call/", &call).await;
    assert_eq!(answer.status().as_u16(), 200);
    app.stop().await;
}
db_test!(json_bodies_are_accepted_too);

async fn accepted_means_committed_before_the_answer(db: TestDb) {
    let mut s = settings(&db);
    // No workers: the row must already be there, queued, when 200 arrives.
    s.queue.deliver = false;
    let app = TestApp::spawn_with_alice(s).await;
    call_alice_at_once(&[&app], 50, |i| format!("call+{i}")).await;
    // Read through a separate connection pool, as a crash-restarted process would.
    let other = oncall_relay::store::Store::connect(&db.settings)
        .await
        .expect("connect");
    let rows = oncall_relay::notify::events::list(
        &other,
        &oncall_relay::notify::EventFilter {
            limit: 1000,
            ..Default::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(rows.len(), 50);
    assert!(
        rows.iter()
            .all(|r| r.status == "queued" && r.kind == "call")
    );
    app.stop().await;
}
db_test!(accepted_means_committed_before_the_answer);
