//! One stuck or failing backend holds up nobody else: bulkheads, a timeout moving on to the
//! next step at once, and a circuit breaker that skips a failing backend for a cool-down.

use std::time::Duration;

use oncall_relay::config::{OnTimeout, RouteSettings, Settings};

use crate::db_test;
use crate::helpers::*;

const ADMIN: &str = "admin-token-0123456789";

fn step(backend: &str) -> RouteSettings {
    RouteSettings {
        backend: backend.into(),
        ..RouteSettings::default()
    }
}

/// Declares a webhook `name` at `url` with this timeout.
fn add_webhook_timing_out(s: &mut Settings, name: &str, url: &str, timeout: Duration) {
    add_webhook(s, name, url);
    if let Some(oncall_relay::config::BackendSettings::Webhook(w)) = s.plugin.backends.get_mut(name)
    {
        w.timeout = timeout;
    }
}

async fn calls_to_a_healthy_backend_do_not_wait_behind_a_hung_one(db: TestDb) {
    let (hung, healthy) = (Fake::answering(Reply::Hang).await, Fake::start().await);
    let mut s = settings(&db);
    add_webhook_timing_out(&mut s, "sms_gw", &hung.url, Duration::from_secs(8));
    add_webhook(&mut s, "voice", &healthy.url);
    s.plugin.routes.insert("sms".into(), vec![step("sms_gw")]);
    s.plugin.routes.insert("call".into(), vec![step("voice")]);
    s.queue.concurrency = 4;
    let app = TestApp::spawn_with_alice(s).await;
    for i in 0..20 {
        app.sms_alice(&format!("sms {i}")).await;
    }
    // The hung gateway has taken all it may: its own share of the slots.
    wait_for(Duration::from_secs(5), || async {
        (hung.requests().len() >= 2).then_some(())
    })
    .await;
    app.call_alice("call").await;
    let events = wait_for(Duration::from_secs(5), || async {
        let events = app.events().await;
        events
            .iter()
            .any(|e| e.kind == "call" && e.status == "delivered")
            .then_some(events)
    })
    .await;
    // Delivered while every SMS is still stuck: no SMS attempt has even timed out yet.
    let sms_attempts: usize = events
        .iter()
        .filter(|e| e.kind == "sms")
        .map(|e| e.attempt_log.len())
        .sum();
    assert_eq!(sms_attempts, 0, "{events:?}");
    assert_eq!(
        hung.requests().len(),
        2,
        "the hung backend holds half of the 4 slots, no more"
    );
    let deferred = events
        .iter()
        .filter(|e| e.kind == "sms" && e.attempts == 0)
        .count();
    assert!(
        deferred >= 14,
        "waiting SMS are not counted as attempts: {events:?}"
    );
}
db_test!(calls_to_a_healthy_backend_do_not_wait_behind_a_hung_one);

