//! One-time codes for signing in and verifying a phone number: six digits, stored salted and
//! hashed, valid for `console.code_ttl`, void after `console.code_attempts` wrong guesses, at
//! most `console.codes_per_hour` per person.

use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ConsoleError;
use crate::config::ConsoleSettings;
use crate::store::{Store, now_ms};

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Signing in to the console.
    SignIn,
    /// Proving a phone number is the person's.
    Phone,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "signin",
            Purpose::Phone => "phone",
        }
    }
}

fn digest(salt: &str, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(b":");
    hasher.update(code.trim().as_bytes());
    format!("{:x}", hasher.finalize())
}

/// Makes and stores a code for `user_id` (`target`: the phone number being verified); answers
/// the code to send. Earlier unused codes of the same purpose stop counting.
pub async fn issue(
    store: &Store,
    settings: &ConsoleSettings,
    purpose: Purpose,
    user_id: &str,
    target: &str,
) -> Result<String, ConsoleError> {
    let now = now_ms();
    let _guard = store.write_guard().await;
    let (recent,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM console_codes WHERE user_id = $1 AND created_at > $2")
            .bind(user_id)
            .bind(now - 3_600_000)
            .fetch_one(store.pool())
            .await?;
    if recent >= i64::from(settings.codes_per_hour) {
        return Err(ConsoleError::RateLimited);
    }
    let (code, salt, id) = {
        let mut rng = rand::rng();
        let code = format!("{:06}", rng.random_range(0..1_000_000u32));
        let salt = format!("{:032x}", rng.random::<u128>());
        let id = format!("{:032x}", rng.random::<u128>());
        (code, salt, id)
    };
    sqlx::query("UPDATE console_codes SET used = 1 WHERE user_id = $1 AND purpose = $2")
        .bind(user_id)
        .bind(purpose.as_str())
        .execute(store.pool())
        .await?;
    // Rows older than a day serve no rate limit any more.
    sqlx::query("DELETE FROM console_codes WHERE created_at < $1")
        .bind(now - 86_400_000)
        .execute(store.pool())
        .await?;
    let ttl = i64::try_from(settings.code_ttl.as_millis()).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO console_codes (id, purpose, user_id, target, salt, code_hash, attempts, used, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $8)",
    )
    .bind(&id)
    .bind(purpose.as_str())
    .bind(user_id)
    .bind(target)
    .bind(&salt)
    .bind(digest(&salt, &code))
    .bind(now)
    .bind(now.saturating_add(ttl))
    .execute(store.pool())
    .await?;
    Ok(code)
}

/// Checks `code` against the person's live code; answers its target once it matches (the
/// code is then used up). A wrong guess counts against the code.
pub async fn redeem(
    store: &Store,
    settings: &ConsoleSettings,
    purpose: Purpose,
    user_id: &str,
    code: &str,
) -> Result<String, ConsoleError> {
    let _guard = store.write_guard().await;
    let row: Option<(String, String, String, i64)> = sqlx::query_as(
        "SELECT id, target, salt || ' ' || code_hash, attempts FROM console_codes \
         WHERE user_id = $1 AND purpose = $2 AND used = 0 AND expires_at > $3 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(now_ms())
    .fetch_optional(store.pool())
    .await?;
    let Some((id, target, salted, attempts)) = row else {
        return Err(ConsoleError::WrongCode);
    };
    let (salt, hash) = salted.split_once(' ').unwrap_or(("", ""));
    if attempts >= i64::from(settings.code_attempts) {
        return Err(ConsoleError::WrongCode);
    }
    let matches: bool = digest(salt, code).as_bytes().ct_eq(hash.as_bytes()).into();
    let sql = if matches {
        "UPDATE console_codes SET used = 1, attempts = attempts + 1 WHERE id = $1"
    } else {
        "UPDATE console_codes SET attempts = attempts + 1 WHERE id = $1"
    };
    sqlx::query(sql).bind(&id).execute(store.pool()).await?;
    if matches {
        Ok(target)
    } else {
        Err(ConsoleError::WrongCode)
    }
}
