//! The webhook backend: templated URL and body, method, headers.

use std::time::Duration;

use oncall_relay::config::{BackendSettings, Secret, WebhookSettings};

use super::{
    Conformance, LONG_SMS, Message, SMS, Spoil, assert_shortened_to_segments, http_fake, to_alice,
    with_backend,
};
use crate::db_test;
use crate::helpers::*;

/// An alert text with quotes, a backslash and template syntax of its own.
const QUOTED: &str = r#"Alert group #2"CPU \ high" {{ not a template }}"#;

/// The conformance row: a PUT with a header and a templated JSON body.
pub struct Row(Fake);

impl Row {
    fn webhook(&self, body: &str) -> WebhookSettings {
        WebhookSettings {
            url: self.0.url.clone(),
            method: "PUT".into(),
            headers: [("X-Api-Key".to_string(), Secret("k3y".into()))]
                .into_iter()
                .collect(),
            timeout: Duration::from_secs(2),
            body: Some(body.into()),
            content_type: "application/json".into(),
            ..Default::default()
        }
    }
}

impl Conformance for Row {
    type Settings = WebhookSettings;
    const WRAP: fn(WebhookSettings) -> BackendSettings = BackendSettings::Webhook;
    const NAME: &'static str = "gateway";
    const SENDS: &'static [Message] = &[to_alice(SMS, QUOTED)];
    const PERMANENT_ERROR: &'static [&'static str] = &["HTTP 404"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["HTTP 502"];
    const SECRETS: &'static [&'static str] = &["k3y"];
    const SPOILED: &'static [Spoil<WebhookSettings>] = &[
        (|w| w.body = Some("{{ phone ".into()), "body"),
        (|w| w.max_segments = Some(0), "`max_segments`"),
    ];

    http_fake!(Reply::Status(200), Reply::Status(404), Reply::Status(502));
    fn base(&self) -> WebhookSettings {
        self.webhook(
            r#"{"to": {{ phone }}, "text": {{ message }}, "kind": {{ kind }}, "who": {{ user.email }}}"#,
        )
    }
    fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
        let r = &self.0.requests()[0];
        assert_eq!(r.method, "PUT");
        assert_eq!(r.headers["x-api-key"], "k3y");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.json(),
            serde_json::json!({"to": "+4930123456", "text": QUOTED, "kind": "sms", "who": "alice@example.com"})
        );
    }
}

/// The settings of `db`, delivering to the webhook `w`.
fn hook(db: &TestDb, w: WebhookSettings) -> oncall_relay::config::Settings {
    with_backend(db, "gateway", BackendSettings::Webhook(w))
}

/// Declares the webhook backend `name` and routes every call to it.
fn route_calls_to(s: &mut oncall_relay::config::Settings, name: &str, w: WebhookSettings) {
    s.plugin
        .backends
        .insert(name.into(), BackendSettings::Webhook(w));
    let route = oncall_relay::config::RouteSettings {
        backend: name.into(),
        ..Default::default()
    };
    s.plugin.routes.insert("call".into(), vec![route]);
}

async fn templated_url_and_form_body(db: TestDb) {
    let fake = Fake::start().await;
    let s = hook(
        &db,
        WebhookSettings {
            url: format!(
                "{}?to={{{{ phone|urlencode }}}}&type={{{{ kind }}}}",
                fake.url
            ),
            method: "POST".into(),
            headers: Default::default(),
            timeout: Duration::from_secs(2),
            body: Some("number={{ phone|urlencode }}&text={{ message|urlencode }}".into()),
            content_type: "application/x-www-form-urlencoded".into(),
            ..Default::default()
        },
    );
    let app = TestApp::spawn_with_alice(s).await;
    app.call_alice("a&b=c d").await;
    app.wait_until_settled(1).await;
    let r = &fake.requests()[0];
    assert_eq!(r.uri.query(), Some("to=%2B4930123456&type=call"));
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).expect("form");
    assert_eq!(
        form,
        vec![
            ("number".to_string(), "+4930123456".to_string()),
            ("text".to_string(), "a&b=c d".to_string())
        ]
    );
    app.stop().await;
}
db_test!(templated_url_and_form_body);

