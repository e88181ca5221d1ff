//! `GET /metrics` (Prometheus text format) and the middleware counting HTTP requests.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::Row;

use super::AppState;
use crate::store::now_ms;
use crate::telemetry::metrics::Gauge;

/// Counts every request by route template (never the raw path: heartbeat links are secrets).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    state.metrics.count(
        "oncall_relay_http_requests_total",
        &[("route", &route), ("method", &method), ("status", &status)],
        1,
    );
    state.metrics.observe(
        "oncall_relay_http_request_duration_seconds",
        &[("route", &route)],
        started.elapsed(),
    );
    response
}

/// Renders the metrics, sampling the queue and heartbeats from the database.
pub async fn render(State(state): State<AppState>) -> Response {
    let gauges = tokio::time::timeout(Duration::from_secs(2), sample(&state))
        .await
        .unwrap_or_else(|_| Ok(vec![database_up(false)]))
        .unwrap_or_else(|_| vec![database_up(false)]);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    )
        .into_response()
}

fn database_up(up: bool) -> Gauge {
    Gauge {
        name: "oncall_relay_database_up",
        help: "Whether the database answered the last scrape.",
        labels: vec![],
        value: if up { 1.0 } else { 0.0 },
    }
}

async fn sample(state: &AppState) -> Result<Vec<Gauge>, sqlx::Error> {
    let now = now_ms();
    let pool = state.store.pool();
    let mut gauges = vec![database_up(true)];
    let rows = sqlx::query(
        "SELECT kind, count(*) AS n, min(created_at) AS oldest FROM notifications \
         WHERE status IN ('queued', 'delivering') GROUP BY kind",
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
        gauges.push(Gauge {
            name: "oncall_relay_queue_depth",
            help: "Notifications accepted and not yet delivered or given up, by kind.",
            labels: vec![("kind", kind.to_string())],
            value: depth as f64,
        });
    }
    gauges.push(Gauge {
        name: "oncall_relay_queue_oldest_age_seconds",
        help: "Age of the oldest notification still waiting for delivery (0 when none).",
        labels: vec![],
        value: oldest_all.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0),
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
                help: "Seconds since each OnCall heartbeat integration last beat.",
                labels: vec![("integration", name.clone()), ("state", state_name)],
                value: (now - last).max(0) as f64 / 1000.0,
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
                help: "Seconds since each schedule's calendar was last fetched and read.",
                labels: vec![("schedule", key.clone())],
                value: (now - at).max(0) as f64 / 1000.0,
            });
        }
        let failing = matches!((success, error), (s, Some(e)) if s.is_none_or(|s| e > s));
        gauges.push(Gauge {
            name: "oncall_relay_schedule_failing",
            help: "1 when a schedule's last poll failed (its last known on-duty set is kept).",
            labels: vec![("schedule", key)],
            value: if failing { 1.0 } else { 0.0 },
        });
    }
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM schedule_callbacks WHERE delivered_at IS NULL")
            .fetch_one(pool)
            .await?;
    gauges.push(Gauge {
        name: "oncall_relay_schedule_callbacks_pending",
        help: "Schedule callbacks not yet delivered.",
        labels: vec![],
        value: pending as f64,
    });
    Ok(gauges)
}
