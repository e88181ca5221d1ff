//! `POST /hooks/oncall`: OnCall's outgoing webhooks (personal notification, escalation, alert
//! group created, status change), authorised by `grafana.oncall.webhook_token`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::cloud_api::auth::authorization;
use crate::cloud_api::extract::FormOrJson;
use crate::cloud_api::{ApiError, AppState};

/// Records who was paged for an alert group, or its new state.
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormOrJson(body): FormOrJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let accepted = state
        .oncall_webhook_tokens
        .as_ref()
        .is_some_and(|t| t.accepts(&authorization(&headers)));
    if !accepted {
        return Err(ApiError::InvalidToken);
    }
    let event = state.ack.webhook(&body).await?;
    Ok(Json(json!({
        "alert_group_id": event.group.id,
        "state": event.group.state,
        "paged": event.paged.len(),
    })))
}
