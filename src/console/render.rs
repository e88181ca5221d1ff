//! Templates, the stylesheet, redirects and error pages: how every console answer is made.

use std::sync::LazyLock;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::Environment;
use serde::Serialize;

use super::ConsoleError;

/// A template context like `minijinja::context!`, taking any `Serialize` value:
/// `ctx! { title => "People", page }`.
macro_rules! ctx {
    ($($key:ident $(=> $value:expr)?),* $(,)?) => {
        minijinja::context! { $($key => minijinja::Value::from(minijinja::value::Serde(&ctx!(@value $key $(, $value)?)))),* }
    };
    (@value $key:ident) => { $key };
    (@value $key:ident, $value:expr) => { $value };
}
pub(crate) use ctx;

/// The templates, compiled once; `.html` names turn on HTML auto-escaping.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    let sources: [(&str, &str); 11] = [
        ("base.html", include_str!("templates/base.html")),
        ("signin.html", include_str!("templates/signin.html")),
        ("profile.html", include_str!("templates/profile.html")),
        ("people.html", include_str!("templates/people.html")),
        (
            "person_form.html",
            include_str!("templates/person_form.html"),
        ),
        ("events.html", include_str!("templates/events.html")),
        ("queue.html", include_str!("templates/queue.html")),
        ("status.html", include_str!("templates/status.html")),
        (
            "integration.html",
            include_str!("templates/integration.html"),
        ),
        ("message.html", include_str!("templates/message.html")),
        (
            "events_table.html",
            include_str!("templates/events_table.html"),
        ),
    ];
    for (name, source) in sources {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "console template does not compile");
        }
    }
    env.add_filter("time", |ms: i64| crate::store::format_ms(ms));
    env
});

const STYLESHEET: &str = include_str!("templates/style.css");

/// The path prefix a request came through (empty at the root), for links and cookies.
#[derive(Debug, Clone, Default)]
pub struct Base(pub String);

impl Base {
    /// `path` (starting with `/`) under the prefix.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// A 303 to `path` under the prefix (after a form, the browser follows it with a GET).
    pub fn redirect(&self, path: &str) -> Response {
        Redirect::to(&self.link(path)).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Base, Self::Rejection> {
        let prefix = parts
            .extensions
            .get::<OriginalUri>()
            .map(|original| crate::cloud_api::prefix_of(&original.0, &parts.uri))
            .unwrap_or_default();
        Ok(Base(prefix))
    }
}

/// Renders `name` with `context` plus `base` (the prefix) as an HTML page.
pub fn page<C: Serialize>(
    status: StatusCode,
    base: &Base,
    name: &str,
    context: C,
) -> Result<Response, ConsoleError> {
    let template = TEMPLATES.get_template(name)?;
    let html = template.render(minijinja::context! {
        base => &base.0,
        ..minijinja::Value::from(minijinja::value::Serde(&context))
    })?;
    Ok((status, Html(html)).into_response())
}

/// A short page with a heading and one sentence (errors, confirmations).
pub fn message(status: StatusCode, base: &Base, title: &str, text: &str) -> Response {
    page(status, base, "message.html", ctx! { title, text }).unwrap_or_else(|e| failure(&e))
}

/// The page for a failure on our side; the details go to the log only.
pub fn failure(e: &ConsoleError) -> Response {
    tracing::error!(error = %e, "console page failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html("<!doctype html><title>Error</title><h1>Something went wrong</h1><p>The error is in the relay's log.</p>"),
    )
        .into_response()
}

impl ConsoleError {
    /// The page for this error: a person's mistake gets a 4xx explaining it, ours a 500.
    pub fn page(&self, base: &Base) -> Response {
        use crate::directory::DirectoryError;
        match self {
            ConsoleError::RateLimited => message(
                StatusCode::TOO_MANY_REQUESTS,
                base,
                "Too many codes",
                &self.to_string(),
            ),
            ConsoleError::WrongCode => message(
                StatusCode::BAD_REQUEST,
                base,
                "Wrong code",
                &self.to_string(),
            ),
            ConsoleError::Directory(DirectoryError::NotFound(_)) => message(
                StatusCode::NOT_FOUND,
                base,
                "Not found",
                "There is no such person in the directory.",
            ),
            ConsoleError::Directory(
                e @ (DirectoryError::Invalid { .. } | DirectoryError::Duplicate { .. }),
            ) => message(StatusCode::BAD_REQUEST, base, "Not saved", &e.to_string()),
            other => failure(other),
        }
    }
}

/// The console's one stylesheet (cached: it only changes with the binary).
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}
