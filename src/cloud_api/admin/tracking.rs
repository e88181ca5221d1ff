//! Admin routes for what the relay tracks: integrations, schedules and the events log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Invalid, Missing, Page};
use crate::cloud_api::{ApiError, AppState};
use crate::heartbeat::Integration;
use crate::notify::breaker::{self, CircuitChange, CircuitRecord};
use crate::notify::{EventFilter, NotificationRecord, NotifyError, events};
use crate::schedules::{NewSchedule, OnCallNow, Schedule, Transport};

/// The `{key}` of a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct KeyPath {
    /// Schedule key.
    key: String,
}

/// Integrations OnCall created, with heartbeat state
#[utoipa::path(
    get, path = "/integrations", tag = "integrations",
    responses((status = 200, body = Page<Integration>))
)]
pub(super) async fn list_integrations(
    State(state): State<AppState>,
) -> Result<Json<Page<Integration>>, ApiError> {
    Ok(Json(state.heartbeats.list(None).await?.into()))
}

/// Tracked schedules: who is on duty, last poll, last error
#[utoipa::path(
    get, path = "/schedules", tag = "schedules",
    responses((status = 200, body = Page<Schedule>))
)]
pub(super) async fn list_schedules(
    State(state): State<AppState>,
) -> Result<Json<Page<Schedule>>, ApiError> {
    Ok(Json(state.schedules.list().await?.into()))
}

/// Who is on call now, in every tracked schedule and in OnCall's own
///
/// OnCall's schedules (read through its public API when `grafana.oncall.url` and
/// `header_token` are set) come after the tracked ones, without those of the same name.
#[utoipa::path(
    get, path = "/oncall", tag = "schedules",
    responses((status = 200, body = Page<OnCallNow>))
)]
pub(super) async fn on_call_now(
    State(state): State<AppState>,
) -> Result<Json<Page<OnCallNow>>, ApiError> {
    Ok(Json(state.ack.on_call_now().await?.into()))
}

/// A schedule to track, as the API takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleBody {
    /// Unique key.
    key: String,
    /// Display name (the key when empty).
    #[serde(default)]
    name: String,
    /// iCal URL, or a path under `grafana.oncall.url`.
    ical_url: String,
    /// `local` (default) or `callback`.
    #[serde(default)]
    transport: Option<String>,
    /// Where `callback` posts.
    #[serde(default)]
    callback_url: String,
}

/// Track a schedule (changes are picked up by every replica without a restart)
#[utoipa::path(
    post, path = "/schedules", tag = "schedules",
    request_body = ScheduleBody,
    responses((status = 201, body = Schedule), Invalid)
)]
pub(super) async fn add_schedule(
    State(state): State<AppState>,
    Json(body): Json<ScheduleBody>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let transport = Transport::parse(body.transport.as_deref().unwrap_or("local"))?;
    let new = NewSchedule {
        name: if body.name.trim().is_empty() {
            body.key.clone()
        } else {
            body.name
        },
        key: body.key,
        ical_url: body.ical_url,
        transport,
        callback_url: body.callback_url,
    };
    let schedule = state.schedules.add(new, false).await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// One schedule with its status
#[utoipa::path(
    get, path = "/schedules/{key}", tag = "schedules",
    params(KeyPath),
    responses((status = 200, body = Schedule), Missing)
)]
pub(super) async fn get_schedule(
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
) -> Result<Json<Schedule>, ApiError> {
    Ok(Json(state.schedules.get(&key).await?))
}

/// Stop tracking a schedule
#[utoipa::path(
    delete, path = "/schedules/{key}", tag = "schedules",
    params(KeyPath),
    responses((status = 204, description = "Removed"), Missing)
)]
pub(super) async fn remove_schedule(
    State(state): State<AppState>,
    Path(KeyPath { key }): Path<KeyPath>,
) -> Result<StatusCode, ApiError> {
    state.schedules.remove(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The events log's filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Only notifications accepted at or after this time (Unix ms).
    since: Option<i64>,
    /// Email or id.
    user: Option<String>,
    /// `queued`, `delivering`, `awaiting_answer`, `delivered`, `failed`, `duplicate` or `refused`.
    status: Option<String>,
    /// `call`, `sms`, `push`, `heartbeat` or `schedule`.
    kind: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// Only ids below this (paging).
    before: Option<i64>,
}

/// A page of the events log.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EventsPage {
    /// Number of items in `results`.
    pub(super) count: usize,
    /// The `before` of the next page; `null` on the last one.
    pub(super) next_before: Option<i64>,
    /// The notifications, newest first.
    pub(super) results: Vec<NotificationRecord>,
}

/// Each backend's circuit breaker as last changed
///
/// `open`: skipped until `open_until`; `half_open`: one probe let through; a backend that
/// never opened is not listed (closed).
#[utoipa::path(
    get, path = "/circuits", tag = "backends",
    responses((status = 200, body = Page<CircuitRecord>))
)]
pub(super) async fn list_circuits(
    State(state): State<AppState>,
) -> Result<Json<Page<CircuitRecord>>, ApiError> {
    let circuits = breaker::circuits(&state.store)
        .await
        .map_err(NotifyError::from)?;
    Ok(Json(circuits.into()))
}

/// Filters of the circuit breakers' changes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CircuitChangesQuery {
    /// Only this backend.
    backend: Option<String>,
    /// Only changes at or after this time (Unix ms).
    since: Option<i64>,
    /// At most this many, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// Changes of the backends' circuit breakers, newest first
///
/// Each time a breaker opened (with the failure that opened it), let a probe through
/// (`half_open`) or closed, kept for `queue.retention`.
#[utoipa::path(
    get, path = "/circuits/changes", tag = "backends",
    params(CircuitChangesQuery),
    responses((status = 200, body = Page<CircuitChange>), Invalid)
)]
pub(super) async fn list_circuit_changes(
    State(state): State<AppState>,
    query: Result<Query<CircuitChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<CircuitChange>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let changes = breaker::changes(&state.store, q.backend.as_deref(), q.since, limit)
        .await
        .map_err(NotifyError::from)?;
    Ok(Json(changes.into()))
}

/// Notifications, newest first, with every delivery attempt
///
/// `limit` (≤ 500, default 50) at a time; `next_before` is the `before` of the next page.
#[utoipa::path(
    get, path = "/events", tag = "events",
    params(EventsQuery),
    responses((status = 200, body = EventsPage), Invalid)
)]
pub(super) async fn list_events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = EventFilter {
        since: q.since,
        user: q.user,
        status: q.status,
        kind: q.kind,
        limit,
        before_id: q.before,
    };
    let records = events::list(&state.store, &filter).await?;
    let next_before = (records.len() == limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(Json(EventsPage {
        count: records.len(),
        next_before,
        results: records,
    }))
}
