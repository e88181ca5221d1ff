//! Admin pages about the relay's work: the events log with filters (refused requests
//! included), the queue with retry and cancel, backends' circuits, schedules, and the
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
            .map(|changed| changed.then_some("retried")),
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
        // Back to the queue with a GET, so reloading it does not post again.
        Ok(Some(what)) => base.redirect(&format!("/console/queue?done={what}&id={id}")),
        Ok(None) => render::message(
            StatusCode::CONFLICT,
            &base,
            "Nothing to do",
            "The notification is not in a state that allows this any more.",
        ),
        Err(e) => ConsoleError::from(e).page(&base),
    }
}

/// Rows the queue page lists per state.
const QUEUE_ROWS: usize = 50;

/// The queue page's query: what a queue action just did.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    id: Option<i64>,
}

/// `GET /console/queue`: what waits (new, retrying, waiting for a call's answer, being
/// delivered) and what failed, with retry and cancel.
pub async fn queue(
    State(state): State<AppState>,
    base: Base,
    Admin(session): Admin,
    Query(q): Query<QueueQuery>,
) -> Response {
    let list = |status: &str| {
        let filter = EventFilter {
            status: Some(status.to_string()),
            limit: QUEUE_ROWS,
            ..EventFilter::default()
        };
        let store = state.store.clone();
        async move { events::list(&store, &filter).await }
    };
    let (queued, awaiting, delivering, failed) = match tokio::try_join!(
        list("queued"),
        list("awaiting_answer"),
        list("delivering"),
        list("failed")
    ) {
        Ok(lists) => lists,
        Err(e) => return ConsoleError::from(e).page(&base),
    };
    // A queued row that was tried before is a retry waiting for its time.
    let (retrying, waiting): (Vec<_>, Vec<_>) = queued.into_iter().partition(|r| r.attempts > 0);
    let notice = match (q.done.as_deref(), q.id) {
        (Some("retried"), Some(id)) => Some(format!("Notification {id} queued again.")),
        (Some("cancelled"), Some(id)) => Some(format!("Notification {id} cancelled.")),
        _ => None,
    };
    render::page(
        StatusCode::OK,
        &base,
        "queue.html",
        ctx! {
            title => "Queue", session => session.view(),
            notice => notice.map(|text| ctx! { kind => "ok", text }),
            sections => vec![
                ctx! { name => "Waiting", help => "Not tried yet.", records => waiting },
                ctx! { name => "Retrying", help => "Tried before; due again after the backoff or the next step of the route.", records => retrying },
                ctx! { name => "Waiting for an answer", help => "Calls on a step that needs them answered.", records => awaiting },
                ctx! { name => "Being delivered", help => "Claimed by a worker now.", records => delivering },
                ctx! { name => "Failed", help => "Retries and route steps used up.", records => failed },
            ],
            per_section => QUEUE_ROWS,
        },
    )
    .unwrap_or_else(|e| render::failure(&e))
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
