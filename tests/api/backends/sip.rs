//! The sip backend against a fake Asterisk ARI that records the originate request.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, Settings, SipSettings};

use super::{CALL, Conformance, Message, pairs, refused, to_alice};
use crate::db_test;
use crate::helpers::*;

const AUTH: &str = ARI_AUTH;
const CHANNEL: &str = r#"{"id": "1700000000.42", "name": "PJSIP/trunk-00000001", "state": "Down"}"#;

fn sip_settings(fake: &Fake) -> SipSettings {
    sip_at(fake.url.trim_end_matches("/hook"))
}

fn use_sip(s: &mut Settings, t: SipSettings) {
    s.plugin.backend = "asterisk".into();
    s.plugin
        .backends
        .insert("asterisk".into(), BackendSettings::Sip(t));
}

fn query(r: &Recorded) -> Vec<(String, String)> {
    serde_urlencoded::from_str(r.uri.query().unwrap_or("")).expect("query")
}

async fn sip_endpoint_template_and_ari_suffix(db: Db) {
    let db = TestDb::new(db).await;
    let fake = Fake::answering(Reply::Json(200, CHANNEL)).await;
    let mut s = settings(&db);
    use_sip(
        &mut s,
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
    const NAME: &'static str = "asterisk";
    const SENDS: &'static [Message] = &[to_alice(
        CALL,
        "Alert group #7: *CPU* high on db-1, see https://grafana.example/a/b",
    )];
    const PATH: &'static str = CALL;
    const PERMANENT_ERROR: &'static [&'static str] = &["400", "Endpoint parameter"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["500", "Allocation failed"];

    async fn start() -> Self {
        Row(Fake::answering(Reply::Json(200, CHANNEL)).await)
    }
    fn settings(&self) -> BackendSettings {
        BackendSettings::Sip(self.sip())
    }
    fn fail_permanently(&self) {
        self.0.script(
            &[],
            Reply::Json(400, r#"{"message": "Endpoint parameter not provided"}"#),
        );
    }
    fn fail_once(&self) {
        self.0.script(
            &[Reply::Json(500, r#"{"message": "Allocation failed"}"#)],
            Reply::Json(200, CHANNEL),
        );
    }
    fn seen(&self) -> usize {
        self.0.requests().len()
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
    fn secrets(&self) -> Vec<String> {
        vec!["ar1pass".into()]
    }
    fn bad_settings(&self) -> Vec<(BackendSettings, &'static str)> {
        let base = || sip_settings(&self.0);
        refused(
            BackendSettings::Sip,
            [
                (
                    SipSettings {
                        url: "".into(),
                        ..base()
                    },
                    "`url`",
                ),
                (
                    SipSettings {
                        url: "asterisk:8088".into(),
                        ..base()
                    },
                    "`url`",
                ),
                (
                    SipSettings {
                        username: "".into(),
                        ..base()
                    },
                    "`username`",
                ),
                (
                    SipSettings {
                        password: Secret(String::new()),
                        ..base()
                    },
                    "`password`",
                ),
                (
                    SipSettings {
                        endpoint: "PJSIP/{{ phone @trunk".into(),
                        ..base()
                    },
                    "`endpoint`",
                ),
                (
                    SipSettings {
                        priority: 0,
                        ..base()
                    },
                    "`priority`",
                ),
            ],
        )
    }
    fn with_timeout(&self, timeout: Duration) -> BackendSettings {
        BackendSettings::Sip(SipSettings {
            timeout,
            ..self.sip()
        })
    }
}