/// An alert text printed into the URL (and a form body) cannot add parameters, unless the
/// backend opts out with `url_encode: false`.
async fn values_in_a_url_template_cannot_add_parameters(db: TestDb) {
    let fake = Fake::start().await;
    let unencoded = Fake::start().await;
    let mut s = hook(
        &db,
        WebhookSettings {
            url: format!("{}?to={{{{ phone }}}}&text={{{{ message }}}}", fake.url),
            body: Some("to={{ phone }}&text={{ message }}".into()),
            content_type: "application/x-www-form-urlencoded".into(),
            timeout: Duration::from_secs(2),
            ..Default::default()
        },
    );
    let raw = WebhookSettings {
        url: format!("{}?{{{{ message }}}}", unencoded.url),
        method: "GET".into(),
        timeout: Duration::from_secs(2),
        url_encode: false,
        ..Default::default()
    };
    route_calls_to(&mut s, "raw", raw);
    let app = TestApp::spawn_with_alice(s).await;
    let attack = "x&to=%2B1999000#";
    app.sms_alice(attack).await;
    app.call_alice("a=1&b=2").await;
    app.wait_until_settled(2).await;

    let r = &fake.requests()[0];
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(r.uri.query().unwrap_or("")).expect("query");
    let expected = vec![
        ("to".to_string(), "+4930123456".to_string()),
        ("text".to_string(), attack.to_string()),
    ];
    assert_eq!(query, expected, "{}", r.uri);
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).expect("form");
    assert_eq!(form, expected);

    let raw = &unencoded.requests()[0];
    assert_eq!(raw.uri.query(), Some("a=1&b=2"));
    app.stop().await;
}
db_test!(values_in_a_url_template_cannot_add_parameters);

async fn bearer_basic_auth_and_signature_headers(db: TestDb) {
    use hmac::{Hmac, Mac};
    let (signed, basic) = (Fake::start().await, Fake::start().await);
    let mut s = hook(
        &db,
        WebhookSettings {
            url: signed.url.clone(),
            bearer_token: Some(Secret("tok-123".into())),
            signing_secret: Some(Secret("s3cret".into())),
            ..Default::default()
        },
    );
    let basic_auth = oncall_relay::config::BasicAuth {
        username: "relay".into(),
        password: Secret("pw".into()),
    };
    let with_basic_auth = WebhookSettings {
        url: basic.url.clone(),
        basic_auth: Some(basic_auth),
        ..Default::default()
    };
    route_calls_to(&mut s, "basic", with_basic_auth);
    let app = TestApp::spawn_with_alice(s).await;
    for path in ["/api/v1/send_sms", "/api/v1/make_call"] {
        app.send_ok(path, "alice@example.com", "hi").await;
    }
    app.wait_until_settled(2).await;
    let r = &signed.requests()[0];
    assert_eq!(r.headers["authorization"], "Bearer tok-123");
    let timestamp = r.headers["x-relay-timestamp"].to_str().expect("ascii");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        r.headers["x-relay-signature"],
        format!("sha256={expected}").as_str()
    );
    // relay:pw
    assert_eq!(
        basic.requests()[0].headers["authorization"],
        "Basic cmVsYXk6cHc="
    );
    assert!(
        basic.requests()[0]
            .headers
            .get("x-relay-signature")
            .is_none()
    );
    app.stop().await;
}
db_test!(bearer_basic_auth_and_signature_headers);

/// Every HTTP backend waits as long as a 503's `Retry-After` asks, not the queue's backoff.
async fn webhook_retry_after_on_503_is_honoured(db: TestDb) {
    let fake = Fake::start().await;
    fake.script(&[Reply::RetryAfter(503, "2", "{}")], Reply::Status(200));
    let mut s = hook(
        &db,
        WebhookSettings {
            url: fake.url.clone(),
            method: "POST".into(),
            timeout: Duration::from_secs(2),
            ..Default::default()
        },
    );
    quick_retries(&mut s);
    let app = TestApp::spawn_with_alice(s).await;
    app.send_ok(SMS, "alice@example.com", "hello").await;
    let events = app.wait_until_settled(1).await;
    assert_eq!(events[0].status, "delivered", "{events:?}");
    assert_eq!(events[0].attempts, 2);
    fake.assert_second_request_waited_2s("the server");
    app.stop().await;
}
db_test!(webhook_retry_after_on_503_is_honoured);

/// A webhook feeding an SMS gateway gets the text shortened to its `max_segments`.
async fn webhook_sms_gateway_gets_text_within_max_segments(db: TestDb) {
    let fake = Fake::start().await;
    let s = hook(
        &db,
        WebhookSettings {
            url: fake.url.clone(),
            max_segments: Some(2),
            ..Default::default()
        },
    );
    let message = LONG_SMS.repeat(8);
    let (app, events) = deliver_to_alice(s, SMS, &message).await;
    assert_eq!(events[0].status, "delivered", "{events:?}");
    let sent = fake.requests()[0].json();
    assert_shortened_to_segments(&message, sent["message"].as_str().expect("message"), 2);
    app.stop().await;
}
db_test!(webhook_sms_gateway_gets_text_within_max_segments);
