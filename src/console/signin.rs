//! Signing in: the admin token; a one-time code sent through the person's own route; or the
//! header a trusted reverse proxy sets (only from the addresses in `console.trusted_proxies`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::codes::{self, Purpose};
use super::csrf::{Posted, SignInPosted, tokened};
use super::render::ctx;
use super::session;
use super::{Base, ConsoleError, csrf, render};
use crate::cloud_api::AppState;
use crate::directory::User;
use crate::notify::{Kind, NewNotification};

/// Where to go after signing in.
#[derive(Debug, Default, Deserialize)]
pub struct Next {
    #[serde(default)]
    next: Option<String>,
    /// The email a code was just sent to: the page asks for the code.
    #[serde(default)]
    code_for: Option<String>,
}

/// The sign-in form's fields (all optional: a missing one is a message, not an error).
#[derive(Debug, Default, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    csrf: Option<String>,
}

tokened!(SignInForm);

/// Only a path on this site, never `//host` or `https://host`: after signing in, nobody is
/// sent elsewhere by a crafted link.
fn safe_next(base: &Base, next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => base.link("/console"),
    }
}

/// The person a trusted proxy names, when the request comes from one.
async fn proxied_user(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Option<Arc<User>>, ConsoleError> {
    let Some(name) = proxied_name(state, headers, peer) else {
        return Ok(None);
    };
    let user = state.directory.by_email_or_username(name).await?;
    Ok(user.filter(|u| u.active))
}

/// What a trusted proxy's header names, when the request comes from one.
fn proxied_name<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<&'h str> {
    let settings = &state.console.settings;
    let peer = peer?;
    if settings.trusted_proxies.is_empty() || !settings.trusted_proxies.contains(&peer.ip()) {
        return None;
    }
    let name = headers
        .get(settings.trusted_header.as_str())?
        .to_str()
        .ok()?
        .trim();
    Some(name)
}

/// The address the connection came from (absent when served without connection info).
pub struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Peer, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| *addr),
        ))
    }
}

