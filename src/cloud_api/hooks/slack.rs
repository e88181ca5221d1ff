//! `POST /hooks/slack/<backend>`: clicks on a page's buttons (the Slack app's Interactivity
//! Request URL) and its `/oncall` slash command, signed with the app's signing secret.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ack::slack::{parse_click, verify};
use crate::cloud_api::{ApiError, AppState};

/// Verifies the click and answers at once; the action runs after, and its outcome replaces
/// the message (Slack waits 3 s at most for this answer).
pub async fn click(
    State(state): State<AppState>,
    Path(backend): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
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
    let field = |name: &str| {
        form_urlencoded::parse(&body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    // A slash command (the app's `/oncall`, with this same Request URL) asks who is on call.
    if let Some(command) = field("command") {
        return command_answer(&state, &command, &field("user_id").unwrap_or_default()).await;
    }
    let payload = field("payload")
        .ok_or_else(|| ApiError::BadRequest("no `payload` or `command` field".into()))?;
    // Anything but the relay's own buttons is acknowledged and ignored.
    if let Some(click) = parse_click(&payload) {
        let ack = state.ack.clone();
        tokio::spawn(async move { ack.slack_click(&backend, click).await });
    }
    Ok(StatusCode::OK.into_response())
}

/// The answer to a slash command, shown only to the member who asked, and only to members
/// the directory knows.
async fn command_answer(
    state: &AppState,
    command: &str,
    member: &str,
) -> Result<Response, ApiError> {
    let known = state.directory.by_contact("slack", member).await?.is_some();
    let text = match command.trim() {
        _ if !known => "Only people in the relay's directory can ask.".to_string(),
        "/oncall" => state.ack.on_call_text().await?,
        other => format!("Unknown command {other}: try /oncall."),
    };
    Ok(Json(json!({"response_type": "ephemeral", "text": text})).into_response())
}
