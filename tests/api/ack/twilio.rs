//! Twilio: SMS replies to the backend's number and key presses during a call, both signed by
//! Twilio with the backend's auth token.

use std::time::Duration;

use oncall_relay::cloud_api::hooks::twilio::signature;
use oncall_relay::config::{BackendSettings, TwilioSettings};
use serde_json::json;

use super::*;
use crate::db_test;

const AUTH_TOKEN: &str = "tw-t0ken";
const PUBLIC: &str = "https://relay.example.com";

/// Posts `params` to the public `url` as Twilio does, signed with `token`; status and body.
async fn post_signed(
    app: &TestApp,
    url: &str,
    params: &[(&str, &str)],
    token: &str,
) -> (u16, String) {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = url.strip_prefix(PUBLIC).expect("public URL");
    let answer = app
        .client
        .post(app.url(path))
        .header("X-Twilio-Signature", signature(token, url, &params))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).expect("form"))
        .send()
        .await
        .expect("sent");
    (answer.status().as_u16(), answer.text().await.expect("body"))
}

async fn twilio_sms_replies_and_call_keys_act_on_the_page(db: TestDb) {
    let oncall = Fake::start().await;
    let twilio = Fake::answering(crate::helpers::Reply::Json(201, r#"{"sid": "CA1"}"#)).await;
    let mut s = ack_settings(&db, &oncall);
    s.app.hostname = PUBLIC.into();
    s.plugin.backends.insert(
        "tw".into(),
        BackendSettings::Twilio(TwilioSettings {
            repeat: 1,
            replies: true,
            ..twilio_at(&twilio.url, AUTH_TOKEN)
        }),
    );
    s.plugin.backend = "tw".into();
    let app = TestApp::spawn_with_alice(s).await;
    paged(&app, GROUP, "Disk full").await;
    paged(&app, OTHER, "CPU high").await;

    // An SMS reply from Alice's phone, to the backend's number.
    let sms_hook = format!("{PUBLIC}/hooks/twilio/tw/sms");
    let reply = [
        ("From", ALICE_PHONE),
        ("To", "+15550001111"),
        ("Body", "ack"),
    ];
    let (status, body) = post_signed(&app, &sms_hook, &reply, "forged").await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_signed(&app, &sms_hook, &reply, AUTH_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "<Response><Message>&quot;CPU high&quot; acknowledged.</Message></Response>"
    );
    let stranger = [("From", "+4930999999"), ("Body", "ack")];
    let (_, silent) = post_signed(&app, &sms_hook, &stranger, AUTH_TOKEN).await;
    assert_eq!(silent, "<Response></Response>");

    // A call offers OnCall's menu; pressing 2 resolves the alert group it was about.
    app.call_alice("You are invited to check an Alert Group from Grafana OnCall. Alert via Prom with title Disk full triggered 1 times").await;
    let call = wait_for(Duration::from_secs(10), || async {
        twilio
            .requests()
            .into_iter()
            .find(|r| r.uri.path().ends_with("/Calls.json"))
    })
    .await;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&call.body).expect("form");
    let twiml = &fields.iter().find(|(k, _)| k == "Twiml").expect("twiml").1;
    let id = app.events().await[0].id;
    let keys_url = format!("{PUBLIC}/hooks/twilio/tw/voice?n={id}");
    assert!(
        twiml.contains(&format!("action=\"{keys_url}\""))
            && twiml.contains("Press 1 to acknowledge"),
        "{twiml}"
    );
    let press = [
        ("Digits", "2"),
        ("To", ALICE_PHONE),
        ("From", "+15550001111"),
    ];
    let (status, said) = post_signed(&app, &keys_url, &press, AUTH_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(said, "<Response><Say>Disk full resolved.</Say></Response>");
    assert_eq!(
        acted(&oncall),
        [
            format!("/api/v1/alert_groups/{OTHER}/acknowledge"),
            format!("/api/v1/alert_groups/{GROUP}/resolve")
        ]
    );
    let log = actions(&app).await;
    assert_eq!(log[0].channel, "voice:tw");
    assert_eq!(json!(log[0].outcome), json!("done"));
    app.stop().await;
}
db_test!(twilio_sms_replies_and_call_keys_act_on_the_page);
