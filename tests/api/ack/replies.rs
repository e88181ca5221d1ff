//! SMS replies through a generic gateway, OnCall's webhooks and one-click links.

use crate::db_test;
use crate::helpers::*;
use oncall_relay::config::Secret;
use serde_json::{Value, json};

use super::*;

async fn oncall_webhook_needs_its_token(db: Db) {
    let (_db, _oncall, app) = start(db).await;
    let body = json!({"alert_group_id": GROUP, "email": "alice@example.com"});
    assert_eq!(oncall_webhook(&app, "wrong", body.clone()).await, 403);
    assert_eq!(
        oncall_webhook(&app, crate::helpers::TOKEN, body.clone()).await,
        403
    );
    assert_eq!(
        oncall_webhook(&app, &format!("Bearer {WEBHOOK_TOKEN}"), body).await,
        200
    );
    let bad = json!({"alert_group_id": "../admin", "email": "alice@example.com"});
    let (status, answer) = json_of(
        app.client
            .post(app.url("/hooks/oncall"))
            .header("Authorization", WEBHOOK_TOKEN)
            .json(&bad)
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(str_of(&answer["detail"]).contains("alert_group_id"));
    app.stop().await;
}
db_test!(oncall_webhook_needs_its_token);

async fn sms_reply_acknowledges_the_latest_page(db: TestDb) {
    let oncall = Fake::start().await;
    oncall.script(
        &[Reply::Status(200), Reply::Json(201, "{}")],
        Reply::Status(200),
    );
    let app = TestApp::spawn_with_alice(ack_settings(&db, &oncall)).await;
    paged(&app, OTHER, "Old alert").await;
    paged(&app, GROUP, "Disk full").await;
    let (status, answer) = reply(&app, "+49 30 123456", "ack").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reply"], "\"Disk full\" acknowledged.");
    let calls = oncall.requests();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[0].uri.path(),
        format!("/api/v1/alert_groups/{GROUP}/acknowledge")
    );
    assert_eq!(calls[0].headers["authorization"], "relay-api-token");
    assert_eq!(calls[1].uri.path(), "/api/v1/resolution_notes/");
    let note = calls[1].json();
    assert_eq!(note["alert_group_id"], GROUP);
    assert!(
        note["text"]
            .as_str()
            .is_some_and(|t| t.contains("alice@example.com") && t.contains("SMS"))
    );
    let log = actions(&app).await;
    assert_eq!(log[0].outcome, "done");
    assert_eq!(log[0].alert_group_id.as_deref(), Some(GROUP));
    assert_eq!(log[0].email, "alice@example.com");
    // Acknowledged now: a second "ack" has nothing open to act on but the older page.
    let (_, again) = reply(&app, ALICE_PHONE, "2").await;
    assert_eq!(again["reply"], "\"Old alert\" resolved.");
    app.stop().await;
    // The events log answers "what did Alice do from her phone?".
    let log = relay_json(
        &db,
        &["events", "actions", "--json", "--user", "ALICE@example.com"],
    );
    let outcomes: Vec<(&str, &str)> = log
        .as_array()
        .expect("list")
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap_or(""),
                a["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(outcomes, [("resolve", "done"), ("acknowledge", "done")]);
}
db_test!(sms_reply_acknowledges_the_latest_page);

async fn silence_sends_the_delay_in_seconds(db: Db) {
    let (_db, oncall, app) = start(db).await;
    paged(&app, GROUP, "Disk full").await;
    let (_, answer) = reply(&app, ALICE_PHONE, "s 120").await;
    assert_eq!(answer["reply"], "\"Disk full\" silenced for 2 h.");
    let calls = oncall.requests();
    assert_eq!(
        calls[0].uri.path(),
        format!("/api/v1/alert_groups/{GROUP}/silence")
    );
    assert_eq!(calls[0].json(), json!({"delay": 7200}));
    app.stop().await;
}
db_test!(silence_sends_the_delay_in_seconds);

async fn strangers_and_forged_replies_do_nothing(db: Db) {
    let (_db, oncall, app) = start(db).await;
    paged(&app, GROUP, "Disk full").await;
    let (status, answer) = reply(&app, "+4930999999", "ack").await;
    assert_eq!((status, answer["reply"].clone()), (200, Value::Null));
    let forged = reply_post(&app, "/hooks/sms/gw?secret=guess", ALICE_PHONE, "ack");
    assert_eq!(status_of(forged).await, 403);
    let path = format!("/hooks/sms/hook?secret={REPLY_SECRET}");
    let unknown_gateway = reply_post(&app, &path, ALICE_PHONE, "ack");
    assert_eq!(status_of(unknown_gateway).await, 403);
    assert!(oncall.requests().is_empty(), "OnCall must not be called");
    assert_eq!(actions(&app).await[0].outcome, "unknown-sender");
    app.stop().await;
}
db_test!(strangers_and_forged_replies_do_nothing);

