//! The sip backend against a fake Asterisk ARI that records the originate request.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, SipSettings};

use super::{CALL, Conformance, Message, Spoil, http_fake, pairs, to_alice, with_backend};
use crate::db_test;
use crate::helpers::*;

const AUTH: &str = ARI_AUTH;
const CHANNEL: &str = r#"{"id": "1700000000.42", "name": "PJSIP/trunk-00000001", "state": "Down"}"#;

fn sip_settings(fake: &Fake) -> SipSettings {
    sip_at(fake.url.trim_end_matches("/hook"))
}

/// The settings of `db`, calling through Asterisk as `t` says.
fn use_sip(db: &TestDb, t: SipSettings) -> Settings {
    with_backend(db, "asterisk", BackendSettings::Sip(t))
}

fn query(r: &Recorded) -> Vec<(String, String)> {
    serde_urlencoded::from_str(r.uri.query().unwrap_or("")).expect("query")
}

async fn sip_endpoint_template_and_ari_suffix(db: TestDb) {
    let fake = Fake::answering(Reply::Json(200, CHANNEL)).await;
    let s = use_sip(
        &db,
        SipSettings {
            // `/ari` at the end of the URL is accepted too.
            url: format!("{}/ari/", fake.url.trim_end_matches("/hook")),
            endpoint: "SIP/gw/{{ phone|replace('+', '00') }}".into(),
            context: "alerts".into(),
            extension: "s".into(),
            priority: 2,
            ring_timeout: Duration::from_secs(45),
            ..sip_settings(&fake)
        },
    );
    let (app, events) = deliver_to_alice(s, "/api/v1/make_call", "ring").await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let r = &fake.requests()[0];
    assert_eq!(r.uri.path(), "/ari/channels");
    assert_eq!(
        query(r),
        pairs(&[
            ("endpoint", "SIP/gw/004930123456"),
            ("context", "alerts"),
            ("extension", "s"),
            ("priority", "2"),
            ("timeout", "45"),
        ])
    );
    app.stop().await;
}
db_test!(sip_endpoint_template_and_ari_suffix);

/// The conformance row: an originate with a caller id.
pub struct Row(Fake);

impl Row {
    fn sip(&self) -> SipSettings {
        SipSettings {
            caller_id: Some("\"OnCall\" <+4930000000>".into()),
            ..sip_settings(&self.0)
        }
    }
}

impl Conformance for Row {
    type Settings = SipSettings;
    const WRAP: fn(SipSettings) -> BackendSettings = BackendSettings::Sip;
    const NAME: &'static str = "asterisk";
    const SENDS: &'static [Message] = &[to_alice(
        CALL,
        "Alert group #7: *CPU* high on db-1, see https://grafana.example/a/b",
    )];
    const PATH: &'static str = CALL;
    const PERMANENT_ERROR: &'static [&'static str] = &["400", "Endpoint parameter"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["500", "Allocation failed"];
    const SECRETS: &'static [&'static str] = &["ar1pass"];
    const SPOILED: &'static [Spoil<SipSettings>] = &[
        (|s| s.url = "".into(), "`url`"),
        (|s| s.url = "asterisk:8088".into(), "`url`"),
        (|s| s.username = "".into(), "`username`"),
        (|s| s.password = Secret(String::new()), "`password`"),
        (
            |s| s.endpoint = "PJSIP/{{ phone @trunk".into(),
            "`endpoint`",
        ),
        (|s| s.priority = 0, "`priority`"),
    ];

    http_fake!(
        Reply::Json(200, CHANNEL),
        Reply::Json(400, r#"{"message": "Endpoint parameter not provided"}"#),
        Reply::Json(500, r#"{"message": "Allocation failed"}"#),
    );
    fn base(&self) -> SipSettings {
        self.sip()
    }
    fn assert_sent(&self, events: &[NotificationRecord], _: &User) {
        let r = &self.0.requests()[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri.path(), "/ari/channels");
        assert_eq!(
            query(r),
            pairs(&[
                ("endpoint", "PJSIP/+4930123456@trunk"),
                ("context", "oncall"),
                ("extension", "oncall"),
                ("priority", "1"),
                ("callerId", "\"OnCall\" <+4930000000>"),
                ("timeout", "30"),
            ])
        );
        assert_eq!(r.headers["authorization"], AUTH);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.json(),
            serde_json::json!({
                "variables": {
                    "ONCALL_MESSAGE": "Alert group number 7: CPU high on db-1, see (link)",
                    "ONCALL_KIND": "call",
                    "ONCALL_ID": events[0].id.to_string(),
                }
            })
        );
    }
}
