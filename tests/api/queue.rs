//! The durable queue: retries, permanent failures, crash recovery, several instances.

use std::collections::HashMap;
use std::time::Duration;

use crate::db_test;
use crate::helpers::*;

async fn transient_failures_are_retried_with_every_attempt_recorded(db: TestDb) {
    let fake = Fake::start().await;
    fake.script(
        &[Reply::Status(500), Reply::Status(503), Reply::Hang],
        Reply::Status(200),
    );
    let mut s = webhook_settings(&db, &fake.url);
    if let Some(oncall_relay::config::BackendSettings::Webhook(w)) =
        s.plugin.backends.get_mut("hook")
    {
        w.timeout = Duration::from_millis(300);
    }
    let (app, events) = deliver_to_alice(s, "/api/v1/make_call", "retry me").await;
    let e = &events[0];
    assert_eq!(e.status, "delivered", "{e:?}");
    assert_eq!(e.attempts, 4);
    let outcomes: Vec<&str> = e.attempt_log.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "retry", "delivered"]);
    assert!(attempt_error(e, 0).contains("500"));
    assert!(
        attempt_error(e, 2).contains("timed out") || attempt_error(e, 2).contains("request failed"),
        "{:?}",
        e.attempt_log[2]
    );
    let ids: Vec<i64> = fake
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, vec![e.id; 4], "same notification id on every attempt");
    app.stop().await;
}
db_test!(transient_failures_are_retried_with_every_attempt_recorded);

async fn client_errors_fail_at_once_and_retries_stop_at_the_budget(db: TestDb) {
    let fake = Fake::start().await;
    fake.script(&[Reply::Status(404)], Reply::Status(500));
    let mut s = settings(&db);
    s.queue.max_attempts = 3;
    use_webhook(&mut s, &fake.url);
    let (app, events) = deliver_to_alice(s, "/api/v1/make_call", "first").await;
    assert_eq!(events[0].status, "failed");
    assert_eq!(events[0].attempts, 1, "a 4xx is not retried");
    assert!(
        events[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("404")
    );

    app.call_alice("second").await;
    let events = app.wait_until_settled(2).await;
    let second = events
        .iter()
        .find(|e| e.message == "second")
        .expect("second");
    assert_eq!(second.status, "failed");
    assert_eq!(second.attempts, 3);
    assert_eq!(second.attempt_log.len(), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.requests().len(), 4, "nothing after giving up");
    app.stop().await;
}
db_test!(client_errors_fail_at_once_and_retries_stop_at_the_budget);

async fn a_notification_survives_the_process_being_killed_mid_delivery(db: TestDb) {
    let fake = Fake::answering(Reply::Hang).await;

    let mut relay = RelayProcess::spawn(&db, &fake.url, "").await;
    let addr = relay.addr.clone();

    add_alice_to(&db).await;
    assert_eq!(
        status_of(
            reqwest::Client::new()
                .post(format!("http://{addr}/api/v1/make_call"))
                .header("Authorization", TOKEN)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("email=alice%40example.com&message=survive")
        )
        .await,
        200
    );

    // The delivery is in flight (the fake holds it): kill the process now.
    wait_for(Duration::from_secs(10), || async {
        (!fake.requests().is_empty()).then_some(())
    })
    .await;
    relay.kill().await;

    fake.script(&[], Reply::Status(200));
    let s = webhook_settings(&db, &fake.url);
    let app = TestApp::spawn(s).await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered");
    assert_eq!(
        events[0].attempts, 2,
        "claimed again after the lease ran out"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].json()["message"], "survive");
    app.stop().await;
}
db_test!(a_notification_survives_the_process_being_killed_mid_delivery);

