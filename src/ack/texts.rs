//! What the relay delivered to a person, read for alert group keys (`I` + 12 characters, from a
//! push's `alertGroupId` or a title template) and OnCall's `#N` numbers and titles.

use sqlx::FromRow;

use super::api::is_alert_group_id;
use crate::store::Store;

/// One recent delivery to the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Alert group keys it carried.
    pub keys: Vec<String>,
    /// OnCall's alert group number, when the text names exactly one.
    pub number: Option<u64>,
    /// The title in OnCall's SMS or call text.
    pub title: Option<String>,
    /// When it was accepted (Unix ms).
    pub at: i64,
}

#[derive(FromRow)]
struct Row {
    message: String,
    payload: Option<String>,
    created_at: i64,
}

/// The last deliveries to the user with public id `user_id` since `since`, newest first.
pub async fn recent(store: &Store, user_id: &str, since: i64) -> Result<Vec<Sent>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT message, payload, created_at FROM notifications \
         WHERE user_id = $1 AND created_at >= $2 AND kind IN ('call', 'sms', 'push') \
         AND status NOT IN ('refused', 'duplicate') \
         ORDER BY created_at DESC LIMIT 20",
    )
    .bind(user_id)
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| read(&r.message, r.payload.as_deref(), r.created_at))
        .collect())
}

/// The notification `id`: its recipient's email and what it carried.
pub async fn by_id(store: &Store, id: i64) -> Result<Option<(String, Sent)>, sqlx::Error> {
    #[derive(FromRow)]
    struct One {
        email: String,
        message: String,
        payload: Option<String>,
        created_at: i64,
    }
    let row: Option<One> = sqlx::query_as(
        "SELECT email, message, payload, created_at FROM notifications WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(|r| {
        (
            r.email,
            read(&r.message, r.payload.as_deref(), r.created_at),
        )
    }))
}

/// Notifications to the people `email_keys` that still wait for delivery, with what they carry.
pub async fn pending(
    store: &Store,
    email_keys: &[String],
    since: i64,
) -> Result<Vec<(i64, Sent)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Pending {
        id: i64,
        message: String,
        payload: Option<String>,
        created_at: i64,
    }
    let mut found = Vec::new();
    for key in email_keys {
        let rows: Vec<Pending> = sqlx::query_as(
            "SELECT id, message, payload, created_at FROM notifications \
             WHERE status IN ('queued', 'awaiting_answer') AND LOWER(email) = $1 AND created_at >= $2",
        )
        .bind(key)
        .bind(since)
        .fetch_all(store.pool())
        .await?;
        found.extend(
            rows.into_iter()
                .map(|r| (r.id, read(&r.message, r.payload.as_deref(), r.created_at))),
        );
    }
    Ok(found)
}

pub(super) fn read(message: &str, payload: Option<&str>, at: i64) -> Sent {
    let mut keys = keys_in(message);
    if let Some(id) = payload
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| {
            p.pointer("/data/alertGroupId")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .filter(|id| is_alert_group_id(id))
    {
        keys.push(id);
    }
    keys.dedup();
    let numbers = numbers_in(message);
    Sent {
        keys,
        number: (numbers.len() == 1).then(|| numbers[0]),
        title: title_in(message),
        at,
    }
}

/// Alert group keys standing as words in `text`.
pub fn keys_in(text: &str) -> Vec<String> {
    let mut keys: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| is_alert_group_id(w))
        .map(str::to_string)
        .collect();
    keys.dedup();
    keys
}

/// OnCall's `#N` numbers in `text` (one for a single SMS or call, several for a bundle).
pub fn numbers_in(text: &str) -> Vec<u64> {
    text.split('#')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The title in OnCall's single SMS (`#17"Disk full" from stack:`) or call text (`with title
/// Disk full triggered 3 times`).
pub fn title_in(text: &str) -> Option<String> {
    if let Some((_, rest)) = text.split_once("\"")
        && let Some((title, _)) = rest.rsplit_once("\" from stack")
    {
        return Some(title.trim().to_string()).filter(|t| !t.is_empty());
    }
    let (_, rest) = text.split_once(" with title ")?;
    let (title, _) = rest.rsplit_once(" triggered ")?;
    Some(title.trim().to_string()).filter(|t| !t.is_empty())
}

/// Whether a delivery named alert group `group`: its key, or OnCall's text with its title.
pub(super) fn names(group: &super::registry::GroupRow, sent: &Sent) -> bool {
    sent.keys.contains(&group.id)
        || sent
            .title
            .as_deref()
            .is_some_and(|t| same_title(&group.title, t))
}

/// Whether two titles name the same alert: OnCall strips double quotes from call titles.
pub fn same_title(a: &str, b: &str) -> bool {
    let plain = |s: &str| s.replace('"', "").trim().to_lowercase();
    !a.trim().is_empty() && plain(a) == plain(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMS: &str = "Grafana OnCall: Alert group #17\"Disk full on db-1\" from stack: \"acme\", integration: Prometheus, alerts registered: 3.";
    const CALL: &str = "You are invited to check an Alert Group from Grafana OnCall. Alert via Prometheus with title Disk full on db-1 triggered 3 times";

    #[test]
    fn oncall_texts_give_number_and_title() {
        let sms = read(SMS, None, 1);
        assert_eq!(sms.number, Some(17));
        assert_eq!(sms.title.as_deref(), Some("Disk full on db-1"));
        assert!(sms.keys.is_empty());
        assert_eq!(title_in(CALL).as_deref(), Some("Disk full on db-1"));
        let bundle =
            "Grafana OnCall: Alert groups #4, #5, #6 from stack: \"acme\", integrations: A.";
        assert_eq!(numbers_in(bundle), vec![4, 5, 6]);
        assert_eq!(read(bundle, None, 1).number, None);
    }

    #[test]
    fn keys_come_from_titles_and_push_data() {
        let text = "Grafana OnCall: Alert group #3\"CPU [ref IABCDEFGH1234]\" from stack: \"s\", integration: X, alerts registered: 1.";
        assert_eq!(read(text, None, 1).keys, vec!["IABCDEFGH1234"]);
        let push = r#"{"title": "t", "data": {"alertGroupId": "IZZZZZZZZZZZZ"}}"#;
        assert_eq!(read("New alert", Some(push), 1).keys, vec!["IZZZZZZZZZZZZ"]);
        assert!(keys_in("INFORMATIONAL message").is_empty());
    }

    #[test]
    fn titles_match_without_quotes_and_case() {
        assert!(same_title("Disk \"full\"", "disk full"));
        assert!(!same_title("", ""));
    }
}
