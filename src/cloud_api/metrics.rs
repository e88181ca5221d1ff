//! `GET /metrics` (Prometheus text format) and the middleware counting HTTP requests.
//!
//! A scrape reads memory only: the gauges that need the database are sampled by one
//! background task on an interval, so a flood of scrapes costs no query and cannot take
//! connections from make_call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::Row;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ApiError, AppState};
use crate::store::{Store, now_ms};
use crate::tasks::{FirstRun, spawn_periodic};
use crate::telemetry::metrics::{CONTENT_TYPE, Gauge, GaugeValue, Metrics};

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The method label: the standard methods as they are, anything else folded into `other`, so
/// that random methods cannot create series without bound.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every request by route template (never the raw path: heartbeat links are secrets).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.into());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    state.metrics.count(
        "oncall_relay_http_requests_total",
        &[("route", &route), ("method", method), ("status", &status)],
        1,
    );
    state.metrics.observe(
        "oncall_relay_http_request_duration_seconds",
        &[("route", &route)],
        started.elapsed(),
    );
    response
}

/// Renders the metrics from memory; with `app.metrics_token` set, only for that token.
pub async fn render(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(tokens) = &state.metrics_tokens
        && !tokens.accepts(&super::auth::authorization(&headers))
    {
        return ApiError::InvalidToken.into_response();
    }
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(now_ms()),
    )
        .into_response()
}

/// Samples the database-backed gauges now and then every `every`, until shutdown.
pub fn spawn_refresh(
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // A zero interval would sample in a busy loop.
    let every = every.max(Duration::from_millis(50));
    spawn_periodic(every, FirstRun::Now, shutdown, move || {
        let (store, metrics) = (store.clone(), metrics.clone());
        async move { refresh(&store, &metrics).await }
    })
}

/// One sample; on failure the last values stay and `oncall_relay_database_up` drops to 0.
pub async fn refresh(store: &Store, metrics: &Metrics) {
    match tokio::time::timeout(Duration::from_secs(5), sample(store)).await {
        Ok(Ok(gauges)) => metrics.set_sampled(gauges),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot sample metrics from the database");
            metrics.set_sampled_value("oncall_relay_database_up", 0.0);
        }
        Err(_) => metrics.set_sampled_value("oncall_relay_database_up", 0.0),
    }
}

fn gauge(name: &'static str, labels: Vec<(&'static str, String)>, value: f64) -> Gauge {
    Gauge {
        name,
        labels,
        value: GaugeValue::Value(value),
    }
}

async fn sample(store: &Store) -> Result<Vec<Gauge>, sqlx::Error> {
    let pool = store.pool();
    let mut gauges = vec![gauge("oncall_relay_database_up", vec![], 1.0)];
    let rows = sqlx::query(
        "SELECT kind, count(*) AS n, min(created_at) AS oldest FROM notifications \
         WHERE status IN ('queued', 'delivering', 'awaiting_answer') GROUP BY kind",
    )
    .fetch_all(pool)
    .await?;
    let mut oldest_all: Option<i64> = None;
    for kind in ["call", "sms", "push", "heartbeat", "schedule"] {
        let row = rows
            .iter()
            .find(|r| r.try_get::<String, _>("kind").is_ok_and(|k| k == kind));
        let depth: i64 = row.map(|r| r.try_get("n")).transpose()?.unwrap_or(0);
        if let Some(oldest) = row
            .map(|r| r.try_get::<Option<i64>, _>("oldest"))
            .transpose()?
            .flatten()
        {
            oldest_all = Some(oldest_all.map_or(oldest, |o: i64| o.min(oldest)));
        }
        gauges.push(gauge(
            "oncall_relay_queue_depth",
            vec![("kind", kind.to_string())],
            depth as f64,
        ));
    }
    gauges.push(Gauge {
        name: "oncall_relay_queue_oldest_age_seconds",
        labels: vec![],
        value: oldest_all.map_or(GaugeValue::Value(0.0), GaugeValue::AgeSince),
    });
    let beats = sqlx::query("SELECT name, state, last_beat_at FROM integrations ORDER BY id")
        .fetch_all(pool)
        .await?;
    for b in &beats {
        let name: String = b.try_get("name")?;
        let state_name: String = b.try_get("state")?;
        if let Some(last) = b.try_get::<Option<i64>, _>("last_beat_at")? {
            gauges.push(Gauge {
                name: "oncall_relay_heartbeat_age_seconds",
                labels: vec![("integration", name), ("state", state_name)],
                value: GaugeValue::AgeSince(last),
            });
        }
    }
    let schedules =
        sqlx::query("SELECT key, last_success_at, last_error_at FROM schedules ORDER BY id")
            .fetch_all(pool)
            .await?;
    for row in &schedules {
        let key: String = row.try_get("key")?;
        let success: Option<i64> = row.try_get("last_success_at")?;
        let error: Option<i64> = row.try_get("last_error_at")?;
        if let Some(at) = success {
            gauges.push(Gauge {
                name: "oncall_relay_schedule_last_success_age_seconds",
                labels: vec![("schedule", key.clone())],
                value: GaugeValue::AgeSince(at),
            });
        }
        let failing = matches!((success, error), (s, Some(e)) if s.is_none_or(|s| e > s));
        gauges.push(gauge(
            "oncall_relay_schedule_failing",
            vec![("schedule", key)],
            if failing { 1.0 } else { 0.0 },
        ));
    }
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM schedule_callbacks WHERE delivered_at IS NULL")
            .fetch_one(pool)
            .await?;
    gauges.push(gauge(
        "oncall_relay_schedule_callbacks_pending",
        vec![],
        pending as f64,
    ));
    Ok(gauges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_fold_into_a_bounded_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for odd in ["FOO", "get", "PROPFIND", "CONNECT", "TRACE", "X-1"] {
            let method = Method::from_bytes(odd.as_bytes()).expect("method");
            assert_eq!(method_label(&method), "other", "{odd}");
        }
    }
}
