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

/// Declares a profile route: its OpenAPI description and a handler that samples in `$format`,
/// served as `$content_type`, which the description names too.
macro_rules! profile_route {
    ($(#[doc = $doc:literal])* $name:ident, $path:literal, $what:literal, $format:ident, $content_type:literal) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            get, path = $path, tag = "debug",
            params(ProfileQuery),
            responses(
                (status = 200, description = $what, content_type = $content_type),
                NoProfile
            )
        )]
        pub(super) async fn $name(
            State(state): State<AppState>,
            Query(q): Query<ProfileQuery>,
        ) -> Result<Response, ApiError> {
            sample(&state, &q, ProfileFormat::$format, $content_type).await
        }
    };
}

profile_route!(
    /// CPU profile in pprof format (needs `debug: true` and a build with the `profiling` feature)
    ///
    /// pprof's protobuf format (`go tool pprof`), sampled for `seconds`.
    profile, "/debug/pprof/profile", "The profile", Pprof, "application/octet-stream"
);

profile_route!(
    /// CPU profile as an SVG flame graph (needs `debug: true` and the `profiling` feature)
    flamegraph, "/debug/pprof/flamegraph", "The flame graph", Svg, "image/svg+xml"
);

/// Samples for `seconds` (1 to 120, default 10) when `debug` is on.
async fn sample(
    state: &AppState,
    q: &ProfileQuery,
    format: ProfileFormat,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    if !state.debug {
        return Err(ApiError::NotFound);
    }
    let seconds = q.seconds.unwrap_or(10).clamp(1, 120);
    let bytes = cpu_profile(seconds, format).await?;
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
