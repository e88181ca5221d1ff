use serde_json::json;

use super::super::BackendSettings;
use super::*;

fn backend(value: serde_json::Value) -> BackendSettings {
    serde_json::from_value(value).expect("backend settings")
}

#[test]
fn omitted_options_take_their_defaults() {
    let BackendSettings::Twilio(t) = backend(
        json!({"type": "twilio", "account_sid": "AC1", "auth_token": "t", "from": "+1555"}),
    ) else {
        panic!("twilio");
    };
    assert_eq!(
        (t.max_length, t.split, t.max_segments, t.repeat, t.timeout),
        (1600, true, 10, 2, Duration::from_secs(10))
    );
    assert_eq!(t.api_base, "https://api.twilio.com");
    assert!(t.voice.is_none() && t.language.is_none());
    // Tests build settings from `Default`: it must agree with what omitting gives.
    let d = TwilioSettings::default();
    assert_eq!(
        (d.max_length, d.split, d.max_segments, d.repeat, d.timeout),
        (t.max_length, t.split, t.max_segments, t.repeat, t.timeout)
    );
    assert_eq!(d.api_base, t.api_base);

    let BackendSettings::Sip(s) =
        backend(json!({"type": "sip", "url": "http://pbx:8088", "username": "u", "password": "p"}))
    else {
        panic!("sip");
    };
    assert_eq!(
        (s.context.as_str(), s.extension.as_str(), s.priority),
        ("oncall", "oncall", 1)
    );
    assert_eq!(s.endpoint, "PJSIP/{{ phone }}@trunk");
    assert_eq!(
        (s.ring_timeout, s.timeout),
        (Duration::from_secs(30), Duration::from_secs(10))
    );

    let BackendSettings::Ntfy(n) = backend(json!({"type": "ntfy"})) else {
        panic!("ntfy");
    };
    assert_eq!(
        (n.server.as_str(), n.priority, n.important_priority),
        ("https://ntfy.sh", 3, 5)
    );
    let BackendSettings::Slack(s) = backend(json!({"type": "slack", "token": "x"})) else {
        panic!("slack");
    };
    assert_eq!(s.api_base, "https://slack.com/api");
    assert!(s.webhook_url.is_none());
}

#[test]
fn required_options_stay_required() {
    for (value, option) in [
        (json!({"type": "webhook"}), "url"),
        (json!({"type": "telegram"}), "token"),
        (json!({"type": "mattermost"}), "url"),
        (json!({"type": "exec"}), "command"),
        (json!({"type": "email", "host": "smtp"}), "from"),
        (
            json!({"type": "sip", "url": "http://pbx", "username": "u"}),
            "password",
        ),
    ] {
        let err = serde_json::from_value::<BackendSettings>(value)
            .expect_err(option)
            .to_string();
        assert!(err.contains(&format!("missing field `{option}`")), "{err}");
    }
}
