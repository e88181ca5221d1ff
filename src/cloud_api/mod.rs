//! The endpoints OnCall calls on "Grafana Cloud", and the routes around them.
//!
//! Every API route lives in [`router`]. Paths answer with and without a trailing slash (the
//! server trims it before routing, without redirecting) and under `app.path_prefix` as well
//! as at the root, since engines before v1.0.12 dropped the prefix.

mod admin;
mod auth;
mod error;
mod extract;
pub mod hooks;
mod info;
mod integrations;
mod metrics;
mod notifications;
mod pages;
mod push;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::TokenCheck;
pub use error::{ApiError, KeepBody};
pub use metrics::spawn_refresh as spawn_metrics_refresh;

use crate::directory::Directory;
use crate::heartbeat::Heartbeats;
use crate::notify::{Acceptor, Gate};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The shared parts behind [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Accepted tokens.
    pub tokens: TokenCheck,
    /// Admin API tokens; `None` turns the admin API off.
    pub admin_tokens: Option<TokenCheck>,
    /// Tokens a scraper must present for `/metrics`; `None`: open.
    pub metrics_tokens: Option<TokenCheck>,
    /// `debug: true`: profiling endpoints on the admin API.
    pub debug: bool,
    /// The configured public URL (ends with `/`), if any.
    pub public_url: Option<String>,
    /// The user directory.
    pub directory: Directory,
    /// Entry to the durable queue.
    pub acceptor: Acceptor,
    /// The database, for readiness checks.
    pub store: Store,
    /// Integrations and heartbeats.
    pub heartbeats: Heartbeats,
    /// Tracked on-call schedules.
    pub schedules: crate::schedules::Schedules,
    /// Limits and deduplication of calls and SMS.
    pub gate: Gate,
    /// Backend for pushes to assigned devices (`None`: the default).
    pub push_route: Option<String>,
    /// Backend for pushes to unassigned devices (`None`: the default).
    pub push_fallback_route: Option<String>,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Counters and histograms served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Providers' webhooks (Twilio's call status).
    pub hooks: hooks::Hooks,
    /// When `/readyz` last found the database answering; probes run one at a time.
    pub ready_at: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// The acknowledge loop: OnCall's webhooks and people's replies.
    pub ack: crate::ack::Ack,
    /// What OnCall's webhooks must present; `None`: the receiver is off.
    pub oncall_webhook_tokens: Option<TokenCheck>,
    /// Generic SMS gateways that post replies, by backend name.
    pub sms_replies: std::collections::BTreeMap<String, crate::config::ReplySettings>,
    /// The web console's settings.
    pub console: crate::console::ConsoleConfig,
    /// Signing secrets of Slack apps whose buttons post clicks, by backend name.
    pub slack_secrets: std::collections::BTreeMap<String, crate::config::Secret>,
    /// Tokens of Mattermost slash commands (`/oncall`), by backend name.
    pub mattermost_commands: std::collections::BTreeMap<String, crate::config::Secret>,
}

impl AppState {
    /// Wraps the shared parts.
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    /// The public root URL (with a trailing `/`): `app.hostname` when set, otherwise what the
    /// request itself says (forwarded headers first), plus the path prefix it came through.
    pub fn public_root(&self, headers: &HeaderMap, prefix: &str) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let scheme = header("x-forwarded-proto")
            .filter(|s| s == "http" || s == "https")
            .unwrap_or_else(|| "http".into());
        let host = header("x-forwarded-host")
            .or_else(|| header("host"))
            .unwrap_or_else(|| "localhost".into());
        format!("{scheme}://{host}{}/", prefix.trim_end_matches('/'))
    }
}

