//! Form tokens: every form of a session carries the session's token, and every POST is
//! checked against it. The sign-in form, before any session exists, uses a cookie holding a
//! random token that the form must repeat (a forged cross-site post cannot read it).
//!
//! Handlers take their form through [`Posted`], [`AdminPosted`] or [`SignInPosted`], which
//! check the token before the handler runs: no POST handler can forget it.

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::session::{Admin, Session, cookie_value, random_token};
use super::{Base, render};
use crate::cloud_api::AppState;

/// A form that carries a token in its `csrf` field.
pub trait Tokened {
    /// The token the form sent.
    fn token(&self) -> Option<&str>;
}

/// Implements [`Tokened`] for forms with a `csrf: Option<String>` field.
macro_rules! tokened {
    ($($form:ty),*) => {
        $(impl $crate::console::csrf::Tokened for $form {
            fn token(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        })*
    };
}
pub(crate) use tokened;

/// Splits the request, reads `E` from its head and the form from its body.
async fn head_and_form<E, T>(req: Request, state: &AppState) -> Result<(Base, E, T), Response>
where
    E: FromRequestParts<AppState, Rejection = Response>,
    T: DeserializeOwned,
{
    let (mut parts, body) = req.into_parts();
    let base = Base::from_request_parts(&mut parts, state)
        .await
        .unwrap_or_default();
    let head = E::from_request_parts(&mut parts, state).await?;
    let Form(form) = Form::<T>::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((base, head, form))
}

/// A signed-in visitor's form, its token checked.
pub struct Posted<T> {
    /// Who posted it.
    pub session: Session,
    /// The fields.
    pub form: T,
}

impl<T: DeserializeOwned + Tokened + Send> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (base, session, form) = head_and_form::<Session, T>(req, state).await?;
        match check(&session, &base, form.token()) {
            Some(page) => Err(page),
            None => Ok(Posted { session, form }),
        }
    }
}

/// An admin's form, its token checked.
pub struct AdminPosted<T>(pub Posted<T>);

impl<T: DeserializeOwned + Tokened + Send> FromRequest<AppState> for AdminPosted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (base, Admin(session), form) = head_and_form::<Admin, T>(req, state).await?;
        match check(&session, &base, form.token()) {
            Some(page) => Err(page),
            None => Ok(AdminPosted(Posted { session, form })),
        }
    }
}

/// The sign-in form, its token checked against its cookie, with the request's prefix and
/// headers (the page answering it renders the form again with the same cookie).
pub struct SignInPosted<T> {
    /// The path prefix the request came through.
    pub base: Base,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The fields.
    pub form: T,
}

impl<T: DeserializeOwned + Tokened + Send> FromRequest<AppState> for SignInPosted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (base, Headers(headers), form) = head_and_form::<Headers, T>(req, state).await?;
        match check_signin(&headers, &base, form.token()) {
            Some(page) => Err(page),
            None => Ok(SignInPosted {
                base,
                headers,
                form,
            }),
        }
    }
}

/// The request's headers, as a head extractor with a page for a rejection.
struct Headers(HeaderMap);

impl FromRequestParts<AppState> for Headers {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &AppState,
    ) -> Result<Headers, Response> {
        Ok(Headers(parts.headers.clone()))
    }
}

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

/// Checks a session's form post: `Some` is the page refusing it.
fn check(session: &Session, base: &Base, sent: Option<&str>) -> Option<Response> {
    (!same(&session.csrf, sent.unwrap_or(""))).then(|| rejected(base))
}

/// The sign-in form's token from its cookie, or a new one with the cookie to set.
pub fn signin_token(
    headers: &HeaderMap,
    base: &Base,
    secure: bool,
) -> (String, Option<HeaderValue>) {
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

/// Checks a sign-in form's token against its cookie: `Some` is the page refusing it.
fn check_signin(headers: &HeaderMap, base: &Base, sent: Option<&str>) -> Option<Response> {
    let expected = cookie_value(headers, SIGNIN_COOKIE).unwrap_or_default();
    (!same(&expected, sent.unwrap_or(""))).then(|| rejected(base))
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
