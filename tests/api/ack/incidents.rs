//! Incident details: a page linked to an alert group offers it to templates as `alert_group`,
//! read from OnCall's API.

use oncall_relay::config::BackendSettings;

use super::*;
use crate::db_test;

const GROUP_JSON: &str = r#"{"id": "IABCDEFGH1234", "title": "Disk full", "state": "acknowledged",
    "permalinks": {"web": "https://oncall.example.org/alert-groups/IABCDEFGH1234"},
    "labels": [{"key": {"name": "team", "id": "k1"}, "value": {"name": "db", "id": "v1"}}]}"#;

async fn linked_pages_carry_the_alert_groups_details(db: TestDb) {
    let oncall = Fake::answering(Reply::Json(200, GROUP_JSON)).await;
    let chat = Fake::start().await;
    let mut s = ack_settings(&db, &oncall);
    s.grafana.oncall.incident_details = true;
    add_webhook(&mut s, "chat", &chat.url);
    if let Some(BackendSettings::Webhook(w)) = s.plugin.backends.get_mut("chat") {
        w.body = Some(
            r#"{% if alert_group is defined %}{"state": {{ alert_group.state }}, "link": {{ alert_group.permalink }}, "team": {{ alert_group.labels.team }}, "id": {{ alert_group.id }}}{% else %}{"id": ""}{% endif %}"#
                .into(),
        );
    }
    s.plugin.backend = "chat".into();
    let app = TestApp::spawn_with_alice(s).await;

    // Linked by OnCall's personal-notification webhook and the title: details are there.
    paged(&app, GROUP, "Disk full").await;
    sms_about(&app, 17, "Disk full").await;
    let sent = chat.first_json().await;
    assert_eq!(
        sent,
        json!({"state": "acknowledged", "link": "https://oncall.example.org/alert-groups/IABCDEFGH1234", "team": "db", "id": GROUP}),
    );
    let read: Vec<String> = oncall
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.uri.path()))
        .collect();
    assert_eq!(read, [format!("GET /api/v1/alert_groups/{GROUP}")]);

    // Not linked to any alert group: the page goes out without them.
    sms_about(&app, 99, "Something else").await;
    let unlinked = wait_for(std::time::Duration::from_secs(10), || async {
        chat.requests().get(1).map(|r| r.json())
    })
    .await;
    assert_eq!(unlinked["id"], "", "{unlinked}");
    app.stop().await;
}
db_test!(linked_pages_carry_the_alert_groups_details);
