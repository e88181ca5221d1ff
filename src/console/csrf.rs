//! Form tokens: every form of a session carries the session's token, and every POST is
//! checked against it. The sign-in form, before any session exists, uses a cookie holding a
//! random token that the form must repeat (a forged cross-site post cannot read it).

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::session::{Session, cookie_value, random_token};
use super::{Base, render};

/// The cookie of the sign-in form's token.
pub const SIGNIN_COOKIE: &str = "relay_console_form";

/// Whether `sent` is `expected`, compared in constant time.
fn same(expected: &str, sent: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(sent.as_bytes()))
}

/// The 403 page for a form without the right token (an old tab, or a forged post).
fn rejected(base: &Base) -> Response {
    render::message(
        StatusCode::FORBIDDEN,
        base,
        "Form expired",
        "This form is out of date or did not come from this console. Go back, reload the page and try again.",
    )
}

/// Checks a session's form post.
pub fn check(session: &Session, base: &Base, sent: Option<&str>) -> Result<(), Response> {
    if same(&session.csrf, sent.unwrap_or("")) {
        Ok(())
    } else {
        Err(rejected(base))
    }
}

/// The sign-in form's token from its cookie, or a new one with the cookie to set.
pub fn signin_token(headers: &HeaderMap, base: &Base, secure: bool) -> (String, Option<HeaderValue>) {
    if let Some(token) = cookie_value(headers, SIGNIN_COOKIE) {
        return (token, None);
    }
    let token = random_token();
    let path = if base.0.is_empty() { "/" } else { &base.0 };
    let secure = if secure { "; Secure" } else { "" };
    let cookie = HeaderValue::from_str(&format!(
        "{SIGNIN_COOKIE}={token}; Path={path}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok();
    (token, cookie)
}

/// Checks a sign-in form's token against its cookie.
pub fn check_signin(headers: &HeaderMap, base: &Base, sent: Option<&str>) -> Result<(), Response> {
    let expected = cookie_value(headers, SIGNIN_COOKIE).unwrap_or_default();
    if same(&expected, sent.unwrap_or("")) {
        Ok(())
    } else {
        Err(rejected(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_different_tokens_are_refused() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", ""));
        assert!(!same("", ""));
    }
}
