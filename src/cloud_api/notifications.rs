//! E7/E8: `POST api/v1/make_call` and `POST api/v1/send_sms`.
//!
//! 200 `{}` means committed to the durable queue; the call or SMS goes out afterwards, from a
//! worker. The engine never retries a non-200, so each answer must say exactly what happened.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::FormOrJson;
use super::{ApiError, AppState};
use crate::directory::parse_email;
use crate::notify::{Admission, Kind, NewNotification, NotifyError, Reason, Refusal};

/// The form OnCall posts.
#[derive(Debug, Deserialize)]
pub struct NotifyRequest {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Places a phone call.
pub async fn make_call(
    State(state): State<AppState>,
    FormOrJson(body): FormOrJson<NotifyRequest>,
) -> Result<Json<Value>, ApiError> {
    accept(&state, Kind::Call, body).await
}

/// Sends an SMS.
pub async fn send_sms(
    State(state): State<AppState>,
    FormOrJson(body): FormOrJson<NotifyRequest>,
) -> Result<Json<Value>, ApiError> {
    accept(&state, Kind::Sms, body).await
}

/// Handles one request; every refusal is put on record with the email as sent.
async fn accept(
    state: &AppState,
    kind: Kind,
    body: NotifyRequest,
) -> Result<Json<Value>, ApiError> {
    let sent_email = body.email.clone().unwrap_or_default();
    let sent_message = body.message.clone().unwrap_or_default();
    let refuse = |reason: Reason, user_id: Option<&str>, message: &str| {
        let refusal = Refusal::new(kind, &sent_email, message, reason);
        state.acceptor.refuse(match user_id {
            Some(id) => refusal.of_user(id),
            None => refusal,
        });
    };
    let mut fields = std::collections::BTreeMap::new();
    let email = match body.email.as_deref().map(parse_email) {
        None => {
            fields.insert("email", vec!["This field is required.".to_string()]);
            None
        }
        Some(Err(_)) => {
            fields.insert("email", vec!["Enter a valid email address.".to_string()]);
            None
        }
        Some(Ok(e)) => Some(e),
    };
    let message = match body.message {
        None => {
            fields.insert("message", vec!["This field is required.".to_string()]);
            None
        }
        Some(m) if m.trim().is_empty() => {
            fields.insert("message", vec!["This field may not be blank.".to_string()]);
            None
        }
        Some(m) => Some(m),
    };
    let (Some(email), Some(message)) = (email, message) else {
        let problems: Vec<String> = fields
            .iter()
            .map(|(field, errors)| format!("{field}: {}", errors.join(" ")))
            .collect();
        refuse(Reason::InvalidRequest, None, &problems.join("; "));
        return Err(ApiError::Fields(fields));
    };

    let Some(user) = state.directory.find_for_delivery(&email).await? else {
        refuse(Reason::UserNotFound, None, &sent_message);
        return Err(ApiError::UserNotFound);
    };
    if !user.phone_verified() {
        refuse(Reason::NumberNotVerified, Some(&user.id), &sent_message);
        return Err(ApiError::NumberNotVerified);
    }
    let mut notification = NewNotification::to_user(kind, &user, message);
    let admission = match state
        .gate
        .admit(kind, &user.id, &notification.message)
        .await
    {
        Err(NotifyError::LimitExceeded) => {
            refuse(Reason::LimitExceeded, Some(&user.id), &sent_message);
            return Err(ApiError::LimitExceeded);
        }
        other => other?,
    };
    match admission {
        Admission::Accept { dedup_key } => notification.dedup_key = dedup_key,
        Admission::Duplicate { dedup_key, of } => {
            tracing::info!(kind = %kind, user_id = %user.id, duplicate_of = of, "duplicate recorded, not delivered");
            notification.dedup_key = Some(dedup_key);
            notification.duplicate_of = Some(of);
        }
    }
    state.acceptor.accept(notification).await?;
    tracing::debug!(kind = %kind, user_id = %user.id, "notification accepted");
    Ok(Json(json!({})))
}
