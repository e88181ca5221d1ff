//! Token check for the cloud API.
//!
//! OnCall sends the whole token as the raw `Authorization` value; `Bearer <token>` is accepted
//! too because people test with curl. Every configured token is compared in constant time.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// The tokens this relay accepts.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    tokens: Vec<Vec<u8>>,
    allow_any: bool,
}

impl TokenCheck {
    /// Accepts any of `tokens`; with none configured, anything when `allow_any` is set.
    pub fn new(tokens: Vec<String>, allow_any: bool) -> TokenCheck {
        TokenCheck {
            tokens: tokens.into_iter().map(String::into_bytes).collect(),
            allow_any,
        }
    }

    /// Whether the raw `Authorization` value carries an accepted token.
    pub fn accepts(&self, header: &str) -> bool {
        if self.tokens.is_empty() {
            return self.allow_any;
        }
        let raw = header.trim();
        let bare = strip_scheme(raw);
        let mut ok = subtle::Choice::from(0);
        for token in &self.tokens {
            ok |= token.as_slice().ct_eq(raw.as_bytes());
            ok |= token.as_slice().ct_eq(bare.as_bytes());
        }
        ok.into()
    }
}

fn strip_scheme(raw: &str) -> &str {
    for scheme in ["Bearer ", "Token "] {
        // `get` rather than slicing: the value is whatever the caller sent, and a byte
        // offset may fall inside a multi-byte character.
        let matches = raw
            .get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme));
        if matches && let Some(rest) = raw.get(scheme.len()..) {
            return rest.trim_start();
        }
    }
    raw
}

/// The `Authorization` value as text (never logged: it may be a secret or attacker-made).
pub fn authorization(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Middleware: 403 `{"detail": "Invalid token."}` unless the request carries a good token.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // HeaderMap lookups ignore case, so `AUTHORIZATION` and `Authorization` both match.
    let header = authorization(req.headers());
    if state.tokens.accepts(&header) {
        next.run(req).await
    } else {
        ApiError::InvalidToken.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_bearer_tokens_are_accepted() {
        let check = TokenCheck::new(vec!["s3cret".into(), "other".into()], false);
        assert!(check.accepts("s3cret"));
        assert!(check.accepts("other"));
        assert!(check.accepts("Bearer s3cret"));
        assert!(check.accepts("bearer s3cret"));
        assert!(check.accepts("Token s3cret"));
        assert!(!check.accepts(""));
        assert!(!check.accepts("s3cre"));
        assert!(!check.accepts("s3cret2"));
        assert!(!check.accepts("Bearer wrong"));
    }

    #[test]
    fn non_ascii_values_are_refused_without_panicking() {
        let check = TokenCheck::new(vec!["s3cret".into()], false);
        for value in [
            "Beaé",
            "Bearé s3cret",
            "Tokeñ",
            "ééééééé",
            "Bearer é",
            "€",
            "Token\u{1F600}x",
        ] {
            assert!(!check.accepts(value), "{value}");
        }
        assert!(check.accepts("Bearer  s3cret"));
        assert!(!TokenCheck::new(vec!["é".into()], false).accepts("Bearer ê"));
        assert!(TokenCheck::new(vec!["é".into()], false).accepts("Bearer é"));
    }

    #[test]
    fn no_token_configured() {
        assert!(!TokenCheck::new(vec![], false).accepts("anything"));
        assert!(TokenCheck::new(vec![], true).accepts("anything"));
        // A configured token wins over allow_any.
        assert!(!TokenCheck::new(vec!["t".into()], true).accepts("anything"));
    }
}