async fn oncall_refusals_are_told_to_the_person(db: TestDb) {
    let oncall = Fake::start().await;
    oncall.script(
        &[
            Reply::Json(
                400,
                r#"{"detail": "Can't acknowledge an acknowledged alert group"}"#,
            ),
            Reply::Json(404, r#"{"detail": "Not found."}"#),
            Reply::RetryAfter(429, "30", r#"{"detail": "Request was throttled."}"#),
        ],
        Reply::Status(200),
    );
    let app = TestApp::spawn_with_alice(ack_settings(&db, &oncall)).await;
    paged(&app, GROUP, "Disk full").await;
    let (_, refused) = reply(&app, ALICE_PHONE, "a").await;
    assert_eq!(
        refused["reply"],
        "\"Disk full\": Can't acknowledge an acknowledged alert group"
    );
    let (_, missing) = reply(&app, ALICE_PHONE, "a").await;
    assert_eq!(missing["reply"], "\"Disk full\" was not found in OnCall.");
    let (_, busy) = reply(&app, ALICE_PHONE, "a").await;
    assert_eq!(
        busy["reply"],
        "OnCall is busy: try \"Disk full\" again in 30 s."
    );
    let outcomes: Vec<String> = actions(&app).await.into_iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, ["throttled", "not-found", "refused"]);
    // Once OnCall's status-change webhook says who acted, the person is told that instead.
    let change = json!({
        "event": {"type": "resolve"},
        "user": {"username": "bob", "email": "bob@example.com"},
        "alert_group": {"id": GROUP, "state": "resolved"},
        "alert_group_id": GROUP
    });
    assert_eq!(oncall_webhook(&app, WEBHOOK_TOKEN, change).await, 200);
    let (_, none) = reply(&app, ALICE_PHONE, "a").await;
    assert_eq!(none["reply"], "No open alert for you.");
    app.stop().await;
}
db_test!(oncall_refusals_are_told_to_the_person);

async fn a_number_picks_the_page_named_in_the_sms(db: Db) {
    let (_db, oncall, app) = start(db).await;
    paged(&app, GROUP, "Disk full").await;
    paged(&app, OTHER, "CPU high").await;
    sms_about(&app, 17, "Disk full").await;
    sms_about(&app, 18, "CPU high").await;
    let (_, answer) = reply(&app, ALICE_PHONE, "r 17").await;
    assert_eq!(answer["reply"], "#17 resolved.");
    assert_eq!(
        oncall.requests()[0].uri.path(),
        format!("/api/v1/alert_groups/{GROUP}/resolve")
    );
    let (_, unknown) = reply(&app, ALICE_PHONE, "a 99").await;
    assert_eq!(unknown["reply"], "No open alert #99 for you. Open: #18.");
    let (_, help) = reply(&app, ALICE_PHONE, "what?").await;
    assert!(str_of(&help["reply"]).starts_with("Reply 1 or a"));
    app.stop().await;
}
db_test!(a_number_picks_the_page_named_in_the_sms);

async fn a_personal_token_acts_as_the_person_and_is_never_shown(db: TestDb) {
    let oncall = Fake::start().await;
    let mut s = ack_settings(&db, &oncall);
    s.app.admin_token = oncall_relay::config::Tokens(vec![Secret("admin".into())]);
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("oncall_token", "alice-own-token")])
        .await;
    paged(&app, GROUP, "Disk full").await;
    let (_, answer) = reply(&app, ALICE_PHONE, "1").await;
    assert_eq!(answer["reply"], "\"Disk full\" acknowledged.");
    let calls = oncall.requests();
    assert_eq!(
        calls.len(),
        1,
        "no resolution note when acting as the person"
    );
    assert_eq!(calls[0].headers["authorization"], "alice-own-token");
    let listed = app
        .get_as("admin", "/api/admin/v1/users/alice@example.com")
        .await
        .text()
        .await
        .expect("body");
    assert!(!listed.contains("alice-own-token"), "{listed}");
    assert!(listed.contains("\"oncall_token\":\"***\""), "{listed}");
    app.stop().await;
}
db_test!(a_personal_token_acts_as_the_person_and_is_never_shown);

