//! The `ntfy` backend: publishes each notification to a topic of an ntfy server.
//!
//! `POST {server}/{topic}` with the message as body and `Title`, `Priority` and `Tags`
//! headers. The topic is the user's `ntfy` contact, else the configured `topic`. Calls,
//! heartbeat alerts and critical pushes get the important priority (5 by default: a
//! persistent alarm on the phone), the rest the ordinary one (3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderValue;

use super::{Base, Deliver, DeliveryError, Setup, contact, http, present};
use crate::config::{NtfySettings, Secret};
use crate::notify::shape;
use crate::notify::{Notification, NotifyError};

/// ntfy's default message limit in bytes (longer ones become attachments or are refused).
const MAX_BODY_BYTES: usize = 4096;
/// Longest title sent, in characters.
const MAX_TITLE: usize = 250;

/// Publishes each notification to ntfy.
#[derive(Debug)]
pub struct Ntfy {
    base: Base,
    server: String,
    topic: Option<String>,
    auth: Auth,
    priority: u8,
    important_priority: u8,
    client: reqwest::Client,
}

#[derive(Debug)]
enum Auth {
    None,
    Bearer(Secret),
    Basic { user: String, password: Secret },
}

impl Ntfy {
    /// Validates the settings.
    pub fn new(cx: &Setup<'_>, s: &NtfySettings) -> Result<Ntfy, NotifyError> {
        let bad = cx.error();
        let server = http::base_url(&s.server, "server").map_err(&bad)?;
        let topic = present(s.topic.as_deref());
        if let Some(t) = &topic
            && !valid_topic(t)
        {
            return Err(bad(format!(
                "`topic`: `{t}` is not a topic (1-64 letters, digits, `-` or `_`)"
            )));
        }
        for (key, value) in [
            ("priority", s.priority),
            ("important_priority", s.important_priority),
        ] {
            if !(1..=5).contains(&value) {
                return Err(bad(format!(
                    "`{key}`: must be 1 (min) to 5 (max), not {value}"
                )));
            }
        }
        let token = present(s.token.as_ref().map(Secret::expose));
        let user = present(s.user.as_deref());
        let password = s
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .filter(|p| !p.is_empty());
        let auth = match (token, user, password) {
            (None, None, None) => Auth::None,
            (Some(token), None, None) => {
                if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
                    return Err(bad("`token` is not a valid token".into()));
                }
                Auth::Bearer(Secret(token))
            }
            (None, Some(user), Some(password)) => Auth::Basic {
                user,
                password: Secret(password),
            },
            (Some(_), _, _) => {
                return Err(bad(
                    "set either `token` or `user` and `password`, not both".into()
                ));
            }
            (None, _, _) => {
                return Err(bad("`user` and `password` go together".into()));
            }
        };
        Ok(Ntfy {
            base: cx.base(s.timeout),
            server: server.as_str().trim_end_matches('/').to_string(),
            topic,
            auth,
            priority: s.priority,
            important_priority: s.important_priority,
            client: cx.client.clone(),
        })
    }
}

impl Deliver for Ntfy {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let topic = match contact(n, &["ntfy"]) {
            Some(t) if valid_topic(t) => t,
            Some(t) => {
                return Err(DeliveryError::Permanent(format!(
                    "the user's `ntfy` contact `{t}` is not a topic (1-64 letters, digits, `-` or `_`)"
                )));
            }
            None => self.topic.as_deref().ok_or_else(|| {
                DeliveryError::Permanent(format!(
                    "no ntfy topic for {}: set the user's `ntfy` contact or the backend's `topic`",
                    if n.email.is_empty() {
                        "this notification"
                    } else {
                        &n.email
                    }
                ))
            })?,
        };
        let important = n.important();
        let priority = if important {
            self.important_priority
        } else {
            self.priority
        };
        let tags = if important {
            format!("rotating_light,{}", n.kind)
        } else {
            n.kind.clone()
        };
        let mut request = http::keyed(self.client.post(format!("{}/{topic}", self.server)), n)
            .timeout(self.base.timeout)
            .header("Priority", priority.to_string())
            .header("Tags", header_text(&tags))
            .body(cut_bytes(&n.message, MAX_BODY_BYTES));
        let title = n.title().trim();
        if !title.is_empty() {
            request = request.header("Title", header_text(&shape::truncate(title, MAX_TITLE)));
        }
        if let Some(actions) = n.links.as_ref().and_then(actions) {
            request = request.header("Actions", actions);
        }
        request = match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token.expose()),
            Auth::Basic { user, password } => request.basic_auth(user, Some(password.expose())),
        };
        http::send(request, "").await
    }
}

/// ntfy's action buttons for a page's one-click links: the phone POSTs the link (the `/act/`
/// path acts on POST only) and the notification goes once one is pressed.
fn actions(links: &serde_json::Value) -> Option<String> {
    let buttons: Vec<String> = [
        ("Acknowledge", "acknowledge"),
        ("Resolve", "resolve"),
        ("Silence 30 min", "silence"),
    ]
    .iter()
    .filter_map(|(label, key)| {
        let url = links.get(key)?.as_str()?;
        Some(format!("http, {label}, {url}, method=POST, clear=true"))
    })
    .collect();
    (!buttons.is_empty()).then(|| buttons.join("; "))
}

/// ntfy's topic names: 1-64 of `[-_A-Za-z0-9]`.
fn valid_topic(topic: &str) -> bool {
    (1..=64).contains(&topic.len())
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A header value: printable ASCII as it is, anything else as an RFC 2047 encoded word,
/// which ntfy decodes (`=?UTF-8?B?...?=`).
fn header_text(text: &str) -> String {
    let one_line = text.replace(['\r', '\n'], " ");
    if one_line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        one_line
    } else {
        format!("=?UTF-8?B?{}?=", STANDARD.encode(one_line.as_bytes()))
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending with `…` when cut.
fn cut_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_links_become_post_action_buttons() {
        let links = serde_json::json!({"acknowledge": "https://r/act/a", "resolve": "https://r/act/r", "silence": "https://r/act/s"});
        assert_eq!(
            actions(&links).as_deref(),
            Some(
                "http, Acknowledge, https://r/act/a, method=POST, clear=true; http, Resolve, https://r/act/r, method=POST, clear=true; http, Silence 30 min, https://r/act/s, method=POST, clear=true"
            )
        );
        assert_eq!(actions(&serde_json::json!({})), None);
    }

    #[test]
    fn non_ascii_titles_are_rfc2047_encoded() {
        assert_eq!(header_text("CPU high"), "CPU high");
        assert_eq!(header_text("a\nb"), "a b");
        // "Störung" in UTF-8, base64: U3TDtnJ1bmc=
        assert_eq!(header_text("Störung"), "=?UTF-8?B?U3TDtnJ1bmc=?=");
    }

    #[test]
    fn topics_and_long_bodies() {
        assert!(valid_topic("alerts_alice-1"));
        assert!(!valid_topic("a/b") && !valid_topic("") && !valid_topic(&"x".repeat(65)));
        let cut = cut_bytes(&"ä".repeat(3000), 4096);
        assert!(cut.len() <= 4096 && cut.ends_with('…'));
        assert_eq!(cut_bytes("short", 4096), "short");
    }
}
