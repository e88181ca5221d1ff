//! `POST /hooks/mattermost`: clicks on a page's interactive buttons. Mattermost signs nothing;
//! the button's context carries a one-click link token (signed, expiring, single-use), and the
//! clicking member must be the `mattermost` contact of the person the page went to.
//!
//! `POST /hooks/mattermost/<backend>/command`: the `/oncall` slash command, which carries the
//! command's token.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::cloud_api::extract::FormOrJson;
use crate::cloud_api::{ApiError, AppState};

/// What Mattermost posts for a click (the fields used here).
#[derive(Debug, Deserialize)]
pub struct Click {
    #[serde(default)]
    user_name: String,
    #[serde(default)]
    context: Context,
}

/// The button's context, as the relay wrote it.
#[derive(Debug, Default, Deserialize)]
pub struct Context {
    #[serde(default)]
    token: String,
}

/// Acts and answers Mattermost: the buttons are replaced with what was done.
pub async fn click(
    State(state): State<AppState>,
    Json(click): Json<Click>,
) -> Result<Json<Value>, ApiError> {
    let answer = state
        .ack
        .follow_link_from(
            "mattermost",
            &click.context.token,
            Some(("mattermost", &click.user_name)),
        )
        .await?;
    // Only the person paged changes the post everyone sees.
    Ok(Json(match answer {
        Some(answer) => json!({
            "update": {"props": {"attachments": [{"text": answer}]}},
            "ephemeral_text": answer,
        }),
        None => json!({ "ephemeral_text": crate::ack::acting::STRANGER }),
    }))
}

/// What Mattermost posts for a slash command (the fields used here).
#[derive(Debug, Deserialize)]
pub struct Command {
    #[serde(default)]
    token: String,
    #[serde(default)]
    command: String,
}

/// Answers a slash command, to the member who asked only: `/oncall` says who is on call now.
/// A wrong token is 403; a backend without `command_token` is 404.
pub async fn command(
    State(state): State<AppState>,
    Path(backend): Path<String>,
    FormOrJson(command): FormOrJson<Command>,
) -> Result<Json<Value>, ApiError> {
    let Some(token) = state.mattermost_commands.get(&backend) else {
        return Err(ApiError::NotFound);
    };
    if !bool::from(token.expose().as_bytes().ct_eq(command.token.as_bytes())) {
        return Err(ApiError::InvalidToken);
    }
    let text = match command.command.trim() {
        "/oncall" => state.ack.on_call_text().await?,
        other => format!("Unknown command {other}: try /oncall."),
    };
    Ok(Json(json!({"response_type": "ephemeral", "text": text})))
}