/// Alice's SMS through `first` (the gateway `sms_gw`, which never answers and times out after
/// `timeout`), then the healthy `chat`: the app, the final events and the hung gateway.
async fn sms_past_a_hung_gateway(
    db: &TestDb,
    timeout: Duration,
    first: RouteSettings,
) -> (TestApp, Vec<NotificationRecord>, Fake) {
    let (hung, healthy) = (Fake::answering(Reply::Hang).await, Fake::start().await);
    let mut s = settings(db);
    add_webhook_timing_out(&mut s, "sms_gw", &hung.url, timeout);
    add_webhook(&mut s, "chat", &healthy.url);
    s.plugin
        .routes
        .insert("sms".into(), vec![first, step("chat")]);
    let (app, events) = deliver_to_alice(s, "/api/v1/send_sms", "disk full").await;
    (app, events, hung)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_moves_to_the_next_step_at_once() {
    let db = TestDb::new(Db::Sqlite).await;
    let (_app, events, hung) =
        sms_past_a_hung_gateway(&db, Duration::from_millis(500), step("sms_gw")).await;
    let e = &events[0];
    assert_eq!(e.status, "delivered");
    assert_eq!(
        outcomes(e),
        [("sms_gw", "fallback"), ("chat", "delivered")],
        "one timeout, then the next step, not every retry first"
    );
    let error = attempt_error(e, 0);
    assert!(error.contains("next step takes over"), "{e:?}");
    assert_eq!(hung.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_timeout_retry_keeps_retrying_the_step() {
    let db = TestDb::new(Db::Sqlite).await;
    let first = RouteSettings {
        attempts: Some(2),
        on_timeout: Some(OnTimeout::Retry),
        ..step("sms_gw")
    };
    let (_app, events, _) = sms_past_a_hung_gateway(&db, Duration::from_millis(300), first).await;
    assert_eq!(
        outcomes(&events[0]),
        [
            ("sms_gw", "retry"),
            ("sms_gw", "fallback"),
            ("chat", "delivered")
        ]
    );
}

/// Sends call number `n` (message `c<n>`) and waits until all `n` are final.
async fn call(app: &TestApp, n: usize) -> Vec<NotificationRecord> {
    app.call_alice(&format!("c{n}")).await;
    app.wait_until_settled(n).await
}

async fn a_failing_backend_is_skipped_for_a_cool_down_then_probed(db: TestDb) {
    let (flaky, healthy) = (
        Fake::answering(Reply::Status(503)).await,
        Fake::start().await,
    );
    let mut s = settings(&db);
    s.app.admin_token =
        oncall_relay::config::Tokens(vec![oncall_relay::config::Secret(ADMIN.into())]);
    add_webhook(&mut s, "voice", &flaky.url);
    add_webhook(&mut s, "sms_gw", &healthy.url);
    let first = RouteSettings {
        attempts: Some(1),
        ..step("voice")
    };
    s.plugin
        .routes
        .insert("call".into(), vec![first, step("sms_gw")]);
    s.queue.breaker_failures = 3;
    s.queue.breaker_cooldown = Duration::from_secs(2);
    let app = TestApp::spawn_with_alice(s).await;
    for n in 1..=3 {
        call(&app, n).await;
    }
    assert_eq!(flaky.requests().len(), 3);
    // Open: the next calls go straight to the next step.
    let events = call(&app, 4).await;
    assert_eq!(flaky.requests().len(), 3, "skipped while open");
    let skipped = events.iter().find(|e| e.message == "c4").expect("c4");
    assert_eq!(skipped.status, "delivered");
    assert_eq!(
        outcomes(skipped),
        [("voice", "fallback"), ("sms_gw", "delivered")]
    );
    assert!(
        attempt_error(skipped, 0).contains("circuit breaker is open"),
        "{skipped:?}"
    );

    // The admin API and /metrics show it open.
    let circuits = circuits_when(&app, "open").await;
    assert_eq!(circuits["results"][0]["backend"], "voice");
    assert_eq!(circuits["results"][0]["opens"], 1);
    let metrics = app.plain_get_text("/metrics").await;
    assert!(
        metrics.contains("oncall_relay_backend_circuit_state{backend=\"voice\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("oncall_relay_backend_circuit_opens_total{backend=\"voice\"} 1"),
        "{metrics}"
    );

    // After the cool-down, one probe; it succeeds and closes the breaker.
    flaky.script(&[], Reply::Status(200));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let events = call(&app, 5).await;
    let probe = events.iter().find(|e| e.message == "c5").expect("c5");
    assert_eq!(outcomes(probe), [("voice", "delivered")]);
    assert_eq!(flaky.requests().len(), 4);
    circuits_when(&app, "closed").await;

    // Every change stays on record: opened (and why), half-open, closed.
    let (status, body) = app
        .get_json_as(ADMIN, "/api/admin/v1/circuits/changes?backend=voice")
        .await;
    assert_eq!(status, 200, "{body}");
    let states: Vec<&str> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|c| c["state"].as_str())
        .collect();
    assert_eq!(states, ["closed", "half_open", "open"], "{body}");
    assert!(
        str_of(&body["results"][2]["error"]).contains("503"),
        "{body}"
    );
    let bad_limit = app
        .client
        .get(app.url("/api/admin/v1/circuits/changes?limit=x"))
        .bearer_auth(ADMIN);
    assert_eq!(status_of(bad_limit).await, 400);
    app.stop().await;
    let listed = relay_json(&db, &["events", "circuits", "--json", "--backend", "voice"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    assert_eq!(listed[2]["state"], "open");
}
db_test!(a_failing_backend_is_skipped_for_a_cool_down_then_probed);

async fn notify_test_shows_the_recorded_circuit_breakers(db: TestDb) {
    users_add(&db, "ann@example.com", &["--phone", "+4930123456"]);
    // As a server records an open breaker.
    let store = oncall_relay::store::Store::connect(&db.settings)
        .await
        .expect("connect");
    sqlx::query(
        "INSERT INTO backend_circuits (backend, state, failures, opens, open_until, last_error, changed_at) \
         VALUES ('sms_gw', 'open', 5, 1, 4102444800000, 'HTTP 503', 1)",
    )
    .execute(store.pool())
    .await
    .expect("insert");
    store.close().await;
    let text = ok(&relay(&db, &notify_test_sms("ann@example.com")));
    assert!(
        text.contains("circuit breaker sms_gw: open until 2100-01-01")
            && text.contains("after 5 failures in a row (HTTP 503)"),
        "{text}"
    );
}
db_test!(notify_test_shows_the_recorded_circuit_breakers);

/// The admin API's circuit breakers, once the first one is in `state`.
async fn circuits_when(app: &TestApp, state: &str) -> serde_json::Value {
    wait_for(Duration::from_secs(5), || async {
        let (status, body) = app.get_json_as(ADMIN, "/api/admin/v1/circuits").await;
        assert_eq!(status, 200, "{body}");
        (body["results"][0]["state"] == state).then_some(body)
    })
    .await
}
