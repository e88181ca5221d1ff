//! `POST /hooks/slack/<backend>`: clicks on a page's buttons, posted by the Slack app (its
//! Interactivity Request URL) and signed with its signing secret.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use crate::ack::slack::{parse_click, verify};
use crate::cloud_api::{ApiError, AppState};

/// Verifies the click and answers at once; the action runs after, and its outcome replaces
/// the message (Slack waits 3 s at most for this answer).
pub async fn click(
    State(state): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let now = crate::store::now_ms() / 1000;
    let genuine = state.slack_secrets.get(&backend).is_some_and(|secret| {
        verify(
            secret.expose(),
            header("x-slack-request-timestamp"),
            &body,
            header("x-slack-signature"),
            now,
        )
    });
    if !genuine {
        return Err(ApiError::InvalidToken);
    }
    let payload = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::BadRequest("no `payload` field".into()))?;
    // Anything but the relay's own buttons is acknowledged and ignored.
    if let Some(click) = parse_click(&payload) {
        let ack = state.ack.clone();
        tokio::spawn(async move { ack.slack_click(&backend, click).await });
    }
    Ok(StatusCode::OK)
}
