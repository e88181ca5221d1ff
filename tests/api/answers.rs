//! Call answered or not: Twilio's signed status callback against a fake Twilio on loopback,
//! Asterisk's Stasis events against a fake ARI, and a route step that requires an answer.

use std::time::Duration;

use oncall_relay::cloud_api::hooks::twilio::signature;
use oncall_relay::config::{BackendSettings, RouteSettings, Settings};
use serde_json::json;

use crate::db_test;
use crate::helpers::*;

const TOKEN_TW: &str = "tw-t0ken";
const PUBLIC: &str = "https://relay.example.com";

/// Calls go to Twilio (`tw`, answer required within `wait`), then to the `chat` webhook.
fn call_then_chat(db: &TestDb, twilio: &Fake, chat: &Fake, wait: Duration) -> Settings {
    let mut s = settings(db);
    s.app.hostname = PUBLIC.into();
    s.app.path_prefix = "/oncall".into();
    let tw = BackendSettings::Twilio(twilio_at(&twilio.url, TOKEN_TW));
    answer_then_chat(&mut s, "tw", tw, chat, wait);
    s
}

/// Calls go to `backend` (named `name`, answer required within `wait`), then to the `chat`
/// webhook.
fn answer_then_chat(
    s: &mut Settings,
    name: &str,
    backend: BackendSettings,
    chat: &Fake,
    wait: Duration,
) {
    s.plugin.backends.insert(name.into(), backend);
    add_webhook(s, "chat", &chat.url);
    let answered = RouteSettings {
        backend: name.into(),
        require_answer: true,
        answer_timeout: Some(wait),
        ..RouteSettings::default()
    };
    let chat = RouteSettings {
        backend: "chat".into(),
        ..RouteSettings::default()
    };
    s.plugin.routes.insert("call".into(), vec![answered, chat]);
}

/// Twilio and the chat behind it, and an app with Alice calling through them: see
/// [`call_then_chat`].
async fn start_call_then_chat(
    db: &TestDb,
    wait: Duration,
    change: fn(&mut Settings),
) -> (Fake, Fake, TestApp) {
    let twilio = Fake::answering(Reply::Json(201, r#"{"sid": "CA0123"}"#)).await;
    let chat = Fake::start().await;
    let mut s = call_then_chat(db, &twilio, &chat, wait);
    change(&mut s);
    let app = TestApp::spawn_with_alice(s).await;
    (twilio, chat, app)
}

/// The form of a request Twilio received.
fn form(r: &Recorded) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&r.body).expect("form body")
}

/// Waits until notification `n` of `app` has `status`; returns it.
async fn wait_status(app: &TestApp, index: usize, status: &str) -> NotificationRecord {
    wait_for(Duration::from_secs(10), || async {
        let mut events = app.events().await;
        events.reverse();
        events.get(index).filter(|e| e.status == status).cloned()
    })
    .await
}

/// The status callback URL of the `index`th call Twilio received.
fn callback_url(twilio: &Fake, index: usize) -> String {
    let calls = twilio.requests();
    let fields = form(&calls[index]);
    let get = |name: &str| -> Vec<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("StatusCallbackEvent"), ["answered", "completed"]);
    assert_eq!(get("StatusCallbackMethod"), ["POST"]);
    let url = get("StatusCallback");
    assert_eq!(url.len(), 1, "{fields:?}");
    url[0].to_string()
}

/// Posts Twilio's status callback for `url` (the public URL Twilio was given) to `app`,
/// signed with `token`.
async fn post_status(
    app: &TestApp,
    url: &str,
    status: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let params: Vec<(String, String)> = [
        ("CallSid", "CA0123"),
        ("AccountSid", "AC0123456789abcdef"),
        ("CallStatus", status),
        ("To", "+4930123456"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = signature(token, url, &params);
    let path = url.strip_prefix(PUBLIC).expect("public URL");
    json_of(
        app.client
            .post(app.url(path))
            .header("X-Twilio-Signature", sig)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&params).expect("form"))
            .send()
            .await
            .expect("callback"),
    )
    .await
}

async fn call_not_answered_moves_on_and_answered_finishes(db: TestDb) {
    let (twilio, chat, app) = start_call_then_chat(&db, Duration::from_secs(60), |_| {}).await;

    app.call_alice("db-1 down").await;
    let waiting = wait_status(&app, 0, "awaiting_answer").await;
    assert_eq!(waiting.answer.as_deref(), Some("awaiting"));
    let url = callback_url(&twilio, 0);
    assert_eq!(
        url,
        format!(
            "{PUBLIC}/oncall/hooks/twilio/tw/status?n={}&a=1",
            waiting.id
        )
    );

    // A forged or misdirected status changes nothing.
    let (status, body) = post_status(&app, &url, "completed", "not-the-token").await;
    assert_eq!(
        (status, body),
        (403, json!({"detail": "Invalid signature."}))
    );
    let (status, body) =
        post_status(&app, &url.replace("/tw/", "/chat/"), "completed", TOKEN_TW).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.events().await[0].status, "awaiting_answer");
    assert!(chat.requests().is_empty());

    // Ringing is not an answer yet; no-answer moves on to the chat.
    let (status, _) = post_status(&app, &url, "ringing", TOKEN_TW).await;
    assert_eq!(status, 200);
    let (status, body) = post_status(&app, &url, "no-answer", TOKEN_TW).await;
    assert_eq!((status, body), (200, json!({})));
    let moved = wait_status(&app, 0, "delivered").await;
    assert_eq!(moved.backend.as_deref(), Some("chat"), "{moved:?}");
    assert_eq!(moved.answer.as_deref(), Some("no-answer"));
    assert_eq!(
        outcomes(&moved),
        [
            ("tw", "awaiting_answer"),
            ("tw", "fallback"),
            ("chat", "delivered")
        ]
    );
    assert!(attempt_error(&moved, 1).contains("no-answer"), "{moved:?}");
    assert_eq!(chat.requests().len(), 1);

    // Answered: the call itself is the delivery, the chat hears nothing.
    app.call_alice("db-2 down").await;
    wait_status(&app, 1, "awaiting_answer").await;
    let url = callback_url(&twilio, 1);
    let (status, _) = post_status(&app, &url, "in-progress", TOKEN_TW).await;
    assert_eq!(status, 200);
    let answered = wait_status(&app, 1, "delivered").await;
    assert_eq!(answered.backend.as_deref(), Some("tw"));
    assert_eq!(answered.answer.as_deref(), Some("answered"));
    // The final status that follows is recorded and moves nothing.
    let (status, _) = post_status(&app, &url, "completed", TOKEN_TW).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chat.requests().len(), 1);
    assert_eq!(twilio.requests().len(), 2);
    app.stop().await;

    let listed = relay_json(&db, &["events", "list", "--json", "--kind", "call"]);
    assert_eq!(listed[0]["answer"], "answered", "{listed}");
    assert_eq!(listed[1]["answer"], "no-answer", "{listed}");
}
db_test!(call_not_answered_moves_on_and_answered_finishes);

