//! Admission of calls and SMS: caps per kind (limits) and repeated identical requests (dedup).

use sqlx::Row;

use super::{Kind, NotifyError};
use crate::config::{Cap, DedupSettings, LimitsSettings};
use crate::store::{Store, now_ms};

/// What to do with a request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Queue it; remember its key when deduplication is on.
    Accept {
        /// Key of user, kind and message.
        dedup_key: Option<String>,
    },
    /// The same was accepted a moment ago: record it as a duplicate of that one.
    Duplicate {
        /// Key of user, kind and message.
        dedup_key: String,
        /// The notification it repeats.
        of: i64,
    },
}

/// Limits and deduplication.
#[derive(Debug, Clone)]
pub struct Gate {
    store: Store,
    limits: LimitsSettings,
    dedup: DedupSettings,
}

impl Gate {
    /// A gate enforcing `limits` and `dedup` against `store`.
    pub fn new(store: Store, limits: LimitsSettings, dedup: DedupSettings) -> Gate {
        Gate {
            store,
            limits,
            dedup,
        }
    }

    fn cap(&self, kind: Kind) -> Cap {
        match kind {
            Kind::Call => self.limits.call,
            Kind::Sms => self.limits.sms,
            Kind::Push | Kind::Heartbeat | Kind::Schedule => Cap::default(),
        }
    }

    /// Decides whether a notification for `user_id` may be queued.
    pub async fn admit(
        &self,
        kind: Kind,
        user_id: &str,
        message: &str,
    ) -> Result<Admission, NotifyError> {
        let now = now_ms();
        let dedup_key = (!self.dedup.window.is_zero()).then(|| dedup_key(kind, user_id, message));
        if let Some(key) = &dedup_key {
            let since = now - self.dedup.window.as_millis() as i64;
            // The key hashes user and kind: their index finds the window's rows, and the key
            // is read from it.
            let earlier: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM notifications WHERE user_id = $1 AND kind = $2 AND created_at >= $3 \
                 AND dedup_key = $4 AND status <> 'duplicate' ORDER BY id LIMIT 1",
            )
            .bind(user_id.to_string())
            .bind(kind.as_str())
            .bind(since)
            .bind(key.clone())
            .fetch_optional(self.store.pool())
            .await?;
            if let Some(of) = earlier {
                return Ok(Admission::Duplicate {
                    dedup_key: key.clone(),
                    of,
                });
            }
        }
        let cap = self.cap(kind);
        if cap.per_user > 0 || cap.total > 0 {
            let since = now - self.limits.window.as_millis() as i64;
            if cap.per_user > 0 {
                let row = sqlx::query(
                    "SELECT count(*) AS n FROM notifications WHERE user_id = $1 AND kind = $2 AND created_at >= $3 \
                     AND status NOT IN ('duplicate', 'refused')",
                )
                .bind(user_id.to_string())
                .bind(kind.as_str())
                .bind(since)
                .fetch_one(self.store.pool())
                .await?;
                if row.try_get::<i64, _>("n")? as u64 >= cap.per_user {
                    return Err(NotifyError::LimitExceeded);
                }
            }
            if cap.total > 0 {
                let row = sqlx::query(
                    "SELECT count(*) AS n FROM notifications WHERE created_at >= $1 AND kind = $2 AND status NOT IN ('duplicate', 'refused')",
                )
                .bind(since)
                .bind(kind.as_str())
                .fetch_one(self.store.pool())
                .await?;
                if row.try_get::<i64, _>("n")? as u64 >= cap.total {
                    return Err(NotifyError::LimitExceeded);
                }
            }
        }
        Ok(Admission::Accept { dedup_key })
    }
}

/// FNV-1a over user, kind and message: stable across releases, unlike std's hasher.
fn dedup_key(kind: Kind, user_id: &str, message: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        user_id.as_bytes(),
        b"\0",
        kind.as_str().as_bytes(),
        b"\0",
        message.as_bytes(),
    ] {
        for &b in part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are stored, so they must stay the same across releases: the expected values are
    /// 64-bit FNV-1a of `user \0 kind \0 message`, computed outside this code.
    #[test]
    fn dedup_key_matches_known_fnv1a_values() {
        let cases = [
            (Kind::Sms, "U1", "hi", "054f6ff902ed66ed"),
            (Kind::Call, "U1", "hi", "14e074f6765adeec"),
            (Kind::Sms, "U2", "hi", "5bba8c79b9debd96"),
            (Kind::Sms, "U1", "hi!", "f362101ff965aca4"),
            (Kind::Sms, "", "", "1c84ff2f74816a98"),
            (Kind::Call, "", "", "6ab95b136b88df7d"),
        ];
        for (kind, user, message, expected) in cases {
            assert_eq!(
                dedup_key(kind, user, message),
                expected,
                "{user:?} {message:?}"
            );
        }
    }

    #[test]
    fn equal_inputs_give_equal_keys_and_different_ones_differ() {
        let (user, message) = (String::from("U1"), String::from("hi"));
        assert_eq!(
            dedup_key(Kind::Sms, "U1", "hi"),
            dedup_key(Kind::Sms, &user, &message)
        );
        let keys = [
            dedup_key(Kind::Sms, "U1", "hi"),
            dedup_key(Kind::Call, "U1", "hi"),
            dedup_key(Kind::Sms, "U2", "hi"),
            dedup_key(Kind::Sms, "U1", "hi!"),
            // The separators keep a byte from moving between user and message unnoticed.
            dedup_key(Kind::Sms, "U1h", "i"),
            dedup_key(Kind::Sms, "U", "1hi"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
