//! The acknowledge loop: OnCall's webhooks, replies and buttons, and the actions sent to a
//! fake OnCall public API. Shared set-up here; one file per channel.

mod asterisk;
mod chat;
mod incidents;
mod replies;
mod twilio;

use oncall_relay::ack::registry;
use oncall_relay::config::{BackendSettings, ReplySettings, Secret, Settings};
use serde_json::{Value, json};

use crate::helpers::*;

pub(super) const GROUP: &str = "IABCDEFGH1234";
pub(super) const OTHER: &str = "IZYXWVUTS9876";
pub(super) const WEBHOOK_TOKEN: &str = "webhook-secret";
pub(super) const REPLY_SECRET: &str = "gateway-secret";
pub(super) const ALICE_PHONE: &str = "+4930123456";

/// Settings with OnCall's API at `oncall` and a gateway `gw` whose replies are accepted.
pub(super) fn ack_settings(db: &TestDb, oncall: &Fake) -> Settings {
    let mut s = settings(db);
    s.grafana.oncall.url = oncall.url.trim_end_matches("/hook").to_string();
    s.grafana.oncall.header_token = Secret("relay-api-token".into());
    s.grafana.oncall.webhook_token = Secret(WEBHOOK_TOKEN.into());
    add_webhook(&mut s, "gw", &oncall.url);
    if let Some(BackendSettings::Webhook(w)) = s.plugin.backends.get_mut("gw") {
        w.replies = Some(ReplySettings {
            secret: Secret(REPLY_SECRET.into()),
            from_field: "from".into(),
            text_field: "text".into(),
            answer_by_sms: false,
        });
    }
    s
}

/// The relay's public URL in the tests of links it sends.
pub(super) const PUBLIC: &str = "https://relay.example.org";

/// [`ack_settings`] with [`PUBLIC`] as the public URL, so pages carry links.
pub(super) fn linked_ack_settings(db: &TestDb, oncall: &Fake) -> Settings {
    let mut s = ack_settings(db, oncall);
    s.app.hostname = PUBLIC.into();
    s
}

/// A database, a fake OnCall and, with the usual settings, the app with Alice.
pub(super) async fn start(db: Db) -> (TestDb, Fake, TestApp) {
    let db = TestDb::new(db).await;
    let oncall = Fake::start().await;
    let app = TestApp::spawn_with_alice(ack_settings(&db, &oncall)).await;
    (db, oncall, app)
}

/// OnCall's SMS about alert group `#n` with `title`, accepted for Alice.
pub(super) async fn sms_about(app: &TestApp, n: u32, title: &str) {
    let text = format!(
        "Grafana OnCall: Alert group #{n}\"{title}\" from stack: \"acme\", integration: Prom, alerts registered: 1."
    );
    app.sms_alice(&text).await;
}

pub(super) async fn oncall_webhook(app: &TestApp, token: &str, body: Value) -> u16 {
    status_of(
        app.client
            .post(app.url("/hooks/oncall"))
            .header("Authorization", token)
            .json(&body),
    )
    .await
}

pub(super) async fn paged(app: &TestApp, id: &str, title: &str) {
    let body = json!({"alert_group_id": id, "email": "alice@example.com", "title": title});
    assert_eq!(oncall_webhook(app, WEBHOOK_TOKEN, body).await, 200);
}

/// A gateway's reply post to `path`.
pub(super) fn reply_post(
    app: &TestApp,
    path: &str,
    from: &str,
    text: &str,
) -> reqwest::RequestBuilder {
    let body = serde_urlencoded::to_string([("from", from), ("text", text)]).expect("form");
    app.client
        .post(app.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
}

/// Posts a reply from `from` through `gw`; returns the status and the answer.
pub(super) async fn reply(app: &TestApp, from: &str, text: &str) -> (u16, Value) {
    let path = format!("/hooks/sms/gw?secret={REPLY_SECRET}");
    json_of(
        reply_post(app, &path, from, text)
            .send()
            .await
            .expect("sent"),
    )
    .await
}

pub(super) async fn actions(app: &TestApp) -> Vec<registry::ActionRecord> {
    registry::actions(&app.store, None, None, 100)
        .await
        .expect("actions")
}

/// Spawns the app delivering through `backend` (as `name`), with Alice reachable there by
/// `contact`, paged for [`GROUP`] and sent OnCall's SMS about #17; the app and that SMS's id.
pub(super) async fn paged_through(
    mut s: Settings,
    name: &str,
    backend: BackendSettings,
    contact: (&str, &str),
) -> (TestApp, i64) {
    s.plugin.backends.insert(name.into(), backend);
    s.plugin.backend = name.into();
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[contact])
        .await;
    paged(&app, GROUP, "Disk full").await;
    sms_about(&app, 17, "Disk full").await;
    let id = app.events().await[0].id;
    (app, id)
}

/// The alert group actions OnCall's API received, in order.
pub(super) fn acted(oncall: &Fake) -> Vec<String> {
    oncall
        .requests()
        .iter()
        .map(|r| r.uri.path().to_string())
        .filter(|p| p.starts_with("/api/v1/alert_groups/"))
        .collect()
}
