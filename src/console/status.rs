//! Admin pages about the relay's work: the events log with filters (refused requests
//! included) and the queue's retry and cancel, backends' circuits, schedules, and the
//! heartbeat integration OnCall links to.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::csrf::{AdminPosted, Posted, tokened};
use super::render::ctx;
use super::session::Admin;
use super::{Base, ConsoleError, render};
use crate::cloud_api::AppState;
use crate::notify::events::STATUSES;
use crate::notify::{EventFilter, breaker, events};

/// Events per page.
const PER_PAGE: usize = 50;

/// The events page's filters, as text: an unknown value is ignored with a note, not a 4xx.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    before: Option<String>,
}

const KINDS: [&str; 5] = ["call", "sms", "push", "heartbeat", "schedule"];

fn chosen(value: Option<String>, allowed: &[&str]) -> Option<String> {
    value.filter(|v| allowed.contains(&v.as_str()))
}

/// `GET /console/events?status=&kind=&user=&before=`.
pub async fn events(
    State(state): State<AppState>,
    base: Base,
    Admin(session): Admin,
    Query(q): Query<EventsQuery>,
) -> Response {
    let filter = EventFilter {
        status: chosen(q.status, &STATUSES),
        kind: chosen(q.kind, &KINDS),
        user: q
            .user
            .map(|u| u.trim().to_lowercase())
            .filter(|u| !u.is_empty()),
        before_id: q.before.and_then(|b| b.parse().ok()),
        since: None,
        limit: PER_PAGE,
    };
    let records = match events::list(&state.store, &filter).await {
        Ok(records) => records,
        Err(e) => return ConsoleError::from(e).page(&base),
    };
    let next_before = (records.len() == PER_PAGE)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    render::page(
        StatusCode::OK,
        &base,
        "events.html",
        ctx! {
            title => "Events", session => session.view(), records, next_before,
            statuses => STATUSES, kinds => KINDS,
            status => filter.status, kind => filter.kind, user => filter.user,
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
}

/// The queue action form: `retry` or `cancel`.
#[derive(Debug, Default, Deserialize)]
pub struct QueueForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

tokened!(QueueForm);

/// `POST /console/queue/<id>`: retries a failed notification or cancels a waiting one.
pub async fn queue_action(
    State(state): State<AppState>,
    base: Base,
    Path(id): Path<String>,
    AdminPosted(Posted { form: f, .. }): AdminPosted<QueueForm>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return render::message(
            StatusCode::NOT_FOUND,
            &base,
            "Not found",
            "There is no such notification.",
        );
    };
    let done = match f.action.as_deref() {
        Some("retry") => crate::notify::retry_failed(&state.store, id)
            .await
            .map(|changed| changed.then_some("queued again")),
        Some("cancel") => {
            crate::notify::cancel_pending(&state.store, &[id], "cancelled in the console")
                .await
                .map(|n| (n > 0).then_some("cancelled"))
        }
        _ => {
            return render::message(
                StatusCode::BAD_REQUEST,
                &base,
                "Unknown action",
                "Choose retry or cancel.",
            );
        }
    };
    match done {
        Ok(Some(what)) => render::message(
            StatusCode::OK,
            &base,
            "Done",
            &format!("Notification {id} {what}."),
        ),
        Ok(None) => render::message(
            StatusCode::CONFLICT,
            &base,
            "Nothing to do",
            "The notification is not in a state that allows this any more.",
        ),
        Err(e) => ConsoleError::from(e).page(&base),
    }
}

/// `GET /console/status`: backends' circuits, schedules and who is on duty, integrations.
pub async fn overview(
    State(state): State<AppState>,
    base: Base,
    Admin(session): Admin,
) -> Response {
    let circuits = match breaker::circuits(&state.store).await {
        Ok(c) => c,
        Err(e) => return ConsoleError::from(e).page(&base),
    };
    let schedules = state.schedules.on_call_now().await;
    let integrations = state.heartbeats.list(None).await;
    let (schedules, integrations) = match (schedules, integrations) {
        (Ok(s), Ok(i)) => (s, i),
        (Err(e), _) => return render::failure(&ConsoleError::Other(e.to_string())),
        (_, Err(e)) => return render::failure(&ConsoleError::Other(e.to_string())),
    };
    let backends: Vec<String> = state.console.backends.clone();
    render::page(
        StatusCode::OK,
        &base,
        "status.html",
        ctx! {
            title => "Status", session => session.view(), circuits, schedules, integrations, backends,
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
}

/// `GET a/grafana-oncall-app/integrations/<id>`: the heartbeat integration and its last beat.
pub async fn integration(
    State(state): State<AppState>,
    base: Base,
    Admin(session): Admin,
    Path(id): Path<String>,
) -> Response {
    let found = match state.heartbeats.list(None).await {
        Ok(list) => list.into_iter().find(|i| i.id == id),
        Err(e) => return render::failure(&ConsoleError::Other(e.to_string())),
    };
    let Some(integration) = found else {
        return render::message(
            StatusCode::NOT_FOUND,
            &base,
            "Not found",
            "There is no integration with this id.",
        );
    };
    render::page(
        StatusCode::OK,
        &base,
        "integration.html",
        ctx! {
            title => integration.name.clone(), session => session.view(), integration,
            heartbeat_timeout => humantime::format_duration(state.console.heartbeat_timeout).to_string(),
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
}
