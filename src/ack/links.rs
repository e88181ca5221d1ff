//! One-click action links for e-mail, SMS and chat buttons: `/act/<token>`. A token names a
//! delivered notification and an action; it is signed with a key every replica shares (made
//! once and kept in the database), expires, and works once. Opening a link only shows a
//! confirmation: link previewers fetch URLs, so only a POST acts.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngExt;
use sha2::Sha256;

use super::AckError;
use super::command::{Action, DEFAULT_SILENCE_MINUTES};
use crate::store::Store;

/// How long a link works after the notification went out.
pub const LINK_LIFETIME: Duration = Duration::from_secs(3600);

const KEY_NAME: &str = "action_link_key";

/// What a link says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The notification it went out with.
    pub notification: i64,
    /// What it does.
    pub action: Action,
    /// Expiry (Unix ms).
    pub expires: i64,
    /// Makes each link unique, for single use.
    pub nonce: u64,
}

/// Why a link does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token this relay made (or altered).
    #[error("This link is not valid.")]
    Invalid,
    /// Too old.
    #[error("This link has expired.")]
    Expired,
    /// Already used once.
    #[error("This link was already used.")]
    Used,
}

/// The signing key of action links.
#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(***)")
    }
}

impl LinkKey {
    /// The shared key, made and stored by whichever replica needs it first.
    pub async fn load(store: &Store) -> Result<LinkKey, AckError> {
        let fresh: [u8; 32] = rand::rng().random();
        {
            let _guard = store.write_guard().await;
            sqlx::query(
                "INSERT INTO relay_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(KEY_NAME)
            .bind(URL_SAFE_NO_PAD.encode(fresh))
            .bind(crate::store::now_ms())
            .execute(store.pool())
            .await?;
        }
        let stored: String = sqlx::query_scalar("SELECT value FROM relay_secrets WHERE name = $1")
            .bind(KEY_NAME)
            .fetch_one(store.pool())
            .await?;
        let key = URL_SAFE_NO_PAD
            .decode(stored.trim())
            .map_err(|_| AckError::Config("the stored action link key is damaged".into()))?;
        Ok(LinkKey(key))
    }

    #[cfg(test)]
    fn from_bytes(key: &[u8]) -> LinkKey {
        LinkKey(key.to_vec())
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(payload);
        mac
    }

    /// A token for `action` on what `notification` carried, valid for [`LINK_LIFETIME`].
    pub fn sign(&self, notification: i64, action: Action, now: i64) -> String {
        let claim = Claim {
            notification,
            action,
            expires: now + LINK_LIFETIME.as_millis() as i64,
            nonce: rand::rng().random(),
        };
        let payload = format!(
            "{}.{}.{}.{:016x}",
            claim.notification,
            code(claim.action),
            claim.expires,
            claim.nonce
        );
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The links under `root` (ends with `/`) for notification `id`.
    pub fn links(&self, root: &str, id: i64, now: i64) -> super::ActionLinks {
        let url = |action| format!("{root}act/{}", self.sign(id, action, now));
        super::ActionLinks {
            acknowledge: url(Action::Acknowledge),
            resolve: url(Action::Resolve),
            silence: url(Action::Silence(DEFAULT_SILENCE_MINUTES)),
        }
    }

    /// Makes the links of pages as the delivery workers need them, as template values.
    pub fn maker(&self, root: String) -> crate::notify::backends::LinkMaker {
        let key = self.clone();
        crate::notify::backends::LinkMaker(std::sync::Arc::new(move |id| {
            serde_json::to_value(key.links(&root, id, crate::store::now_ms())).ok()
        }))
    }

    /// The claim of a genuine, unexpired token (whether it was used is the caller's check).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claim, LinkError> {
        let (payload, tag) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| LinkError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| LinkError::Invalid)?;
        // Constant-time comparison, inside `verify_slice`.
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| LinkError::Invalid)?;
        let text = String::from_utf8(payload).map_err(|_| LinkError::Invalid)?;
        let claim = parse(&text).ok_or(LinkError::Invalid)?;
        if claim.expires < now {
            return Err(LinkError::Expired);
        }
        Ok(claim)
    }
}

fn code(action: Action) -> String {
    match action {
        Action::Acknowledge => "a".into(),
        Action::Resolve => "r".into(),
        Action::Silence(m) => format!("s{m}"),
    }
}

fn parse(text: &str) -> Option<Claim> {
    let mut parts = text.split('.');
    let notification = parts.next()?.parse().ok()?;
    let action = match parts.next()? {
        "a" => Action::Acknowledge,
        "r" => Action::Resolve,
        s => Action::Silence(
            s.strip_prefix('s')?
                .parse()
                .unwrap_or(DEFAULT_SILENCE_MINUTES),
        ),
    };
    let expires = parts.next()?.parse().ok()?;
    let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some(Claim {
        notification,
        action,
        expires,
        nonce,
    })
}

/// Records the use of `claim`'s link; `Err(Used)` when it was used before.
pub async fn use_once(store: &Store, claim: &Claim, now: i64) -> Result<(), AckError> {
    let _guard = store.write_guard().await;
    let inserted = sqlx::query(
        "INSERT INTO used_links (nonce, used_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
    )
    .bind(format!("{:016x}", claim.nonce))
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(AckError::Link(LinkError::Used));
    }
    Ok(())
}

/// Forgets used links that have expired anyway.
pub async fn purge(store: &Store, now: i64) -> Result<u64, sqlx::Error> {
    let before = now - LINK_LIFETIME.as_millis() as i64;
    let _guard = store.write_guard().await;
    Ok(sqlx::query("DELETE FROM used_links WHERE used_at < $1")
        .bind(before)
        .execute(store.pool())
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_link_verifies_and_says_what_it_does() {
        let key = LinkKey::from_bytes(b"k");
        let token = key.sign(42, Action::Silence(120), 1_000);
        let claim = key.verify(&token, 2_000).expect("valid");
        assert_eq!(claim.notification, 42);
        assert_eq!(claim.action, Action::Silence(120));
        assert_ne!(
            key.sign(42, Action::Silence(120), 1_000),
            token,
            "each link is unique"
        );
    }

    #[test]
    fn altered_foreign_and_expired_links_do_nothing() {
        let key = LinkKey::from_bytes(b"k");
        let token = key.sign(42, Action::Acknowledge, 0);
        let later = LINK_LIFETIME.as_millis() as i64 + 1;
        assert_eq!(key.verify(&token, later), Err(LinkError::Expired));
        assert_eq!(
            LinkKey::from_bytes(b"other").verify(&token, 1),
            Err(LinkError::Invalid)
        );
        let (payload, tag) = token.split_once('.').expect("two parts");
        let forged = URL_SAFE_NO_PAD.encode(
            String::from_utf8(URL_SAFE_NO_PAD.decode(payload).expect("b64"))
                .expect("text")
                .replacen("42.a", "43.a", 1),
        );
        assert_eq!(
            key.verify(&format!("{forged}.{tag}"), 1),
            Err(LinkError::Invalid)
        );
        for junk in ["", ".", "abc", "a.b.c", "ü.ü"] {
            assert_eq!(key.verify(junk, 1), Err(LinkError::Invalid), "{junk}");
        }
    }
}
