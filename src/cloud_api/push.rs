//! E9: `POST mobile_app/v1/fcm_relay`, the mobile push relay.
//!
//! The engine's client has no timeout and retries 5xx ten times, so the push is validated,
//! committed to the queue and answered at once; delivery happens from the queue. The body
//! names only a device token: the device registry maps it to a user, and an unknown token
//! goes to the fallback route (and is registered, unassigned, for an operator to assign).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState};
use crate::notify::{Kind, NewNotification, Reason, Refusal};

/// Accepts one push; a malformed one is refused and put on record.
pub async fn relay(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let result = accept(&state, body).await;
    let problem = match &result {
        Err(ApiError::BadRequest(detail)) => Some(detail.clone()),
        Err(ApiError::Fields(fields)) => Some(
            fields
                .iter()
                .map(|(field, errors)| format!("{field}: {}", errors.join(" ")))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    };
    if let Some(problem) = problem {
        let refusal = Refusal::new(Kind::Push, "", &problem, Reason::InvalidRequest);
        state.acceptor.refuse(refusal);
    }
    result
}

async fn accept(state: &AppState, body: Bytes) -> Result<Response, ApiError> {
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the body must be a JSON Firebase message: {e}"))
    })?;
    let Value::Object(msg) = value else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    let mut missing = BTreeMap::new();
    let token = match msg.get("token") {
        Some(Value::String(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
        Some(_) => {
            missing.insert("token", vec!["Must be a non-empty string.".to_string()]);
            None
        }
        None => {
            missing.insert("token", vec!["This field is required.".to_string()]);
            None
        }
    };
    for field in ["data", "apns"] {
        match msg.get(field) {
            Some(Value::Object(_)) => {}
            Some(_) => {
                missing.insert(field, vec!["Must be an object.".to_string()]);
            }
            None => {
                missing.insert(field, vec!["This field is required.".to_string()]);
            }
        }
    }
    let (Some(token), true) = (token, missing.is_empty()) else {
        return Err(ApiError::Fields(missing));
    };
    let empty = Map::new();
    let data = msg.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let text = |key: &str| {
        data.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let aps = msg.get("apns").and_then(|a| a.pointer("/payload/aps"));
    let alert = aps.and_then(|a| a.get("alert"));
    let title = text("title")
        .or_else(|| alert.and_then(|a| a.get("title")).and_then(Value::as_str))
        .unwrap_or("Grafana OnCall")
        .to_string();
    let subtitle = text("subtitle")
        .or_else(|| {
            alert
                .and_then(|a| a.get("subtitle"))
                .and_then(Value::as_str)
        })
        .map(str::to_string);
    let org = text("orgName").map(str::to_string);
    let alert_group = text("alertGroupId").map(str::to_string);
    let important = text("type") == Some("oncall.critical_message")
        || aps
            .and_then(|a| a.get("interruption-level"))
            .and_then(Value::as_str)
            == Some("critical");

    let mut message = title.clone();
    if let Some(s) = &subtitle {
        message.push_str(" — ");
        message.push_str(s);
    }
    if let Some(o) = &org {
        message.push_str(&format!(" [{o}]"));
    }
    if let Some(g) = &alert_group {
        message.push_str(&format!(" (alert group {g})"));
    }

    let owner = state.directory.device_owner(&token).await?;
    if owner.is_none()
        && let Err(e) = state.directory.see_device(&token).await
    {
        // Registration is a convenience; the push itself must still go out.
        tracing::warn!(error = %e, "cannot register a new device token");
    }
    let route = match &owner {
        Some(_) => state.push_route.clone(),
        None => state.push_fallback_route.clone(),
    };
    let payload = json!({
        "title": title,
        "subtitle": subtitle,
        "org_name": org,
        "alert_group_id": alert_group,
        "important": important,
        "device_token": token,
        "assigned": owner.is_some(),
        "data": data,
    });
    let notification = match &owner {
        Some(user) => NewNotification {
            payload: Some(payload),
            route,
            ..NewNotification::to_user(Kind::Push, user, message)
        },
        None => NewNotification {
            payload: Some(payload),
            route,
            ..NewNotification::to_nobody(Kind::Push, message)
        },
    };
    state.acceptor.accept(notification).await?;
    Ok(StatusCode::OK.into_response())
}
