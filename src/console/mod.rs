//! The web console: server-rendered pages under `app.path_prefix`, including the profile and
//! integration pages OnCall's own UI links to (`a/grafana-oncall-app/...`).
//!
//! Sign-in and sessions are in `session.rs` and `signin.rs`, the per-session form token in
//! `csrf.rs`, one-time codes in `codes.rs`; pages are one file per area. Every route is listed
//! in [`router`], mounted once from `cloud_api::router`.

mod codes;
mod csrf;
mod people;
mod profile;
mod render;
mod session;
mod signin;
mod status;

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::cloud_api::AppState;
use crate::config::{ConsoleSettings, Settings};

pub use render::Base;
pub use session::Session;

/// Errors of console operations; each becomes a page, never a JSON error.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A directory operation failed.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// Enqueueing a notification failed.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// Too many codes were asked for.
    #[error("too many codes were sent in the last hour; try again later")]
    RateLimited,
    /// The code is wrong, used up or expired.
    #[error("the code is wrong or has expired")]
    WrongCode,
    /// Another part of the relay failed (schedules, heartbeats).
    #[error("{0}")]
    Other(String),
    /// A page could not be rendered.
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
}

/// What the console needs beyond the shared application state.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// `console.*`.
    pub settings: ConsoleSettings,
    /// Cookies get `Secure` when the public URL is https.
    pub secure_cookies: bool,
    /// The configured backends' names, for the status page.
    pub backends: Vec<String>,
    /// `heartbeat.timeout`, shown beside an integration's last beat.
    pub heartbeat_timeout: std::time::Duration,
}

impl ConsoleConfig {
    /// The console's part of `settings`; cookies are secure when the public URL is https.
    pub fn new(settings: &Settings) -> ConsoleConfig {
        ConsoleConfig {
            settings: settings.console.clone(),
            secure_cookies: settings
                .public_url()
                .is_some_and(|u| u.starts_with("https://")),
            backends: settings.plugin.backends.keys().cloned().collect(),
            heartbeat_timeout: settings.heartbeat.timeout,
        }
    }
}

/// Every console route.
pub fn router() -> Router<AppState> {
    let oncall_links = Router::new()
        .route("/a/grafana-oncall-app/users", get(profile::oncall_link))
        .route("/a/grafana-irm-app/users", get(profile::oncall_link))
        .route("/a/grafana-oncall-app", get(profile::oncall_link))
        .route("/a/grafana-irm-app", get(profile::oncall_link))
        .route(
            "/a/grafana-oncall-app/integrations/{id}",
            get(status::integration),
        )
        .route(
            "/a/grafana-irm-app/integrations/{id}",
            get(status::integration),
        )
        .route("/a/{*rest}", get(home));
    let console = Router::new()
        .route("/console", get(home))
        .route("/console/style.css", get(render::stylesheet))
        .route("/console/signin", get(signin::form).post(signin::submit))
        .route("/console/signin/code", post(signin::with_code))
        .route("/console/signout", post(signin::sign_out))
        .route("/console/people", get(people::list))
        .route(
            "/console/people/new",
            get(people::new_form).post(people::create),
        )
        .route("/console/people/import", post(people::import))
        .route("/console/people/{id}", get(profile::page))
        .route(
            "/console/people/{id}/edit",
            get(people::edit_form).post(people::update),
        )
        .route("/console/people/{id}/test", post(profile::send_test))
        .route("/console/people/{id}/phone", post(profile::send_phone_code))
        .route(
            "/console/people/{id}/phone/confirm",
            post(profile::confirm_phone),
        )
        .route("/console/events", get(status::events))
        .route("/console/queue", get(status::queue))
        .route("/console/queue/{id}", post(status::queue_action))
        .route("/console/status", get(status::overview));
    oncall_links
        .merge(console)
        .layer(middleware::from_fn(no_store))
}

/// Pages show personal data: never cached by a browser or a proxy.
async fn no_store(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    // Pages carry no script and load nothing from elsewhere; profile addresses name people.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    // The console's own pages stay HTML; the framework's answers (405, a bad form) become
    // JSON errors like everywhere else.
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html {
        response.extensions_mut().insert(crate::cloud_api::KeepBody);
    }
    response
}

/// The console's start: people for admins, one's own profile for a person.
async fn home(base: Base, session: Session) -> Response {
    match &session.user {
        Some(user) if !session.admin => base.redirect(&format!("/console/people/{}", user.id)),
        _ => base.redirect("/console/people"),
    }
    .into_response()
}