/// The whole HTTP application (before trailing-slash trimming, which wraps it).
pub fn router(state: AppState, path_prefix: &str, body_limit: usize) -> Router {
    let api = Router::new()
        .route("/api/v1/info", get(info::info))
        .route("/api/v1/users", get(users::list))
        .route("/api/v1/make_call", post(notifications::make_call))
        .route("/api/v1/send_sms", post(notifications::send_sms))
        .route(
            "/api/v1/integrations",
            post(integrations::create).get(integrations::list),
        )
        .route("/mobile_app/v1/fcm_relay", post(push::relay))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let open = Router::new()
        .route(
            "/integrations/v1/formatted_webhook/{token}/heartbeat",
            get(integrations::beat).post(integrations::beat),
        )
        .route("/health", get(healthz))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route("/hooks/oncall", post(hooks::oncall::webhook))
        .route("/hooks/sms/{backend}", post(hooks::sms::reply))
        .route("/hooks/slack/{backend}", post(hooks::slack::click))
        .route("/hooks/mattermost", post(hooks::mattermost::click))
        .route(
            "/hooks/mattermost/{backend}/command",
            post(hooks::mattermost::command),
        )
        .route(
            "/act/{token}",
            get(hooks::act::confirm).post(hooks::act::act),
        )
        .route(
            "/hooks/twilio/{backend}/status",
            post(hooks::twilio::status),
        )
        .route("/hooks/twilio/{backend}/sms", post(hooks::twilio::sms))
        .route("/hooks/twilio/{backend}/voice", post(hooks::twilio::voice));
    // Without the console, OnCall's links still lead to a page saying how numbers are managed.
    let console = if state.console.settings.enabled {
        crate::console::router()
    } else {
        Router::new().route("/a/{*rest}", any(pages::oncall_link))
    };
    let routes = api
        .merge(open)
        .merge(console)
        .nest("/api/admin/v1", admin::router(state.clone()));
    let mut app = routes.clone();
    let prefix = path_prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        app = app.nest(prefix, routes);
    }
    let app = app
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ));
    outer_layers(app, body_limit).with_state(state)
}

/// The layers every answer passes through: the body limit, JSON for every error, and the
/// panic catcher, innermost of the three so that a panic also answers JSON.
pub fn outer_layers<S>(app: Router<S>, body_limit: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    app.layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(middleware::from_fn(error::json_errors))
}

/// A handler panicked: the request gets a JSON 500 and the process keeps serving. The panic
/// message may quote request data, so only its length is logged.
fn panic_answer(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let len = panic
        .downcast_ref::<String>()
        .map(String::len)
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.len()))
        .unwrap_or(0);
    ApiError::Internal(format!("a handler panicked (message of {len} bytes)")).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// Liveness: the process answers.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// How long a successful readiness probe answers further probes: anyone may call `/readyz`,
/// and a flood of probes must not take the connections make_call needs.
const READY_FOR: Duration = Duration::from_secs(1);

/// Readiness: the database answers (probed at most once per [`READY_FOR`] while it does).
async fn readyz(State(state): State<AppState>) -> Response {
    let mut ready_at = state.ready_at.lock().await;
    if ready_at.is_some_and(|at| at.elapsed() < READY_FOR) {
        return Json(json!({"status": "ok", "database": "ok"})).into_response();
    }
    let probe = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(state.store.pool());
    let outcome = tokio::time::timeout(Duration::from_secs(2), probe).await;
    *ready_at = matches!(outcome, Ok(Ok(_))).then(std::time::Instant::now);
    drop(ready_at);
    match outcome {
        Ok(Ok(_)) => Json(json!({"status": "ok", "database": "ok"})).into_response(),
        Ok(Err(e)) => ApiError::Unavailable(format!("database: {e}")).into_response(),
        Err(_) => ApiError::Unavailable("database: timed out".into()).into_response(),
    }
}

/// The path prefix a nested request came through (empty at the root).
pub(crate) fn prefix_of(original: &axum::http::Uri, inner: &axum::http::Uri) -> String {
    let full = original.path();
    let rest = inner.path();
    if full.len() > rest.len() && full.ends_with(rest) {
        full[..full.len() - rest.len()].to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panic_answers_json_500_and_serving_goes_on() {
        let app = outer_layers(
            Router::new()
                .route("/boom", get(boom))
                .route("/ok", get(healthz)),
            1024,
        );
        let response = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 500);
        assert!(
            response.headers()[axum::http::header::CONTENT_TYPE]
                .to_str()
                .expect("content type")
                .starts_with("application/json")
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(value["detail"], "Internal server error.");
        let again = app
            .oneshot(Request::get("/ok").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(again.status().as_u16(), 200);
    }
}
