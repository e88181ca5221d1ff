//! Chat messages that carried a page, kept so that they can be edited later: once OnCall
//! reports the alert group acknowledged or resolved, the message in the chat says so and its
//! buttons go, and nobody presses "Acknowledge" on a page someone already took.

use sqlx::FromRow;

use crate::store::{Store, now_ms};

/// A sent chat message, with the notification it delivered.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ChatMessage {
    /// The notification it delivered.
    pub notification_id: i64,
    /// The backend that sent it.
    pub backend: String,
    /// The chat (Telegram chat id, Slack channel id).
    pub chat: String,
    /// The service's id of the message (Telegram's `message_id`, Slack's `ts`).
    pub reference: String,
    /// The text as sent.
    pub text: String,
    /// The alert group state the message last said, once edited.
    pub edited_state: Option<String>,
    /// The notification's text, as OnCall sent it.
    pub message: String,
    /// The notification's payload (a push's), as OnCall sent it.
    pub payload: Option<String>,
    /// When the notification was accepted (Unix ms).
    pub created_at: i64,
}

/// Records that `backend` delivered notification `id` as message `reference` in `chat`.
pub(crate) async fn record(
    store: &Store,
    id: i64,
    backend: &str,
    chat: &str,
    reference: &str,
    text: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO chat_messages (notification_id, backend, chat, reference, text, sent_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(backend)
    .bind(chat)
    .bind(reference)
    .bind(text)
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The chat messages sent to the person with lower-cased email `email_key` for notifications
/// accepted since `since`.
pub async fn sent_to(
    store: &Store,
    email_key: &str,
    since: i64,
) -> Result<Vec<ChatMessage>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.notification_id, c.backend, c.chat, c.reference, c.text, c.edited_state, \
                n.message, n.payload, n.created_at \
         FROM notifications n JOIN chat_messages c ON c.notification_id = n.id \
         WHERE LOWER(n.email) = $1 AND n.created_at >= $2",
    )
    .bind(email_key)
    .bind(since)
    .fetch_all(store.pool())
    .await
}

/// Notes that `message` now says the alert group is `state`.
pub async fn mark_edited(
    store: &Store,
    message: &ChatMessage,
    state: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE chat_messages SET edited_state = $1 \
         WHERE notification_id = $2 AND backend = $3 AND chat = $4 AND reference = $5",
    )
    .bind(state)
    .bind(message.notification_id)
    .bind(&message.backend)
    .bind(&message.chat)
    .bind(&message.reference)
    .execute(store.pool())
    .await?;
    Ok(())
}