async fn missing_call_status_times_out_to_the_next_step(db: TestDb) {
    let (twilio, chat, app) = start_call_then_chat(&db, Duration::from_millis(500), |_| {}).await;
    app.call_alice("db-1 down").await;
    let moved = wait_status(&app, 0, "delivered").await;
    assert_eq!(moved.backend.as_deref(), Some("chat"), "{moved:?}");
    assert_eq!(moved.answer.as_deref(), Some("no-status"));
    assert_eq!(chat.requests().len(), 1);
    assert_eq!(twilio.requests().len(), 1);
    app.stop().await;
}
db_test!(missing_call_status_times_out_to_the_next_step);

async fn a_call_status_is_recorded_without_require_answer(db: TestDb) {
    let without_require_answer = |s: &mut Settings| {
        if let Some(steps) = s.plugin.routes.get_mut("call") {
            steps[0].require_answer = false;
        }
    };
    let (twilio, chat, app) =
        start_call_then_chat(&db, Duration::from_secs(60), without_require_answer).await;
    app.call_alice("db-1 down").await;
    let delivered = wait_status(&app, 0, "delivered").await;
    assert_eq!(delivered.answer, None);
    let url = callback_url(&twilio, 0);
    let (status, _) = post_status(&app, &url, "busy", TOKEN_TW).await;
    assert_eq!(status, 200);
    let busy = wait_for(Duration::from_secs(5), || async {
        app.events()
            .await
            .into_iter()
            .find(|e| e.answer.as_deref() == Some("busy"))
    })
    .await;
    assert_eq!(busy.status, "delivered");
    assert!(chat.requests().is_empty());
    app.stop().await;
}
db_test!(a_call_status_is_recorded_without_require_answer);

/// Calls go to Asterisk (`pbx`, answer required), then to the `chat` webhook.
fn asterisk_then_chat(db: &TestDb, pbx: &FakeAsterisk, chat: &Fake) -> Settings {
    let mut s = settings(db);
    let pbx = BackendSettings::Sip(pbx.backend());
    answer_then_chat(&mut s, "pbx", pbx, chat, Duration::from_secs(60));
    s
}

async fn asterisk_events_tell_answered_from_busy(db: TestDb) {
    let pbx = FakeAsterisk::start().await;
    let chat = Fake::start().await;
    // No `app.hostname`: Asterisk's events need no public URL.
    let app = TestApp::spawn_with_alice(asterisk_then_chat(&db, &pbx, &chat)).await;
    pbx.wait_listening("oncall-relay").await;

    // Picked up: recorded as answered, and handed to the dialplan that says the message.
    app.call_alice("db-1 down").await;
    let waiting = wait_status(&app, 0, "awaiting_answer").await;
    let channel = format!("oncall-{}-1", waiting.id);
    let originate = pbx.wait_request("/ari/channels").await;
    assert_eq!(originate.param("app"), Some("oncall-relay"));
    assert_eq!(originate.param("channelId"), Some(channel.as_str()));
    assert_eq!(originate.param("context"), None, "{originate:?}");
    pbx.stasis_start(&channel, &[]);
    let answered = wait_status(&app, 0, "delivered").await;
    assert_eq!(
        (answered.backend.as_deref(), answered.answer.as_deref()),
        (Some("pbx"), Some("answered"))
    );
    let handed = pbx
        .wait_request(&format!("/ari/channels/{channel}/continue"))
        .await;
    assert_eq!(
        (
            handed.param("context"),
            handed.param("extension"),
            handed.param("priority")
        ),
        (Some("oncall"), Some("oncall"), Some("1"))
    );
    // The hang-up at the end of the call does not undo the answer.
    pbx.destroyed(&channel, 16);

    // Busy: the step fails and the chat takes over.
    app.call_alice("db-2 down").await;
    let waiting = wait_status(&app, 1, "awaiting_answer").await;
    pbx.destroyed(&format!("oncall-{}-1", waiting.id), 17);
    let moved = wait_status(&app, 1, "delivered").await;
    assert_eq!(
        (moved.backend.as_deref(), moved.answer.as_deref()),
        (Some("chat"), Some("busy")),
        "{moved:?}"
    );
    assert_eq!(chat.requests().len(), 1);
    let first = app.events().await.into_iter().find(|e| e.id == answered.id);
    assert_eq!(first.and_then(|e| e.answer), Some("answered".to_string()));
    app.stop().await;
}
db_test!(asterisk_events_tell_answered_from_busy);
