//! The one place where errors become HTTP answers.
//!
//! Every error answer is a JSON object: the engine retries forever on a non-JSON 400 from
//! make_call/send_sms and crashes on a 400 without `detail` from integrations.

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::directory::DirectoryError;
use crate::heartbeat::HeartbeatError;
use crate::notify::NotifyError;

/// An error answer of the cloud API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong token: 403, the only status OnCall shows as "Invalid token".
    #[error("invalid token")]
    InvalidToken,
    /// No route here.
    #[error("not found")]
    NotFound,
    /// A feature this binary was built without.
    #[error("not built: {0}")]
    NotBuilt(&'static str),
    /// The admin API is off (no `app.admin_token`).
    #[error("admin API disabled")]
    AdminDisabled,
    /// An action link this relay did not make, or an altered one.
    #[error("invalid action link")]
    InvalidLink,
    /// An action link that expired or was used: 410.
    #[error("gone: {0}")]
    Gone(String),
    /// A heartbeat link nobody issued: 403, so that the engine creates its integration again.
    #[error("unknown heartbeat link")]
    UnknownHeartbeat,
    /// A provider's webhook without a valid signature.
    #[error("invalid signature")]
    BadSignature,
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The body is over `app.body_limit`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// Fields failed validation: `{"field": ["message"]}`.
    #[error("invalid fields")]
    Fields(BTreeMap<&'static str, Vec<String>>),
    /// The request as a whole is malformed: `{"detail": "..."}`.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No user with that email.
    #[error("user not found")]
    UserNotFound,
    /// The user has no phone number on file or is inactive.
    #[error("number not verified")]
    NumberNotVerified,
    /// A cap of `limits.*` is reached.
    #[error("limit exceeded")]
    LimitExceeded,
    /// Cannot accept now (storage down or too slow); OnCall records a failure.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request took longer than `app.write_timeout`.
    #[error("request timed out")]
    Timeout,
    /// A bug or an unexpected failure; logged, never echoed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// One field's validation error.
    pub fn field(name: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Fields(BTreeMap::from([(name, vec![message.into()])]))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidToken
            | ApiError::UnknownHeartbeat
            | ApiError::InvalidLink
            | ApiError::BadSignature => StatusCode::FORBIDDEN,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::NotFound | ApiError::UserNotFound | ApiError::AdminDisabled => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Fields(_)
            | ApiError::BadRequest(_)
            | ApiError::NumberNotVerified
            | ApiError::LimitExceeded => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotBuilt(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::InvalidToken => json!({"detail": "Invalid token."}),
            ApiError::NotFound => json!({"detail": "Not found."}),
            ApiError::NotBuilt(why) => json!({"detail": why}),
            ApiError::AdminDisabled => {
                json!({"detail": "The admin API is off: set app.admin_token to turn it on."})
            }
            ApiError::UnknownHeartbeat => json!({"detail": "Unknown heartbeat link."}),
            ApiError::InvalidLink => json!({"detail": "This link is not valid."}),
            ApiError::Gone(detail) => json!({"detail": detail}),
            ApiError::BadSignature => json!({"detail": "Invalid signature."}),
            ApiError::MethodNotAllowed => json!({"detail": "Method not allowed."}),
            ApiError::PayloadTooLarge => json!({"detail": "Request body too large."}),
            ApiError::Fields(fields) => json!(fields),
            ApiError::BadRequest(detail) => json!({"detail": detail}),
            ApiError::UserNotFound => json!({"error": "user-not-found"}),
            ApiError::NumberNotVerified => json!({"error": "number-not-verified"}),
            ApiError::LimitExceeded => json!({"error": "limit-exceeded"}),
            ApiError::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "answering 503");
                json!({"error": "failed"})
            }
            ApiError::Timeout => json!({"error": "failed", "detail": "Request timed out."}),
            ApiError::Internal(reason) => {
                tracing::error!(reason = %reason, "internal error");
                json!({"detail": "Internal server error."})
            }
        };
        (status, axum::Json(body)).into_response()
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Invalid { field, message } => ApiError::field(field, message),
            DirectoryError::NotFound(_) => ApiError::NotFound,
            DirectoryError::Duplicate { field, value } => {
                ApiError::field(field, format!("already exists: {value}"))
            }
            DirectoryError::Import { .. } => ApiError::BadRequest(e.to_string()),
            DirectoryError::Store(s) => ApiError::Unavailable(s.to_string()),
        }
    }
}

impl From<HeartbeatError> for ApiError {
    fn from(e: HeartbeatError) -> Self {
        match e {
            HeartbeatError::Invalid(m) => ApiError::BadRequest(m),
            HeartbeatError::Store(s) => ApiError::Unavailable(s.to_string()),
            HeartbeatError::Notify(n) => n.into(),
        }
    }
}

impl From<crate::schedules::ScheduleError> for ApiError {
    fn from(e: crate::schedules::ScheduleError) -> Self {
        use crate::schedules::ScheduleError;
        match e {
            ScheduleError::Invalid(m) => ApiError::BadRequest(m),
            ScheduleError::NotFound(_) => ApiError::NotFound,
            ScheduleError::Store(s) => ApiError::Unavailable(s.to_string()),
            ScheduleError::Notify(n) => n.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::ack::AckError> for ApiError {
    fn from(e: crate::ack::AckError) -> Self {
        use crate::ack::AckError;
        match e {
            AckError::Webhook(w) => ApiError::BadRequest(w.to_string()),
            AckError::Link(crate::ack::links::LinkError::Invalid) => ApiError::InvalidLink,
            AckError::Link(l) => ApiError::Gone(l.to_string()),
            AckError::Directory(d) => d.into(),
            AckError::Notify(n) => n.into(),
            AckError::Schedules(s) => s.into(),
            AckError::Store(s) => ApiError::Unavailable(s.to_string()),
            AckError::Oncall(m) => ApiError::Unavailable(format!("OnCall: {m}")),
            AckError::Config(m) => ApiError::Internal(m),
        }
    }
}

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Filter(m) => ApiError::BadRequest(m),
            NotifyError::LimitExceeded => ApiError::LimitExceeded,
            NotifyError::Unavailable(m) => ApiError::Unavailable(m),
            NotifyError::Store(s) => ApiError::Unavailable(s.to_string()),
            NotifyError::BackendConfig { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

/// Marks an error answer whose own body (a console page) must reach the browser unchanged.
#[derive(Debug, Clone, Copy)]
pub struct KeepBody;

/// Turns any error answer that is not JSON (from a layer or the framework) into one.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // JSON errors pass as they are, and so do the console's pages.
    if is_json || response.extensions().get::<KeepBody>().is_some() {
        return response;
    }
    let detail = status.canonical_reason().unwrap_or("Error");
    let mut replaced =
        (status, axum::Json(json!({"detail": format!("{detail}.")}))).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = response.headers().get(&name) {
            replaced.headers_mut().insert(name, v.clone());
        }
    }
    replaced
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    replaced
}
