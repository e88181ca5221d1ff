//! `POST /hooks/sms/<backend>`: replies a generic SMS gateway posts (form or JSON), with the
//! field names and shared secret of that backend's `replies` settings.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cloud_api::auth::{TokenCheck, authorization};
use crate::cloud_api::extract::FormOrJson;
use crate::cloud_api::{ApiError, AppState};
use crate::notify::{Kind, NewNotification};

/// `?secret=` for gateways that can only be given a URL.
#[derive(Debug, Deserialize)]
pub struct SecretQuery {
    secret: Option<String>,
}

/// Acts on a reply and answers with the text for the person (`reply: null` for a stranger).
pub async fn reply(
    State(state): State<AppState>,
    Path(backend): Path<String>,
    Query(query): Query<SecretQuery>,
    headers: HeaderMap,
    FormOrJson(body): FormOrJson<Value>,
) -> Result<Json<Value>, ApiError> {
    // An unknown backend and a wrong secret look the same from outside.
    let Some(settings) = state.sms_replies.get(&backend) else {
        return Err(ApiError::InvalidToken);
    };
    let check = TokenCheck::new(vec![settings.secret.expose().to_string()], false);
    let presented = query.secret.unwrap_or_else(|| authorization(&headers));
    if settings.secret.expose().is_empty() || !check.accepts(&presented) {
        return Err(ApiError::InvalidToken);
    }
    let from = field(&body, &settings.from_field)
        .ok_or_else(|| ApiError::field("from", format!("`{}` is required", settings.from_field)))?;
    let text = field(&body, &settings.text_field).unwrap_or_default();
    let channel = format!("sms:{backend}");
    let answer = state.ack.sms_reply(&channel, &from, &text).await?;
    let Some((user, answer)) = answer else {
        return Ok(Json(json!({ "reply": null })));
    };
    if settings.answer_by_sms {
        let mut sms = NewNotification::to_user(Kind::Sms, &user, answer.clone());
        sms.route = Some(backend);
        if let Err(e) = state.acceptor.accept(sms).await {
            tracing::warn!(error = %e, "cannot queue the answer to a reply");
        }
    }
    Ok(Json(json!({ "reply": answer })))
}

/// The text at a dotted path of the body (`message.from`); numbers are read as text.
fn field(body: &Value, path: &str) -> Option<String> {
    let value = path.split('.').try_fold(body, |v, key| v.get(key))?;
    match value {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_by_dotted_path() {
        let body = json!({"from": "+4930123", "message": {"text": "ack", "n": 5}});
        assert_eq!(field(&body, "from").as_deref(), Some("+4930123"));
        assert_eq!(field(&body, "message.text").as_deref(), Some("ack"));
        assert_eq!(field(&body, "message.n").as_deref(), Some("5"));
        assert_eq!(field(&body, "message.none"), None);
    }
}
