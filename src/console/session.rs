//! Console sessions: a random id in an HttpOnly, SameSite=Lax cookie (Secure behind https),
//! and only its SHA-256 in the database, with the person, the admin flag and the form token.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use sha2::{Digest, Sha256};

use super::{Base, ConsoleError};
use crate::cloud_api::AppState;
use crate::directory::User;
use crate::store::now_ms;

/// The session cookie's name.
pub const COOKIE: &str = "relay_console";

/// A signed-in visitor.
#[derive(Debug, Clone)]
pub struct Session {
    /// The person, when signed in as one (an admin with the token has none).
    pub user: Option<Arc<User>>,
    /// May see and change everyone.
    pub admin: bool,
    /// The token every form of this session must carry.
    pub csrf: String,
}

impl Session {
    /// Whether this session may see and act on `user`'s profile.
    pub fn may_see(&self, user: &User) -> bool {
        self.admin || self.user.as_ref().is_some_and(|u| u.id == user.id)
    }

    /// What templates show of the signed-in visitor.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "admin": self.admin,
            "csrf": self.csrf,
            "name": self.user.as_ref().map(|u| if u.name.is_empty() { u.email.clone() } else { u.name.clone() }),
            "id": self.user.as_ref().map(|u| u.id.clone()),
        })
    }
}

/// A fresh random value for a cookie or a form token.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
}

/// Starts a session; answers the `Set-Cookie` value to send.
pub async fn start(
    state: &AppState,
    base: &Base,
    user_id: Option<&str>,
    admin: bool,
) -> Result<HeaderValue, ConsoleError> {
    let id = random_token();
    let now = now_ms();
    let ttl = state.console.settings.session_ttl;
    let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    {
        let _guard = state.store.write_guard().await;
        // Expired sessions go when someone signs in: no background task needed.
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(state.store.pool())
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_id, admin, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash(&id))
        .bind(user_id.unwrap_or(""))
        .bind(i64::from(admin))
        .bind(random_token())
        .bind(now)
        .bind(expires)
        .execute(state.store.pool())
        .await?;
    }
    Ok(cookie(state, base, &id, ttl.as_secs()))
}

/// Ends the session the request carries, if any; answers the cookie that clears it.
pub async fn end(state: &AppState, base: &Base, headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = cookie_value(headers, COOKIE) {
        let _guard = state.store.write_guard().await;
        let deleted = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(hash(&id))
            .execute(state.store.pool())
            .await;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "cannot delete a console session");
        }
    }
    cookie(state, base, "", 0)
}

fn cookie(state: &AppState, base: &Base, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let path = if base.0.is_empty() { "/" } else { &base.0 };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("relay_console=; Max-Age=0"))
}

/// The value of cookie `name` in the request.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The live session of a request, if any.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, ConsoleError> {
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Ok(None);
    };
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT user_id, admin, csrf FROM console_sessions WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(hash(&id))
    .bind(now_ms())
    .fetch_optional(state.store.pool())
    .await?;
    let Some((user_id, admin, csrf)) = row else {
        return Ok(None);
    };
    let user = if user_id.is_empty() {
        None
    } else {
        match state.directory.by_id(&user_id).await? {
            Some(user) if user.active => Some(user),
            // Removed or deactivated since signing in: the session is over.
            _ => return Ok(None),
        }
    };
    // A person whose Grafana role is admin administers the console too.
    let admin = admin != 0
        || user
            .as_ref()
            .is_some_and(|u| u.role == crate::roles::Role::Admin);
    Ok(Some(Session { user, admin, csrf }))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    /// No session (or an expired one): off to the sign-in page, coming back here after.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Session, Response> {
        let base = Base::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        match current(state, &parts.headers).await {
            Ok(Some(session)) => Ok(session),
            Ok(None) => {
                let here = parts
                    .extensions
                    .get::<axum::extract::OriginalUri>()
                    .map(|u| u.0.to_string())
                    .unwrap_or_default();
                let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
                Err(base.redirect(&format!("/console/signin?next={next}")))
            }
            Err(e) => Err(e.page(&base)),
        }
    }
}

/// A session that must be an admin's; others get a 403 page.
pub struct Admin(pub Session);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, Response> {
        let session = Session::from_request_parts(parts, state).await?;
        if session.admin {
            return Ok(Admin(session));
        }
        let base = Base::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        Err(super::render::message(
            axum::http::StatusCode::FORBIDDEN,
            &base,
            "Admins only",
            "This page is for admins.",
        )
        .into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; relay_console=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie_value(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&headers, "relay"), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("relay_console="));
        assert_eq!(
            cookie_value(&headers, COOKIE),
            None,
            "an emptied cookie is no session"
        );
    }

    #[test]
    fn only_a_hash_of_the_id_is_stored() {
        let id = random_token();
        assert_eq!(id.len(), 43, "32 random bytes");
        assert_ne!(hash(&id), id);
        assert_eq!(hash(&id), hash(&id));
    }
}