async fn a_status_change_stops_pending_retries(db: TestDb) {
    let oncall = Fake::start().await;
    // The SMS gateway is down: Alice's SMS waits for its retry.
    let gateway = Fake::answering(Reply::Status(503)).await;
    let mut s = ack_settings(&db, &oncall);
    use_webhook(&mut s, &gateway.url);
    s.queue.retry_base = std::time::Duration::from_secs(30);
    s.queue.retry_max = std::time::Duration::from_secs(30);
    let app = TestApp::spawn_with_alice(s).await;
    paged(&app, GROUP, "Disk full").await;
    paged(&app, OTHER, "CPU high").await;
    sms_about(&app, 17, "Disk full").await;
    sms_about(&app, 18, "CPU high").await;
    // Both failed once and wait for their retry (their first outcome is recorded).
    wait_for(std::time::Duration::from_secs(10), || async {
        let events = app.events().await;
        events
            .iter()
            .all(|e| e.status == "queued" && e.attempts >= 1)
            .then_some(())
    })
    .await;
    let change = json!({
        "event": {"type": "acknowledge"},
        "user": {"username": "bob"},
        "alert_group": {"id": GROUP, "state": "acknowledged"},
        "alert_group_id": GROUP
    });
    assert_eq!(oncall_webhook(&app, WEBHOOK_TOKEN, change).await, 200);
    let events = app.events().await;
    let status = |needle: &str| {
        events
            .iter()
            .find(|e| e.message.contains(needle))
            .map(|e| (e.status.clone(), e.last_error.clone()))
            .expect("event")
    };
    assert_eq!(
        status("Disk full"),
        (
            "cancelled".to_string(),
            Some("alert group acknowledged by bob".to_string())
        )
    );
    assert_eq!(
        status("CPU high").0,
        "queued",
        "another alert group keeps going"
    );
    app.stop().await;
}
db_test!(a_status_change_stops_pending_retries);

async fn a_one_click_link_confirms_then_acts_once(db: TestDb) {
    use oncall_relay::ack::command::Action;
    use oncall_relay::ack::links::LinkKey;
    let oncall = Fake::start().await;
    let s = linked_ack_settings(&db, &oncall);
    let app = TestApp::spawn_with_alice(s).await;
    paged(&app, GROUP, "Disk full").await;
    sms_about(&app, 17, "Disk full").await;
    let id = app.events().await[0].id;
    // The key every replica shares is in the database, so a test can sign as the relay does.
    let key = LinkKey::load(&app.store).await.expect("key");
    let now = oncall_relay::store::now_ms();
    let token = key.sign(id, Action::Acknowledge, now);
    let page = app
        .client
        .get(app.url(&format!("/act/{token}")))
        .send()
        .await
        .expect("sent");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("body");
    assert!(
        html.contains("<form method=\"post\">") && html.contains("Acknowledge"),
        "{html}"
    );
    assert!(
        html.contains("&quot;Disk full&quot;"),
        "the text is escaped: {html}"
    );
    assert!(oncall.requests().is_empty(), "opening a link does nothing");
    let post = |token: String| {
        let url = app.url(&format!("/act/{token}"));
        let client = app.client.clone();
        async move { client.post(url).send().await.expect("sent") }
    };
    let done = post(token.clone()).await;
    assert_eq!(done.status().as_u16(), 200);
    let page = done.text().await.expect("body");
    assert!(page.contains("#17 acknowledged."), "{page}");
    assert_eq!(
        oncall.requests()[0].uri.path(),
        format!("/api/v1/alert_groups/{GROUP}/acknowledge")
    );
    let requests = oncall.requests().len();
    assert_eq!(
        post(token.clone()).await.status().as_u16(),
        410,
        "used once"
    );
    let mut altered = token.clone();
    altered.insert(3, 'x');
    assert_eq!(post(altered).await.status().as_u16(), 403);
    let old = key.sign(id, Action::Resolve, now - 2 * 3600 * 1000);
    assert_eq!(post(old).await.status().as_u16(), 410, "expired");
    assert_eq!(
        oncall.requests().len(),
        requests,
        "nothing more reached OnCall"
    );
    app.stop().await;
}
db_test!(a_one_click_link_confirms_then_acts_once);

async fn delivered_pages_carry_their_one_click_links(db: TestDb) {
    let oncall = Fake::start().await;
    let gateway = Fake::start().await;
    let mut s = linked_ack_settings(&db, &oncall);
    use_webhook(&mut s, &gateway.url);
    let app = TestApp::spawn_with_alice(s).await;
    paged(&app, GROUP, "Disk full").await;
    sms_about(&app, 17, "Disk full").await;
    let sent = gateway.first_json().await;
    let link = str_of(&sent["links"]["resolve"]).to_string();
    let path = link.strip_prefix(PUBLIC).expect("under the public URL");
    assert!(path.starts_with("/act/"), "{link}");
    let done = app.client.post(app.url(path)).send().await.expect("sent");
    assert_eq!(done.status().as_u16(), 200);
    assert!(done.text().await.expect("body").contains("#17 resolved."));
    assert_eq!(
        oncall.requests()[0].uri.path(),
        format!("/api/v1/alert_groups/{GROUP}/resolve")
    );
    app.stop().await;
}
db_test!(delivered_pages_carry_their_one_click_links);
