//! Refused requests on record: a make_call, send_sms or push that was answered with an error
//! (unknown user, no verified number, a limit, an invalid request) is stored as a notification
//! with status `refused`, so that `events list` and the admin API answer "why was nobody
//! called?" beside the delivered ones, with the same retention.
//!
//! The refusal path must stay fast and must not become a way to flood the database: the
//! handler only hands the record to a bounded buffer ([`BUFFER`]) and answers at once; the
//! group committer writes refusals in the same transactions as accepted notifications. When
//! the buffer is full the record is dropped and counted in
//! `oncall_relay_refusals_dropped_total`.

use super::Kind;
use crate::store::{pow2_chunks, values_placeholders};

/// Status of a refused request.
pub const REFUSED: &str = "refused";

/// Refusals waiting to be written; more are dropped (and counted) until the committer catches up.
pub(crate) const BUFFER: usize = 4096;

/// Longest message kept with a refusal, in characters: enough to recognise the alert.
const MESSAGE_CHARS: usize = 1000;

/// Largest number of rows in one multi-row statement.
const MAX_ROWS_PER_STATEMENT: usize = 128;

/// Why a request was refused, as answered to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No user with that email (`404 user-not-found`).
    UserNotFound,
    /// The user has no verified number or is inactive (`400 number-not-verified`).
    NumberNotVerified,
    /// A cap of `limits.*` is reached (`400 limit-exceeded`).
    LimitExceeded,
    /// The request failed validation (a missing or malformed field).
    InvalidRequest,
}

impl Reason {
    /// The name stored as the refusal's error and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UserNotFound => "user-not-found",
            Reason::NumberNotVerified => "number-not-verified",
            Reason::LimitExceeded => "limit-exceeded",
            Reason::InvalidRequest => "invalid-request",
        }
    }
}

/// One refused request, as sent.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What was asked for.
    pub kind: Kind,
    /// The email as sent (empty when none was sent).
    pub email: String,
    /// The user's public id when the directory knows the email, else empty.
    pub user_id: String,
    /// The message as sent (shortened), or what was wrong with the request.
    pub message: String,
    /// Why it was refused.
    pub reason: Reason,
    /// When it was refused (Unix ms).
    pub at: i64,
}

impl Refusal {
    /// A refusal of a request for `email`, now.
    pub fn new(kind: Kind, email: &str, message: &str, reason: Reason) -> Refusal {
        Refusal {
            kind,
            email: email.trim().to_string(),
            user_id: String::new(),
            message: message.chars().take(MESSAGE_CHARS).collect(),
            reason,
            at: crate::store::now_ms(),
        }
    }

    /// The same refusal, naming the directory's user.
    pub fn of_user(mut self, user_id: &str) -> Refusal {
        self.user_id = user_id.to_string();
        self
    }
}

/// Inserts `items` on `conn` (inside the committer's transaction) as final `refused` rows.
pub(crate) async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    items: &[Refusal],
    now: i64,
) -> Result<(), sqlx::Error> {
    const COLS: usize = 9;
    let mut offset = 0;
    for size in pow2_chunks(items.len(), MAX_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO notifications (kind, user_id, email, message, status, last_error, created_at, \
             updated_at, finished_at) VALUES {}",
            values_placeholders(size, COLS, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in &items[offset..offset + size] {
            // `finished_at` is the refusal's own time, so retention counts from it.
            q = q
                .bind(r.kind.as_str())
                .bind(r.user_id.clone())
                .bind(r.email.clone())
                .bind(r.message.clone())
                .bind(REFUSED)
                .bind(r.reason.as_str())
                .bind(r.at)
                .bind(now)
                .bind(r.at);
        }
        q.execute(&mut *conn).await?;
        offset += size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_shortened_on_a_character_boundary() {
        let r = Refusal::new(
            Kind::Sms,
            " Alice@Example.com ",
            &"é".repeat(5000),
            Reason::UserNotFound,
        );
        assert_eq!(r.message.chars().count(), MESSAGE_CHARS);
        assert_eq!(r.email, "Alice@Example.com");
        assert_eq!(r.of_user("U1").user_id, "U1");
    }
}
