//! Asterisk: a key pressed during a call comes back through the Stasis app's events (handed
//! back by the dialplan, or as DTMF while the call waits in the app), acts on the alert group
//! the call was about, and the answer is left for the dialplan to say.

use oncall_relay::config::{BackendSettings, SipSettings};
use serde_json::json;

use super::*;
use crate::db_test;

async fn asterisk_call_keys_act_on_the_page(db: TestDb) {
    let oncall = Fake::start().await;
    let pbx = FakeAsterisk::start().await;
    let mut s = ack_settings(&db, &oncall);
    s.plugin.backends.insert(
        "pbx".into(),
        BackendSettings::Sip(SipSettings {
            replies: true,
            ..pbx.backend()
        }),
    );
    s.plugin.backend = "pbx".into();
    let app = TestApp::spawn_with_alice(s).await;
    pbx.wait_listening("oncall-relay").await;
    paged(&app, GROUP, "Disk full").await;
    paged(&app, OTHER, "CPU high").await;

    app.call_alice("You are invited to check an Alert Group from Grafana OnCall. Alert via Prom with title Disk full triggered 1 times").await;
    pbx.wait_request("/ari/channels").await;
    let id = app.events().await[0].id;
    let channel = format!("oncall-{id}-1");
    pbx.stasis_start(&channel, &[]);
    pbx.wait_request(&format!("/ari/channels/{channel}/continue"))
        .await;

    // A key that is not in the menu changes nothing; 2 resolves the group the call was about.
    pbx.stasis_start(&channel, &["key", "9"]);
    let not_a_choice = pbx
        .wait_request(&format!("/ari/channels/{channel}/variable"))
        .await;
    assert_eq!(
        (not_a_choice.param("variable"), not_a_choice.param("value")),
        (Some("ONCALL_REPLY"), Some("That is not a choice. Goodbye."))
    );
    pbx.stasis_start(&channel, &["key", "2"]);
    let said = pbx.wait_nth_request("/variable", 1).await;
    assert_eq!(said.param("value"), Some("Disk full resolved."));
    assert_eq!(
        acted(&oncall),
        [format!("/api/v1/alert_groups/{GROUP}/resolve")]
    );
    // After each key the call goes on at the dialplan's next priority.
    let requests = pbx.requests();
    let last = requests.last().expect("requests");
    assert_eq!(
        (last.path.as_str(), last.query.is_empty()),
        (format!("/ari/channels/{channel}/continue").as_str(), true)
    );
    let log = actions(&app).await;
    assert_eq!(log[0].channel, "voice:pbx");
    assert_eq!(json!(log[0].outcome), json!("done"));

    // Or the key comes on the event stream, while the call waits in the app for it. A key
    // pressed elsewhere (the dialplan's own Read) is not acted on.
    pbx.dtmf(&channel, "1");
    pbx.stasis_start(&channel, &["keys"]);
    pbx.dtmf(&channel, "1");
    let said = pbx.wait_nth_request("/variable", 2).await;
    assert!(
        said.param("value")
            .is_some_and(|v| v.contains("acknowledge")),
        "{said:?}"
    );
    // The key pressed outside the wait acted on nothing, even a while later.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(acted(&oncall).len(), 2, "{:?}", acted(&oncall));
    let replies = pbx
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/variable"))
        .count();
    assert_eq!(replies, 3);
    assert_eq!(
        acted(&oncall)[1],
        format!("/api/v1/alert_groups/{GROUP}/acknowledge")
    );
    app.stop().await;
}
db_test!(asterisk_call_keys_act_on_the_page);
