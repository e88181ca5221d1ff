//! Caps per kind (limit-exceeded) and the duplicate window.

use std::time::Duration;

use crate::db_test;
use crate::helpers::*;

async fn caps_answer_limit_exceeded_and_send_nothing(db: TestDb) {
    let mut s = settings(&db);
    s.queue.deliver = false;
    s.limits.call.per_user = 2;
    s.limits.call.total = 3;
    let app = TestApp::spawn(s).await;
    app.add_user("a@example.com", Some("+4930123456")).await;
    app.add_user("b@example.com", Some("+4930123457")).await;

    for i in 0..2 {
        let (status, _) = app
            .send("/api/v1/make_call", "a@example.com", &format!("call {i}"))
            .await;
        assert_eq!(status, 200);
    }
    let (status, body) = app
        .send("/api/v1/make_call", "a@example.com", "call 3")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, serde_json::json!({"error": "limit-exceeded"}));
    // SMS has no cap.
    let (status, _) = app.send("/api/v1/send_sms", "a@example.com", "sms").await;
    assert_eq!(status, 200);
    // Another user is under their own cap, until the installation's total is reached.
    let (status, _) = app.send("/api/v1/make_call", "b@example.com", "b 1").await;
    assert_eq!(status, 200);
    let (status, body) = app.send("/api/v1/make_call", "b@example.com", "b 2").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "limit-exceeded");
    let calls = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.kind == "call" && e.status != "refused")
        .count();
    assert_eq!(calls, 3, "nothing queued over the caps");
    app.stop().await;
}
db_test!(caps_answer_limit_exceeded_and_send_nothing);

async fn a_repeat_within_the_window_is_recorded_not_delivered(db: TestDb) {
    let fake = Fake::start().await;
    let mut s = webhook_settings(&db, &fake.url);
    s.dedup.window = Duration::from_secs(30);
    let app = TestApp::spawn(s).await;
    app.add_user("a@example.com", Some("+4930123456")).await;
    for message in ["disk full", "disk full", "disk fuller"] {
        let (status, body) = app.send("/api/v1/send_sms", "a@example.com", message).await;
        assert_eq!(status, 200);
        assert_eq!(body, serde_json::json!({}));
    }
    // The same text as a call is not a duplicate of the SMS.
    let (status, _) = app
        .send("/api/v1/make_call", "a@example.com", "disk full")
        .await;
    assert_eq!(status, 200);
    let events = app.wait_until_settled(4).await;
    let duplicates: Vec<_> = events.iter().filter(|e| e.status == "duplicate").collect();
    assert_eq!(duplicates.len(), 1, "{events:?}");
    let original = events
        .iter()
        .find(|e| e.status == "delivered" && e.message == "disk full" && e.kind == "sms")
        .expect("original");
    assert_eq!(
        duplicates[0].last_error.as_deref(),
        Some(format!("duplicate of #{}", original.id).as_str())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.requests().len(), 3, "the duplicate was not sent");
    app.stop().await;
}
db_test!(a_repeat_within_the_window_is_recorded_not_delivered);

async fn without_a_window_repeats_are_delivered(db: TestDb) {
    let fake = Fake::start().await;
    let s = webhook_settings(&db, &fake.url);
    let app = TestApp::spawn(s).await;
    app.add_user("a@example.com", Some("+4930123456")).await;
    for _ in 0..2 {
        let (status, _) = app
            .send("/api/v1/make_call", "a@example.com", "again")
            .await;
        assert_eq!(status, 200);
    }
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"));
    assert_eq!(fake.requests().len(), 2);
    app.stop().await;
}
db_test!(without_a_window_repeats_are_delivered);