async fn calls_accepted_while_slots_are_free_go_straight_to_delivery(db: TestDb) {
    let fake = Fake::start().await;
    let app = TestApp::spawn_with_alice(webhook_settings(&db, &fake.url)).await;
    for i in 0..20 {
        app.call_alice(&format!("m{i}")).await;
    }
    let events = app.wait_until_settled(20).await;
    assert!(
        events
            .iter()
            .all(|e| e.status == "delivered" && e.attempts == 1),
        "{events:?}"
    );
    // Each was claimed in the commit that accepted it, none from the table: the delivery
    // loop's own claims (every poll interval) leave slots free for them.
    let text = app.plain_get_text("/metrics").await;
    assert!(
        text.contains("oncall_relay_notifications_claimed_total{via=\"acceptance\"} 20"),
        "{text}"
    );
    assert!(!text.contains("via=\"queue\""), "{text}");
    app.stop().await;
}
db_test!(calls_accepted_while_slots_are_free_go_straight_to_delivery);

async fn graceful_stop_drains_accepted_notifications(db: TestDb) {
    let fake = Fake::start().await;
    let s = webhook_settings(&db, &fake.url);
    let app = TestApp::spawn_with_alice(s.clone()).await;
    for i in 0..20 {
        app.call_alice(&format!("m{i}")).await;
    }
    app.stop().await;
    let app = TestApp::spawn(s).await;
    let events = app.wait_until_settled(20).await;
    assert!(events.iter().all(|e| e.status == "delivered"));
    let mut ids: Vec<i64> = fake
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_i64().expect("id"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    app.stop().await;
}
db_test!(graceful_stop_drains_accepted_notifications);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_each_notification_exactly_once_on_postgres() {
    let Some(db) = postgres_test_db().await else {
        return;
    };
    let fake = Fake::start().await;
    let mut s = webhook_settings(&db, &fake.url);
    s.queue.concurrency = 8;
    s.queue.batch_size = 8;
    let a = TestApp::spawn(s.clone()).await;
    let b = TestApp::spawn(s).await;
    a.add_user("alice@example.com", Some("+4930123456")).await;

    let total = 400;
    call_alice_at_once(&[&a, &b], total, |i| format!("n{i}")).await;
    let events = a.wait_until_settled(total).await;
    assert_eq!(events.len(), total);
    assert!(
        events
            .iter()
            .all(|e| e.status == "delivered" && e.attempts == 1)
    );
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for r in fake.requests() {
        *seen
            .entry(r.json()["id"].as_i64().expect("id"))
            .or_default() += 1;
    }
    assert_eq!(seen.len(), total, "every notification delivered");
    assert!(seen.values().all(|&n| n == 1), "none delivered twice");
    a.stop().await;
    b.stop().await;
}

async fn purge_removes_only_finished_notifications(db: TestDb) {
    let fake = Fake::start().await;
    let mut s = webhook_settings(&db, &fake.url);
    let app = TestApp::spawn_with_alice(s.clone()).await;
    app.call_alice("one").await;
    app.call_alice("two").await;
    app.wait_until_settled(2).await;
    app.stop().await;

    s.queue.deliver = false;
    let app = TestApp::spawn(s).await;
    app.call_alice("still queued").await;
    let now = oncall_relay::store::now_ms();
    let deleted = oncall_relay::notify::purge_finished(&app.store, now - 60_000)
        .await
        .expect("purge");
    assert_eq!(deleted, 0, "nothing finished a minute ago");
    let deleted = oncall_relay::notify::purge_finished(&app.store, now + 1)
        .await
        .expect("purge");
    assert_eq!(deleted, 2);
    let left = app.events().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].status, "queued");
    app.stop().await;
}
db_test!(purge_removes_only_finished_notifications);

async fn shutdown_ends_within_the_grace_period_despite_a_hanging_backend(db: TestDb) {
    let fake = Fake::answering(Reply::Hang).await;
    let mut s = webhook_settings(&db, &fake.url);
    if let Some(oncall_relay::config::BackendSettings::Webhook(w)) =
        s.plugin.backends.get_mut("hook")
    {
        w.timeout = Duration::from_secs(20);
    }
    s.queue.lease = Duration::from_secs(30);
    s.app.shutdown_grace = Duration::from_millis(500);
    let app = TestApp::spawn_with_alice(s).await;
    app.call_alice("stuck").await;
    wait_for(Duration::from_secs(10), || async {
        (!fake.requests().is_empty()).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        started.elapsed()
    );
}
db_test!(shutdown_ends_within_the_grace_period_despite_a_hanging_backend);
