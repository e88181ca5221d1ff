//! Slack: Acknowledge / Resolve / Silence buttons under a page. Slack posts a click to the app's
//! Request URL (`/hooks/slack/<backend>`), signed with the app's signing secret; the relay
//! answers at once (Slack waits 3 s at most), acts, then replaces the message through the
//! click's `response_url`, saying what was done.
//!
//! A click counts only from the person the page went to: the clicking member's id must be
//! their `slack` contact.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::Ack;
use super::command::Action;

/// Oldest request accepted: a signed request replayed later does nothing.
const MAX_AGE: Duration = Duration::from_secs(300);

/// Whether `signature` (`v0=<hex>`) is Slack's signature of `body` at `timestamp` (Unix
/// seconds) with `secret`, and the timestamp is within five minutes of `now` (Unix seconds).
pub fn verify(secret: &str, timestamp: &str, body: &[u8], signature: &str, now: i64) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now - ts).unsigned_abs() > MAX_AGE.as_secs() || secret.is_empty() {
        return false;
    }
    let expected = sign(secret, ts, body);
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(signature.trim().as_bytes()))
}

/// Slack's signature of `body` at `ts` with `secret`: `v0=` and the hex HMAC-SHA256 of
/// `v0:<ts>:<body>`.
pub fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    user: Option<Member>,
    #[serde(default)]
    actions: Vec<Clicked>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct Member {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Clicked {
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    text: Option<String>,
}

/// A verified click, read from the `payload` form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// Who clicked (a Slack member id).
    pub member: String,
    /// What the button does.
    pub action: Action,
    /// The notification the button was under.
    pub notification: i64,
    /// Where the answer goes.
    pub response_url: Option<String>,
    /// The page's text, to repeat above the answer.
    pub text: String,
}

/// The click in `payload`, `None` when it is not one of the relay's buttons.
pub fn parse_click(payload: &str) -> Option<Click> {
    let p: Payload = serde_json::from_str(payload).ok()?;
    let value = p.actions.iter().find_map(|a| a.value.as_deref())?;
    let (action, notification) = Action::from_button(value)?;
    Some(Click {
        member: p.user?.id,
        action,
        notification,
        // Only Slack's own hosts: the URL comes from a signed request, but the relay must
        // never be told to post elsewhere.
        response_url: p
            .response_url
            .filter(|u| u.starts_with("https://hooks.slack.com/")),
        text: p.message.and_then(|m| m.text).unwrap_or_default(),
    })
}

impl Ack {
    /// Acts on a click from backend `backend` and replaces the message with the outcome.
    /// Strangers' clicks do nothing.
    pub async fn slack_click(&self, backend: &str, click: Click) {
        let channel = format!("slack:{backend}");
        let user = match self.directory.by_contact("slack", &click.member).await {
            Ok(user) => user,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find who clicked in Slack");
                return;
            }
        };
        let Some(user) = user else {
            self.log(
                &channel,
                "",
                None,
                click.action.api_name(),
                "unknown-sender",
                None,
            )
            .await;
            return;
        };
        let answer = match self
            .act_on_notification(&channel, &user, click.notification, click.action)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %e, "cannot act on a Slack click");
                "Something went wrong; try again.".into()
            }
        };
        let Some(url) = click.response_url else {
            return;
        };
        let text = if click.text.is_empty() {
            answer
        } else {
            format!("{}\n\n{answer}", click.text)
        };
        let body = json!({"replace_original": true, "text": text});
        if let Err(e) = self.http.post(url).json(&body).send().await {
            tracing::warn!(error = %crate::notify::backends::http::error_chain(&e.without_url()), "cannot update the Slack message");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_documented_example_verifies() {
        // The example of api.slack.com/authentication/verifying-requests-from-slack.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = 1531420618;
        assert!(verify(
            secret,
            "1531420618",
            body.as_bytes(),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ts
        ));
        assert_eq!(
            sign(secret, ts, body.as_bytes()),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn forged_stale_and_foreign_requests_fail() {
        let body = "payload=%7B%7D";
        let good = sign("s", 1000, body.as_bytes());
        assert!(verify("s", "1000", body.as_bytes(), &good, 1100));
        assert!(
            !verify("s", "1000", body.as_bytes(), &good, 1000 + 301),
            "stale"
        );
        assert!(!verify("other", "1000", body.as_bytes(), &good, 1000));
        assert!(!verify("s", "1000", b"payload=x", &good, 1000));
        assert!(!verify("s", "soon", body.as_bytes(), &good, 1000));
        assert!(!verify(
            "",
            "1000",
            body.as_bytes(),
            &sign("", 1000, body.as_bytes()),
            1000
        ));
    }

    #[test]
    fn clicks_name_the_action_and_the_notification() {
        let payload = r#"{"type":"block_actions","user":{"id":"U1"},"actions":[{"value":"r:42"}],
            "response_url":"https://hooks.slack.com/actions/T/1/x","message":{"text":"Disk full"}}"#;
        let click = parse_click(payload).expect("click");
        assert_eq!(
            (click.member.as_str(), click.action, click.notification),
            ("U1", Action::Resolve, 42)
        );
        assert!(click.response_url.is_some());
        let elsewhere = payload.replace("https://hooks.slack.com", "http://evil.example");
        assert_eq!(parse_click(&elsewhere).expect("click").response_url, None);
        assert_eq!(
            parse_click(r#"{"actions":[{"value":"x:1"}],"user":{"id":"U"}}"#),
            None
        );
    }
}
