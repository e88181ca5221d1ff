//! E1: `GET api/v1/info/`, the token check OnCall runs when the operator saves the token.

use axum::Json;
use axum::extract::{OriginalUri, Request, State};
use serde::Serialize;

use super::{AppState, prefix_of};

/// The answer: where OnCall reaches this relay.
#[derive(Serialize)]
pub struct Info {
    url: String,
}

/// Answers `{"url": "<public URL of this relay, ending with />"}`.
///
/// Reads the request in place: OnCall polls this often, and extracting the headers and the
/// URIs by value would copy them for every answer.
pub async fn info(State(state): State<AppState>, req: Request) -> Json<Info> {
    let uri = req.uri();
    let original = req
        .extensions()
        .get::<OriginalUri>()
        .map_or(uri, |original| &original.0);
    let url = state.public_root(req.headers(), &prefix_of(original, uri));
    Json(Info { url })
}
