//! CPU profiling on the admin side: only with `debug: true` and a build with the
//! `profiling` feature.

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, IntoResponses};

use crate::cloud_api::{ApiError, AppState};

/// How long to sample.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ProfileQuery {
    /// Seconds, 1 to 120 (default 10).
    #[param(minimum = 1, maximum = 120)]
    seconds: Option<u64>,
}

/// Why no profile is taken.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only described: the answers come from `ApiError`.
enum NoProfile {
    /// `debug` is off.
    #[response(status = 404, description = "debug is off")]
    DebugOff,
    /// The build has no profiler.
    #[response(status = 501, description = "Built without the profiling feature")]
    NotBuilt,
}

/// CPU profile in pprof format (needs `debug: true` and a build with the `profiling` feature)
///
/// pprof's protobuf format (`go tool pprof`), sampled for `seconds`.
#[utoipa::path(
    get, path = "/debug/pprof/profile", tag = "debug",
    params(ProfileQuery),
    responses(
        (status = 200, description = "The profile", content_type = "application/octet-stream"),
        NoProfile
    )
)]
pub(super) async fn profile(
    State(state): State<AppState>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response, ApiError> {
    sample(&state, &q, ProfileFormat::Pprof).await
}

/// CPU profile as an SVG flame graph (needs `debug: true` and the `profiling` feature)
#[utoipa::path(
    get, path = "/debug/pprof/flamegraph", tag = "debug",
    params(ProfileQuery),
    responses(
        (status = 200, description = "The flame graph", content_type = "image/svg+xml"),
        NoProfile
    )
)]
pub(super) async fn flamegraph(
    State(state): State<AppState>,
    Query(q): Query<ProfileQuery>,
) -> Result<Response, ApiError> {
    sample(&state, &q, ProfileFormat::Svg).await
}

/// Samples for `seconds` (1 to 120, default 10) when `debug` is on.
async fn sample(
    state: &AppState,
    q: &ProfileQuery,
    format: ProfileFormat,
) -> Result<Response, ApiError> {
    if !state.debug {
        return Err(ApiError::NotFound);
    }
    let seconds = q.seconds.unwrap_or(10).clamp(1, 120);
    let bytes = cpu_profile(seconds, format).await?;
    let content_type = match format {
        ProfileFormat::Pprof => "application/octet-stream",
        ProfileFormat::Svg => "image/svg+xml",
    };
    Ok(([(CONTENT_TYPE, content_type)], bytes).into_response())
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
