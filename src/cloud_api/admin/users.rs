//! Admin routes for the directory: users and their devices.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Invalid, Missing, Page};
use crate::cloud_api::extract::FormOrJson;
use crate::cloud_api::{ApiError, AppState};
use crate::directory::{Device, NewUser, User, UserPatch};

/// The `{user}` of a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct UserPath {
    /// Email or public id.
    user: String,
}

/// The `{token}` of a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct TokenPath {
    /// Push registration token.
    token: String,
}

/// List users
#[utoipa::path(
    get, path = "/users", tag = "users",
    responses((status = 200, body = Page<User>))
)]
pub(super) async fn list_users(
    State(state): State<AppState>,
) -> Result<Json<Page<User>>, ApiError> {
    Ok(Json(state.directory.list().await?.into()))
}

/// Add a user
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body = NewUser,
    responses((status = 201, body = User), Invalid)
)]
pub(super) async fn create_user(
    State(state): State<AppState>,
    FormOrJson(new): FormOrJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.directory.add(new).await?)))
}

/// One user
#[utoipa::path(
    get, path = "/users/{user}", tag = "users",
    params(UserPath),
    responses((status = 200, body = User), Missing)
)]
pub(super) async fn get_user(
    State(state): State<AppState>,
    Path(UserPath { user }): Path<UserPath>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.directory.get(&user).await?))
}

/// A change to a user as the API takes it: `phone_number: null` removes the number; an
/// empty contact value removes the contact.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBody {
    email: Option<String>,
    name: Option<String>,
    username: Option<String>,
    #[serde(default, deserialize_with = "present")]
    phone_number: Option<Option<String>>,
    role: Option<String>,
    active: Option<bool>,
    timezone: Option<String>,
    /// Language tag such as `de` or `pt-BR`; empty removes it.
    language: Option<String>,
    #[serde(default)]
    contacts: BTreeMap<String, String>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Change a user (phone_number: null removes the number; an empty contact value removes the contact)
#[utoipa::path(
    patch, path = "/users/{user}", tag = "users",
    params(UserPath),
    request_body = PatchBody,
    responses((status = 200, body = User), Invalid, Missing)
)]
pub(super) async fn update_user(
    State(state): State<AppState>,
    Path(UserPath { user }): Path<UserPath>,
    Json(body): Json<PatchBody>,
) -> Result<Json<User>, ApiError> {
    let patch = UserPatch {
        email: body.email,
        name: body.name,
        username: body.username,
        phone_number: body.phone_number,
        role: body.role,
        active: body.active,
        timezone: body.timezone,
        language: body.language,
        contacts: body.contacts,
    };
    Ok(Json(state.directory.update(&user, patch).await?))
}

/// Remove a user
#[utoipa::path(
    delete, path = "/users/{user}", tag = "users",
    params(UserPath),
    responses((status = 204, description = "Removed"), Missing)
)]
pub(super) async fn remove_user(
    State(state): State<AppState>,
    Path(UserPath { user }): Path<UserPath>,
) -> Result<StatusCode, ApiError> {
    state.directory.remove(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List devices, unassigned ones included
#[utoipa::path(
    get, path = "/devices", tag = "devices",
    responses((status = 200, body = Page<Device>))
)]
pub(super) async fn list_devices(
    State(state): State<AppState>,
) -> Result<Json<Page<Device>>, ApiError> {
    Ok(Json(state.directory.devices().await?.into()))
}

/// A device assignment as the API takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceBody {
    /// Email or public id of the owner.
    user: String,
    /// Free text, e.g. "Alice's phone".
    label: Option<String>,
}

/// Assign a device token to a user
#[utoipa::path(
    put, path = "/devices/{token}", tag = "devices",
    params(TokenPath),
    request_body = DeviceBody,
    responses((status = 200, body = Device), Invalid, Missing)
)]
pub(super) async fn assign_device(
    State(state): State<AppState>,
    Path(TokenPath { token }): Path<TokenPath>,
    FormOrJson(body): FormOrJson<DeviceBody>,
) -> Result<Json<Device>, ApiError> {
    let device = state
        .directory
        .assign_device(&token, &body.user, body.label.as_deref())
        .await?;
    Ok(Json(device))
}

/// Forget a device
#[utoipa::path(
    delete, path = "/devices/{token}", tag = "devices",
    params(TokenPath),
    responses((status = 204, description = "Removed"), Missing)
)]
pub(super) async fn remove_device(
    State(state): State<AppState>,
    Path(TokenPath { token }): Path<TokenPath>,
) -> Result<StatusCode, ApiError> {
    state.directory.remove_device(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}
