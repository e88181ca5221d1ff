//! The admin API under `/api/admin/v1`: users, devices, integrations and events, for
//! operators and their tooling. It takes its own token (`app.admin_token`), never OnCall's,
//! and goes through the same directory and events code as the CLI.
//!
//! The routes and their OpenAPI document come from one list ([`routes`]): each handler
//! carries its `#[utoipa::path]`, so a route cannot be served undocumented, and the schemas
//! are derived from the types the handlers return.

mod profile;
mod tracking;
mod users;

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, AppState};

/// The admin routes, each behind the admin token, and the document describing them.
pub fn router(state: AppState) -> Router<AppState> {
    let (router, _) = routes()
        .route_layer(middleware::from_fn_with_state(state, require_admin))
        .split_for_parts();
    router.route("/openapi.json", get(openapi))
}

/// Every admin route with its description; the only place a route is added.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::remove_user
        ))
        .routes(routes!(users::list_devices))
        .routes(routes!(users::assign_device, users::remove_device))
        .routes(routes!(tracking::list_integrations))
        .routes(routes!(tracking::list_schedules, tracking::add_schedule))
        .routes(routes!(tracking::get_schedule, tracking::remove_schedule))
        .routes(routes!(tracking::on_call_now))
        .routes(routes!(tracking::list_events))
        .routes(routes!(tracking::list_circuits))
        .routes(routes!(tracking::list_circuit_changes))
        .routes(routes!(profile::profile))
        .routes(routes!(profile::flamegraph))
}

/// The OpenAPI document of the admin API, including `/openapi.json` itself.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    document_denied(&mut doc);
    doc.merge(OpenApiDocument::openapi());
    doc
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "oncall-relay admin API",
        version = "1",
        description = "Manage the user directory, devices and integrations, and read the events log. \
                       Authenticate with `Authorization: Bearer <app.admin_token>`."
    ),
    servers((url = "/api/admin/v1")),
    security(("adminToken" = [])),
    components(schemas(ErrorBody)),
    modifiers(&AdminToken)
)]
struct ApiDoc;

#[derive(OpenApi)]
#[openapi(paths(openapi))]
struct OpenApiDocument;

/// Declares the bearer scheme the global `security` names.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "adminToken",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A list answer: how many, and the items.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Page<T> {
    /// Number of items in `results`.
    count: usize,
    /// The items.
    results: Vec<T>,
}

impl<T> From<Vec<T>> for Page<T> {
    fn from(results: Vec<T>) -> Self {
        Page {
            count: results.len(),
            results,
        }
    }
}

/// An error answer (field errors carry one key per field instead).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// What went wrong.
    detail: String,
}

/// Adds [`Denied`] to every operation of `doc`: [`require_admin`] guards every route in
/// [`routes`], so no handler has to remember to declare it.
fn document_denied(doc: &mut utoipa::openapi::OpenApi) {
    let denied = <Denied as IntoResponses>::responses();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation.responses.responses.extend(denied.clone());
        }
    }
}

/// The answer without the admin token, or with a wrong one.
#[derive(IntoResponses)]
#[response(status = 403, description = "Missing or wrong admin token")]
#[allow(dead_code)] // Only described: the answer itself comes from `ApiError`.
pub(super) struct Denied(#[to_schema] ErrorBody);

/// The answer for an unknown user, device or schedule.
#[derive(IntoResponses)]
#[response(status = 404, description = "Not found")]
#[allow(dead_code)] // Only described: the answer itself comes from `ApiError`.
pub(super) struct Missing(#[to_schema] ErrorBody);

/// The answer for an invalid field or parameter.
#[derive(IntoResponses)]
#[response(status = 400, description = "Invalid request")]
#[allow(dead_code)] // Only described: the answer itself comes from `ApiError`.
pub(super) struct Invalid(#[to_schema] ErrorBody);

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

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "OpenAPI 3"))
)]
async fn openapi() -> Json<&'static serde_json::Value> {
    static DOCUMENT: LazyLock<serde_json::Value> =
        LazyLock::new(|| serde_json::to_value(document()).unwrap_or_default());
    Json(&DOCUMENT)
}

#[cfg(test)]
mod tests;
