//! E4/E5: `api/v1/integrations/` (OnCall's heartbeat integration) and E6: the heartbeat link.

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::FormOrJson;
use super::{ApiError, AppState, prefix_of};
use crate::heartbeat::Integration;

/// The form OnCall posts.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

fn describe(root: &str, i: &Integration) -> Value {
    let link = format!(
        "{root}integrations/v1/formatted_webhook/{}/",
        i.heartbeat_token
    );
    json!({
        "id": i.id,
        "name": i.name,
        "type": i.kind,
        "link": link,
        "heartbeat": {"link": format!("{link}heartbeat/")},
    })
}

/// Creates the integration, or returns the one with the same name (201 either way).
pub async fn create(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    FormOrJson(body): FormOrJson<CreateRequest>,
) -> Result<Response, ApiError> {
    let kind = body
        .kind
        .ok_or_else(|| ApiError::BadRequest("Integration type is required".into()))?;
    let name = body
        .name
        .ok_or_else(|| ApiError::BadRequest("Integration name is required".into()))?;
    let integration = state.heartbeats.create_or_get(&name, &kind).await?;
    let root = state.public_root(&headers, &prefix_of(&original, &uri));
    Ok((StatusCode::CREATED, Json(describe(&root, &integration))).into_response())
}

/// Lists integrations (optionally by exact `name`) in the paginated shape.
pub async fn list(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let name = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.into_owned());
    let found = state.heartbeats.list(name.as_deref()).await?;
    let root = state.public_root(&headers, &prefix_of(&original, &uri));
    let results: Vec<Value> = found.iter().map(|i| describe(&root, i)).collect();
    Ok(Json(json!({
        "count": results.len(),
        "next": null,
        "previous": null,
        "results": results,
        "page_size": results.len().max(1),
        "current_page_number": 1,
        "total_pages": 1,
    })))
}

/// The heartbeat link: no token, the link is the secret. 403 for an unknown link makes the
/// engine create its integration again.
pub async fn beat(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.heartbeats.beat(&token).await? {
        Ok(Json(json!({"status": "ok"})))
    } else {
        Err(ApiError::UnknownHeartbeat)
    }
}
