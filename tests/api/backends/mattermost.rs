//! The mattermost (and rocketchat) backend: incoming webhooks against a loopback fake.

use std::io::Write;
use std::time::Duration;

use oncall_relay::config::{BackendSettings, MattermostSettings, Overrides, Secret, Settings};

use super::{
    CALL, Conformance, Message, SMS, Spoil, assert_each_post, http_fake, to_alice, to_bob,
};
use crate::helpers::*;

fn hook(fake: &Fake) -> MattermostSettings {
    MattermostSettings {
        url: Secret(fake.url.clone()),
        username: Some("OnCall".into()),
        channel: Some("oncall-alerts".into()),
        timeout: Duration::from_secs(2),
        command_token: None,
    }
}

#[test]
fn mattermost_and_rocketchat_types_load_from_yaml() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(
        b"plugin:\n  backend: mm\n  backends:\n    mm:\n      type: mattermost\n      url: https://chat.example.com/hooks/abc\n      username: OnCall\n    rc:\n      type: rocketchat\n      url: https://rc.example.com/hooks/x/y\n      channel: '#alerts'\n      timeout: 5s\n",
    )
    .expect("write");
    let s = Settings::load_from_env(Some(file.path()), &Overrides::default(), Vec::new())
        .expect("loads");
    assert!(matches!(
        &s.plugin.backends["mm"],
        BackendSettings::Mattermost(m) if m.username.as_deref() == Some("OnCall") && m.timeout == Duration::from_secs(10)
    ));
    assert!(matches!(
        &s.plugin.backends["rc"],
        BackendSettings::Rocketchat(m) if m.channel.as_deref() == Some("#alerts") && m.timeout == Duration::from_secs(5)
    ));
    assert!(
        !format!("{s:?}").contains("hooks/abc"),
        "the hook URL is a secret"
    );
}

/// Mattermost: Alice's own channel, the configured channel and username for Bob.
pub struct Mattermost(Fake);

fn assert_mattermost(fake: &Fake) {
    let requests = fake.requests();
    assert_each_post(
        &requests,
        Some("/hook"),
        &[("content-type", "application/json")],
    );
    assert_eq!(
        requests[0].json(),
        serde_json::json!({
            "text": "Disk full on **db-1**",
            "username": "OnCall",
            "channel": "@alice"
        })
    );
    assert_eq!(
        requests[1].json(),
        serde_json::json!({
            "text": ":rotating_light: CPU high",
            "username": "OnCall",
            "channel": "oncall-alerts"
        })
    );
}

/// Rocket.Chat: the same hook format, without username and channel.
pub struct Rocketchat(Fake);

fn rocketchat(fake: &Fake) -> MattermostSettings {
    MattermostSettings {
        username: None,
        channel: None,
        ..hook(fake)
    }
}

fn assert_rocketchat(fake: &Fake) {
    let bodies: Vec<serde_json::Value> = fake.requests().iter().map(Recorded::json).collect();
    assert_eq!(
        bodies,
        [
            serde_json::json!({"text": "for alice", "channel": "@alice.rc"}),
            serde_json::json!({"text": "for bob"})
        ]
    );
}

/// Both flavours answer "never" with a 400, "later" with a 500, and a bad `url` is refused.
macro_rules! hook_row {
    ($row:ident, $name:literal, $variant:ident, $settings:ident, $assert:ident, $contact:expr, $sends:expr) => {
        impl Conformance for $row {
            type Settings = MattermostSettings;
            const WRAP: fn(MattermostSettings) -> BackendSettings = BackendSettings::$variant;
            const NAME: &'static str = $name;
            const CONTACTS: &'static [(&'static str, &'static str)] = &[$contact];
            const SENDS: &'static [Message] = &$sends;
            const PERMANENT_ERROR: &'static [&'static str] = &["400", "find the channel"];
            const TRANSIENT_ERROR: &'static [&'static str] = &["500"];
            const SPOILED: &'static [Spoil<MattermostSettings>] = &[
                (|s| s.url = Secret("".into()), "`url`"),
                (|s| s.url = Secret("chat.example.com/hooks/abc".into()), "`url`"),
                (|s| s.url = Secret("ftp://chat.example.com/hooks/abc".into()), "`url`"),
            ];


            http_fake!(
                Reply::Status(200),
                Reply::Json(
                    400,
                    r#"{"id":"web.incoming_webhook.channel.app_error","message":"Couldn't find the channel.","status_code":400}"#,
                ),
                Reply::Status(500),
            );
            fn base(&self) -> MattermostSettings {
                $settings(&self.0)
            }
            fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
                $assert(&self.0)
            }
            fn secrets(&self) -> Vec<String> {
                vec![self.0.url.clone()]
            }
        }
    };
}

hook_row!(
    Mattermost,
    "mm",
    Mattermost,
    hook,
    assert_mattermost,
    ("mattermost", "@alice"),
    [
        to_alice(SMS, "Disk full on **db-1**"),
        to_bob(CALL, "CPU high"),
    ]
);

hook_row!(
    Rocketchat,
    "rc",
    Rocketchat,
    rocketchat,
    assert_rocketchat,
    ("rocketchat", "@alice.rc"),
    [to_alice(SMS, "for alice"), to_bob(SMS, "for bob"),]
);
