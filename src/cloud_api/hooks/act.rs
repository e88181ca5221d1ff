//! `/act/<token>`: one-click action links. A GET shows what the link would do with a button; only
//! the POST acts (link previewers and mail scanners fetch every URL they see).

use axum::extract::{Path, State};
use axum::response::Html;

use crate::cloud_api::{ApiError, AppState};

/// The confirmation page.
pub async fn confirm(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    let preview = state.ack.preview_link(&token).await?;
    let label = preview.action;
    Ok(Html(page(
        &label,
        &format!(
            "<p>{}</p><form method=\"post\"><button type=\"submit\">{}</button></form>",
            escape(&preview.message),
            escape(&label)
        ),
    )))
}

/// Does what the link says, once.
pub async fn act(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    let outcome = state.ack.follow_link(&token).await?;
    Ok(Html(page(
        "oncall-relay",
        &format!("<p>{}</p>", escape(&outcome)),
    )))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title></head><body>{body}</body></html>",
        escape(title)
    )
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}
