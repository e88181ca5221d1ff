//! The action buttons under a page in chat (Telegram, Slack): their labels and the data they
//! carry, `<code>:<notification id>`. The acknowledge loop (`crate::ack`) reads the data back
//! when a button is pressed.

use serde_json::{Value, json};

/// Minutes the Silence button silences for, as in OnCall's own phone menu.
pub const SILENCE_MINUTES: u32 = 30;

/// Code and label of each button, in order.
fn buttons() -> [(&'static str, String); 3] {
    [
        ("a", "Acknowledge".to_string()),
        ("r", "Resolve".to_string()),
        ("s", format!("Silence {SILENCE_MINUTES} min")),
    ]
}

/// Whether `kind` is a page a person can act on.
pub fn is_page(kind: &str) -> bool {
    matches!(kind, "call" | "sms" | "push")
}

/// The data of button `code` under notification `id` (at most 22 bytes: Telegram allows 64).
pub fn data(code: &str, id: i64) -> String {
    format!("{code}:{id}")
}

/// The code and notification id a button's data carries.
pub fn parse(data: &str) -> Option<(&str, i64)> {
    let (code, id) = data.split_once(':')?;
    Some((code, id.parse().ok()?))
}

/// Telegram's `reply_markup` for a page.
pub fn telegram_markup(id: i64) -> Value {
    let row: Vec<Value> = buttons()
        .into_iter()
        .map(|(code, text)| json!({"text": text, "callback_data": data(code, id)}))
        .collect();
    json!({ "inline_keyboard": [row] })
}

/// A Block Kit `actions` block for a page.
pub fn slack_block(id: i64) -> Value {
    let elements: Vec<Value> = buttons()
        .into_iter()
        .map(|(code, text)| {
            let mut b = json!({
                "type": "button",
                "text": {"type": "plain_text", "text": text},
                "action_id": format!("oncall_relay_{code}"),
                "value": data(code, id),
            });
            if code == "a" {
                b["style"] = json!("primary");
            }
            b
        })
        .collect();
    json!({"type": "actions", "elements": elements})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_and_fits_telegram() {
        let markup = telegram_markup(i64::MAX);
        for button in markup["inline_keyboard"][0].as_array().expect("row") {
            let d = button["callback_data"].as_str().expect("data");
            assert!(d.len() <= 64);
            assert_eq!(parse(d).map(|(_, id)| id), Some(i64::MAX));
        }
        assert_eq!(parse("a:"), None);
        assert_eq!(parse("a"), None);
        assert_eq!(slack_block(7)["elements"][2]["value"], "s:7");
    }
}
