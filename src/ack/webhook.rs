//! OnCall's outgoing webhooks, read leniently: the full event (`forward_all: true`) and the
//! short custom body of a personal-notification webhook (`{"alert_group_id", "email", "title"}`)
//! both give the alert group, who was paged and, for a status change, the new state.

use serde_json::Value;

use super::api::is_alert_group_id;
use super::registry::GroupUpdate;
use crate::directory::email_key;

/// What one webhook says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The alert group and what changed about it.
    pub group: GroupUpdate,
    /// Lower-cased emails of the people paged for it (empty for a status change).
    pub paged: Vec<String>,
}

/// Why a webhook body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not a JSON object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// No alert group id, or one that is not a public key.
    #[error("`alert_group_id` is missing or is not an alert group id (I + 12 characters)")]
    NoAlertGroup,
}

/// The state a trigger or a state value stands for: OnCall says `new` in its API and `firing`
/// in webhooks; triggers name the action.
fn state_of(word: &str) -> Option<&'static str> {
    match word.trim().to_lowercase().as_str() {
        "new" | "firing" | "unacknowledge" | "unresolve" | "unsilence" => Some("firing"),
        "acknowledge" | "acknowledged" => Some("acknowledged"),
        "resolve" | "resolved" => Some("resolved"),
        "silence" | "silenced" => Some("silenced"),
        _ => None,
    }
}

/// Triggers that say who is being paged rather than what changed.
fn pages_people(event_type: &str) -> bool {
    matches!(
        event_type.trim().to_lowercase().as_str(),
        "" | "personal notification"
            | "personal_notification"
            | "escalation"
            | "alert group created"
            | "alert_group_created"
            | "firing"
    )
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Reads a webhook body.
pub fn parse(body: &Value) -> Result<Event, WebhookError> {
    if !body.is_object() {
        return Err(WebhookError::NotAnObject);
    }
    let id = text(body, &["alert_group_id"])
        .or_else(|| text(body, &["alert_group", "id"]))
        .filter(|id| is_alert_group_id(id))
        .ok_or(WebhookError::NoAlertGroup)?;
    let event_type = text(body, &["event", "type"])
        .or_else(|| text(body, &["event"]))
        .or_else(|| text(body, &["trigger"]))
        .unwrap_or("");
    let group_state = text(body, &["alert_group", "state"]).or_else(|| text(body, &["state"]));
    // A status-change webhook carries the original event's type; the group's state wins
    // when both are there, since it is what the group is now.
    let state = group_state
        .and_then(state_of)
        .or_else(|| state_of(event_type))
        .map(str::to_string);
    let actor = text(body, &["user", "username"])
        .or_else(|| text(body, &["user", "email"]))
        .map(str::to_string);
    let mut paged = Vec::new();
    if pages_people(event_type) {
        let person = text(body, &["email"]).or_else(|| text(body, &["user", "email"]));
        paged.extend(person.map(email_key));
        if let Some(list) = body.get("users_to_be_notified").and_then(Value::as_array) {
            paged.extend(
                list.iter()
                    .filter_map(|u| text(u, &["email"]))
                    .map(email_key),
            );
        }
        paged.sort();
        paged.dedup();
    }
    let changes_state = !pages_people(event_type) && state.is_some();
    Ok(Event {
        group: GroupUpdate {
            id: id.to_string(),
            title: text(body, &["alert_group", "title"])
                .or_else(|| text(body, &["title"]))
                .map(str::to_string),
            state_by: actor.filter(|_| changes_state),
            state,
            permalink: text(body, &["alert_group", "permalinks", "web"]).map(str::to_string),
        },
        paged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "IABCDEFGH1234";

    #[test]
    fn personal_notification_short_body() {
        let e = parse(
            &json!({"alert_group_id": ID, "email": "Alice@Example.com", "title": "Disk full"}),
        )
        .expect("parsed");
        assert_eq!(e.paged, vec!["alice@example.com"]);
        assert_eq!(e.group.title.as_deref(), Some("Disk full"));
        assert_eq!(e.group.state, None);
    }

    #[test]
    fn escalation_full_event_pages_everyone_listed() {
        let e = parse(&json!({
            "event": {"type": "escalation"},
            "user": null,
            "alert_group": {"id": ID, "title": "CPU", "state": "firing", "permalinks": {"web": "https://oncall/a/IABCDEFGH1234"}},
            "alert_group_id": ID,
            "users_to_be_notified": [{"email": "b@x.org"}, {"email": "a@x.org"}, {"email": "b@x.org"}]
        }))
        .expect("parsed");
        assert_eq!(e.paged, vec!["a@x.org", "b@x.org"]);
        assert_eq!(e.group.state.as_deref(), Some("firing"));
        assert_eq!(e.group.state_by, None);
        assert_eq!(
            e.group.permalink.as_deref(),
            Some("https://oncall/a/IABCDEFGH1234")
        );
    }

    #[test]
    fn status_change_names_the_state_and_who() {
        let e = parse(&json!({
            "event": {"type": "acknowledge"},
            "user": {"username": "bob", "email": "bob@x.org"},
            "alert_group": {"id": ID, "state": "acknowledged"},
            "alert_group_id": ID
        }))
        .expect("parsed");
        assert!(e.paged.is_empty());
        assert_eq!(e.group.state.as_deref(), Some("acknowledged"));
        assert_eq!(e.group.state_by.as_deref(), Some("bob"));
        let un =
            parse(&json!({"event": {"type": "unresolve"}, "alert_group_id": ID})).expect("parsed");
        assert_eq!(un.group.state.as_deref(), Some("firing"));
    }

    #[test]
    fn bodies_without_a_group_are_refused() {
        assert_eq!(parse(&json!([1])), Err(WebhookError::NotAnObject));
        assert_eq!(
            parse(&json!({"email": "a@b.c"})),
            Err(WebhookError::NoAlertGroup)
        );
        assert_eq!(
            parse(&json!({"alert_group_id": "../../admin"})),
            Err(WebhookError::NoAlertGroup)
        );
    }
}
