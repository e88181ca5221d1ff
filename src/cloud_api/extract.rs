//! Request extractors whose rejections use our JSON error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A body read as JSON when the content type says so, as a URL-encoded form otherwise
/// (OnCall posts forms; people testing with curl often post JSON).
#[derive(Debug)]
pub struct FormOrJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("application/json") || v.contains("+json")
            })
            .unwrap_or(false);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {}", e.body_text()))
            }
        })?;
        let value = if is_json {
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
        } else {
            if std::str::from_utf8(&bytes).is_err() {
                return Err(ApiError::BadRequest(
                    "the form body is not valid UTF-8".into(),
                ));
            }
            serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| ApiError::BadRequest(format!("invalid form body: {e}")))?
        };
        Ok(FormOrJson(value))
    }
}
