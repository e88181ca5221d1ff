//! `POST /hooks/mattermost`: clicks on a page's interactive buttons. Mattermost signs nothing;
//! the button's context carries a one-click link token (signed, expiring, single-use), and the
//! clicking member must be the `mattermost` contact of the person the page went to.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

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
