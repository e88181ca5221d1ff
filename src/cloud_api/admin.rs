//! The admin API under `/api/admin/v1`: users, devices, integrations and events, for
//! operators and their tooling. It takes its own token (`app.admin_token`), never OnCall's,
//! and goes through the same directory and events code as the CLI.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::FormOrJson;
use super::{ApiError, AppState};
use crate::directory::{NewUser, UserPatch};
use crate::notify::{EventFilter, events};
use crate::schedules::{NewSchedule, Transport};

/// The admin routes, each behind the admin token.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{user}",
            get(get_user).patch(update_user).delete(remove_user),
        )
        .route("/devices", get(list_devices))
        .route("/devices/{token}", put(assign_device).delete(remove_device))
        .route("/integrations", get(list_integrations))
        .route("/schedules", get(list_schedules).post(add_schedule))
        .route(
            "/schedules/{key}",
            get(get_schedule).delete(remove_schedule),
        )
        .route("/events", get(list_events))
        .route("/debug/pprof/profile", get(profile))
        .route("/debug/pprof/flamegraph", get(flamegraph))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
        .route("/openapi.json", get(openapi))
}

async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.admin_tokens.is_none() {
        return ApiError::AdminDisabled.into_response();
    }
    let header = super::auth::authorization(req.headers());
    match &state.admin_tokens {
        Some(tokens) if tokens.accepts(&header) => next.run(req).await,
        _ => ApiError::InvalidToken.into_response(),
    }
}

async fn list_users(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users = state.directory.list().await?;
    Ok(Json(json!({ "count": users.len(), "results": users })))
}

async fn create_user(
    State(state): State<AppState>,
    FormOrJson(new): FormOrJson<NewUser>,
) -> Result<Response, ApiError> {
    let user = state.directory.add(new).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn get_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.directory.get(&user).await?).into_response())
}

/// A change to a user as the API takes it: `phone_number: null` removes the number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    email: Option<String>,
    name: Option<String>,
    username: Option<String>,
    #[serde(default, deserialize_with = "present")]
    phone_number: Option<Option<String>>,
    role: Option<String>,
    active: Option<bool>,
    timezone: Option<String>,
    #[serde(default)]
    contacts: BTreeMap<String, String>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn update_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
    Json(body): Json<PatchBody>,
) -> Result<Response, ApiError> {
    let patch = UserPatch {
        email: body.email,
        name: body.name,
        username: body.username,
        phone_number: body.phone_number,
        role: body.role,
        active: body.active,
        timezone: body.timezone,
        contacts: body.contacts,
    };
    Ok(Json(state.directory.update(&user, patch).await?).into_response())
}

async fn remove_user(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    state.directory.remove(&user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_devices(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let devices = state.directory.devices().await?;
    Ok(Json(json!({ "count": devices.len(), "results": devices })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    user: String,
    label: Option<String>,
}

async fn assign_device(
    State(state): State<AppState>,
    Path(token): Path<String>,
    FormOrJson(body): FormOrJson<DeviceBody>,
) -> Result<Response, ApiError> {
    let device = state
        .directory
        .assign_device(&token, &body.user, body.label.as_deref())
        .await?;
    Ok(Json(device).into_response())
}

async fn remove_device(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    state.directory.remove_device(&token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_integrations(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list = state.heartbeats.list(None).await?;
    Ok(Json(json!({ "count": list.len(), "results": list })))
}

/// Tracked schedules with who is on duty, the last poll and the last error.
async fn list_schedules(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list = state.schedules.list().await?;
    Ok(Json(json!({ "count": list.len(), "results": list })))
}

/// A schedule to track, as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    key: String,
    #[serde(default)]
    name: String,
    ical_url: String,
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    callback_url: String,
}

async fn add_schedule(
    State(state): State<AppState>,
    Json(body): Json<ScheduleBody>,
) -> Result<Response, ApiError> {
    let transport = Transport::parse(body.transport.as_deref().unwrap_or("local"))?;
    let schedule = state
        .schedules
        .add(
            NewSchedule {
                name: if body.name.trim().is_empty() {
                    body.key.clone()
                } else {
                    body.name
                },
                key: body.key,
                ical_url: body.ical_url,
                transport,
                callback_url: body.callback_url,
            },
            false,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(schedule)).into_response())
}

async fn get_schedule(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.schedules.get(&key).await?).into_response())
}

async fn remove_schedule(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    state.schedules.remove(&key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    since: Option<i64>,
    user: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
}

/// Notifications newest first, `limit` (≤ 500, default 50) at a time; `next_before` is the
/// `before` of the next page.
async fn list_events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "count": records.len(),
        "next_before": next_before,
        "results": records,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileQuery {
    seconds: Option<u64>,
}

fn profile_seconds(state: &AppState, q: &ProfileQuery) -> Result<u64, ApiError> {
    if !state.debug {
        return Err(ApiError::NotFound);
    }
    Ok(q.seconds.unwrap_or(10).clamp(1, 120))
}

/// CPU profile in pprof's protobuf format (`go tool pprof`), sampled for `seconds`.
async fn profile(
    State(state): State<AppState>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response, ApiError> {
    let seconds = profile_seconds(&state, &q)?;
    let bytes = cpu_profile(seconds, ProfileFormat::Pprof).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}

/// CPU profile as a flame graph (SVG), sampled for `seconds`.
async fn flamegraph(
    State(state): State<AppState>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response, ApiError> {
    let seconds = profile_seconds(&state, &q)?;
    let bytes = cpu_profile(seconds, ProfileFormat::Svg).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], bytes).into_response())
}

#[derive(Debug, Clone, Copy)]
enum ProfileFormat {
    Pprof,
    Svg,
}

#[cfg(feature = "profiling")]
async fn cpu_profile(seconds: u64, format: ProfileFormat) -> Result<Vec<u8>, ApiError> {
    use pprof::protos::Message;
    let fail = |e: pprof::Error| ApiError::Internal(format!("profiler: {e}"));
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(99)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(fail)?;
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    let report = guard.report().build().map_err(fail)?;
    let mut out = Vec::new();
    match format {
        ProfileFormat::Pprof => report
            .pprof()
            .map_err(fail)?
            .encode(&mut out)
            .map_err(|e| ApiError::Internal(format!("profile encoding: {e}")))?,
        ProfileFormat::Svg => report.flamegraph(&mut out).map_err(fail)?,
    }
    Ok(out)
}

#[cfg(not(feature = "profiling"))]
async fn cpu_profile(_seconds: u64, _format: ProfileFormat) -> Result<Vec<u8>, ApiError> {
    Err(ApiError::NotBuilt(
        "this build has no profiler: build with `cargo build --release --features profiling`",
    ))
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// The OpenAPI description of the routes above (a test checks both stay in step).
pub const OPENAPI: &str = include_str!("admin_openapi.json");