/// Renders the sign-in page, with the code form when a code was just sent.
fn signin_page(
    state: &AppState,
    base: &Base,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    code_for: Option<&str>,
    error: Option<&str>,
) -> Response {
    let (token, cookie) = csrf::signin_token(headers, base, state.console.secure_cookies);
    let page = render::page(
        status,
        base,
        "signin.html",
        ctx! {
            title => "Sign in", next, csrf => token, code_for, error,
            admin_enabled => state.admin_tokens.is_some(),
        },
    );
    let mut response = page.unwrap_or_else(|e| render::failure(&e));
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Signs in and goes on to `next`.
async fn signed_in(
    state: &AppState,
    base: &Base,
    user: Option<&User>,
    admin: bool,
    next: &str,
) -> Response {
    match session::start(state, base, user.map(|u| u.id.as_str()), admin).await {
        Ok(cookie) => {
            let mut response = axum::response::Redirect::to(next).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => e.page(base),
    }
}

/// `GET /console/signin`: the form, or straight through for a person a trusted proxy names.
pub async fn form(
    State(state): State<AppState>,
    base: Base,
    Peer(peer): Peer,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Response {
    let next = safe_next(&base, q.next.as_deref());
    match proxied_user(&state, &headers, peer).await {
        Ok(Some(user)) => return signed_in(&state, &base, Some(&user), false, &next).await,
        Ok(None) => {}
        Err(e) => return e.page(&base),
    }
    let code_for = q
        .code_for
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    signin_page(
        &state,
        &base,
        &headers,
        StatusCode::OK,
        &next,
        code_for,
        None,
    )
}

/// `POST /console/signin`: the admin token signs in at once; an email gets a code sent.
pub async fn submit(State(state): State<AppState>, posted: SignInPosted<SignInForm>) -> Response {
    let (base, headers, f) = (&posted.base, &posted.headers, &posted.form);
    let next = safe_next(base, f.next.as_deref());
    let token = f.token.as_deref().unwrap_or("").trim();
    if !token.is_empty() {
        return match &state.admin_tokens {
            Some(tokens) if tokens.accepts(token) => {
                signed_in(&state, base, None, true, &next).await
            }
            _ => signin_page(
                &state,
                base,
                headers,
                StatusCode::UNAUTHORIZED,
                &next,
                None,
                Some("That token is not the admin token."),
            ),
        };
    }
    let email = f.email.as_deref().unwrap_or("").trim().to_string();
    if email.is_empty() {
        return signin_page(
            &state,
            base,
            headers,
            StatusCode::BAD_REQUEST,
            &next,
            None,
            Some("Enter the admin token, or your email to get a code."),
        );
    }
    let user = match state.directory.by_email(&email).await {
        Ok(user) => user,
        Err(e) => return ConsoleError::from(e).page(base),
    };
    // The same answer whether or not the email is known, so the form does not tell who is.
    if let Some(user) = user.filter(|u| u.active) {
        match send_code(&state, &user).await {
            Ok(()) => {}
            Err(ConsoleError::RateLimited) => {
                return signin_page(
                    &state,
                    base,
                    headers,
                    StatusCode::TOO_MANY_REQUESTS,
                    &next,
                    Some(&email),
                    Some(
                        "Too many codes were sent in the last hour; use the last one or try later.",
                    ),
                );
            }
            Err(e) => return e.page(base),
        }
    }
    // On to the code form with a GET, so reloading it does not send another code.
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("code_for", &email)
        .append_pair("next", &next)
        .finish();
    base.redirect(&format!("/console/signin?{query}"))
}

async fn send_code(state: &AppState, user: &User) -> Result<(), ConsoleError> {
    let code = codes::issue(
        &state.store,
        &state.console.settings,
        Purpose::SignIn,
        &user.id,
        "",
    )
    .await?;
    let message = format!("Your oncall-relay sign-in code is {code}");
    state
        .acceptor
        .accept(NewNotification::to_user(Kind::Sms, user, message))
        .await?;
    Ok(())
}

/// `POST /console/signin/code`: the code a person received.
pub async fn with_code(
    State(state): State<AppState>,
    posted: SignInPosted<SignInForm>,
) -> Response {
    let (base, headers, f) = (&posted.base, &posted.headers, &posted.form);
    let next = safe_next(base, f.next.as_deref());
    let email = f.email.as_deref().unwrap_or("").trim().to_string();
    let user = match state.directory.by_email(&email).await {
        Ok(user) => user.filter(|u| u.active),
        Err(e) => return ConsoleError::from(e).page(base),
    };
    let redeemed = match &user {
        Some(user) => {
            codes::redeem(
                &state.store,
                &state.console.settings,
                Purpose::SignIn,
                &user.id,
                f.code.as_deref().unwrap_or(""),
            )
            .await
        }
        None => Err(ConsoleError::WrongCode),
    };
    match (redeemed, user) {
        (Ok(_), Some(user)) => signed_in(&state, base, Some(&user), false, &next).await,
        (Err(ConsoleError::WrongCode), _) | (Ok(_), None) => signin_page(
            &state,
            base,
            headers,
            StatusCode::UNAUTHORIZED,
            &next,
            Some(&email),
            Some("That code is wrong or has expired."),
        ),
        (Err(e), _) => e.page(base),
    }
}

/// `POST /console/signout`.
pub async fn sign_out(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
    _: Posted<SignInForm>,
) -> Response {
    let cookie = session::end(&state, &base, &headers).await;
    let mut response = base.redirect("/console/signin");
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_followed_after_signing_in() {
        let base = Base("/relay".into());
        assert_eq!(
            safe_next(&base, Some("/relay/console/events")),
            "/relay/console/events"
        );
        for elsewhere in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "evil",
        ] {
            assert_eq!(
                safe_next(&base, Some(elsewhere)),
                "/relay/console",
                "{elsewhere}"
            );
        }
        assert_eq!(safe_next(&base, None), "/relay/console");
    }
}
