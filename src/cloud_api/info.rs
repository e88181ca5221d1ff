//! E1: `GET api/v1/info/`, the token check OnCall runs when the operator saves the token.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};

use super::{AppState, prefix_of};

/// Answers `{"url": "<public URL of this relay, ending with />"}`.
pub async fn info(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Json<Value> {
    let url = state.public_root(&headers, &prefix_of(&original, &uri));
    Json(json!({ "url": url }))
}
