//! Circuit breakers, one per backend, and the bulkheads that cap each backend's deliveries in
//! flight.
//!
//! A breaker counts failures in a row (timeouts, 5xx, connection errors; a refusal such as a
//! 4xx shows the backend alive). At `queue.breaker_failures` it opens: the backend is skipped
//! for `queue.breaker_cooldown`, then half-open: one probe goes through, and its outcome closes
//! or re-opens the breaker. Decisions come from this process's memory; every change is also
//! logged, counted in `/metrics`, written to `backend_circuits` for the admin API and
//! `notify test`, and kept as a row of `circuit_changes` (`events circuits`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::FromRow;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::QueueSettings;
use crate::store::{Store, format_ms};
use crate::telemetry::metrics::Metrics;

/// Changes waiting to be written; more are dropped (the next change writes the state again).
const PENDING_WRITES: usize = 256;

/// What a breaker lets through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Deliver (closed, or the one probe of a half-open breaker).
    Pass,
    /// Skip this backend until this time (Unix ms).
    Skip(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: i64 },
    HalfOpen { probing: bool },
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    fn gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::Open { .. } => 1.0,
            State::HalfOpen { .. } => 2.0,
        }
    }
}

#[derive(Debug)]
struct Circuit {
    state: State,
    failures: u32,
    opens: u64,
}

/// A backend's breaker as recorded in `backend_circuits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct CircuitRecord {
    /// The backend's name.
    pub backend: String,
    /// `closed`, `open` (skipped until `open_until`) or `half_open` (one probe let through).
    pub state: String,
    /// Failures in a row when it last changed.
    pub failures: i64,
    /// Times it opened since the process that wrote it started.
    pub opens: i64,
    /// While open, when the next probe may go (Unix ms).
    pub open_until: Option<i64>,
    /// The failure that last opened it.
    pub last_error: Option<String>,
    /// When it last changed (Unix ms).
    pub changed_at: i64,
}

impl CircuitRecord {
    /// One line for people: `sms_gateway: open until 2026-… after 5 failures (HTTP 503)`.
    pub fn describe(&self) -> String {
        let mut text = format!("{}: {}", self.backend, self.state.replace('_', "-"));
        if let Some(until) = self.open_until.filter(|_| self.state == "open") {
            text.push_str(&format!(" until {}", format_ms(until)));
        }
        if self.failures > 0 {
            text.push_str(&format!(" after {} failures in a row", self.failures));
        }
        if let Some(e) = self
            .last_error
            .as_deref()
            .filter(|_| self.state != "closed")
        {
            text.push_str(&format!(" ({e})"));
        }
        text
    }
}

/// The breakers and bulkheads of one process's delivery workers.
#[derive(Debug)]
pub(crate) struct Guards {
    settings: QueueSettings,
    circuits: Mutex<HashMap<String, Circuit>>,
    bulkheads: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: Arc<Metrics>,
    writes: mpsc::Sender<CircuitRecord>,
}

impl Guards {
    /// Guards for `settings`, writing breaker changes to `store` in the background.
    pub(crate) fn new(settings: &QueueSettings, store: Store, metrics: Arc<Metrics>) -> Guards {
        let (writes, rx) = mpsc::channel(PENDING_WRITES);
        tokio::spawn(write_loop(store, rx, settings.retention));
        Guards {
            settings: settings.clone(),
            circuits: Mutex::default(),
            bulkheads: Mutex::default(),
            metrics,
            writes,
        }
    }

    fn bulkhead(&self, backend: &str) -> Arc<Semaphore> {
        lock(&self.bulkheads)
            .entry(backend.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.backend_limit(backend))))
            .clone()
    }

    /// A slot of `backend`'s bulkhead, if one is free.
    #[cfg(test)]
    pub(crate) fn try_slot(&self, backend: &str) -> Option<OwnedSemaphorePermit> {
        self.bulkhead(backend).try_acquire_owned().ok()
    }

    /// A slot of `backend`'s bulkhead, waiting up to `wait` for one to free up: a fast
    /// backend's slots free up within moments, a hung one's only after its timeout.
    pub(crate) async fn slot(&self, backend: &str, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.bulkhead(backend);
        if let Ok(slot) = semaphore.clone().try_acquire_owned() {
            return Some(slot);
        }
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Whether `backend` may be tried now; a half-open breaker lets one probe through.
    pub(crate) fn admit(&self, backend: &str, now: i64) -> Admit {
        if self.settings.breaker_failures == 0 {
            return Admit::Pass;
        }
        let mut circuits = lock(&self.circuits);
        let Some(c) = circuits.get_mut(backend) else {
            return Admit::Pass;
        };
        match c.state {
            State::Closed => Admit::Pass,
            State::Open { until } if now < until => Admit::Skip(until),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                c.state = State::HalfOpen { probing: true };
                let record = self.changed(backend, c, None, now);
                drop(circuits);
                self.publish(record);
                Admit::Pass
            }
            // While the probe is out, the others wait a little, not a whole cool-down.
            State::HalfOpen { probing: true } => {
                Admit::Skip(now + self.settings.poll_interval.as_millis() as i64)
            }
        }
    }

    /// Records how a delivery to `backend` went: `Ok` if the backend answered (delivered or
    /// refused), `Err` with the failure if it did not (timeout, 5xx, connection error).
    pub(crate) fn record(&self, backend: &str, result: Result<(), &str>, now: i64) {
        let threshold = self.settings.breaker_failures;
        if threshold == 0 {
            return;
        }
        let mut circuits = lock(&self.circuits);
        let c = circuits.entry(backend.to_string()).or_insert(Circuit {
            state: State::Closed,
            failures: 0,
            opens: 0,
        });
        let before = c.state;
        let error = match result {
            Ok(()) => {
                c.failures = 0;
                c.state = State::Closed;
                None
            }
            Err(e) => {
                c.failures = c.failures.saturating_add(1);
                let probe_failed = matches!(c.state, State::HalfOpen { .. });
                if probe_failed || (c.state == State::Closed && c.failures >= threshold) {
                    c.state = State::Open {
                        until: now + self.settings.breaker_cooldown.as_millis() as i64,
                    };
                    c.opens += 1;
                    self.metrics.count(
                        "oncall_relay_backend_circuit_opens_total",
                        &[("backend", backend)],
                        1,
                    );
                }
                Some(e)
            }
        };
        if c.state == before {
            return;
        }
        let record = self.changed(backend, c, error, now);
        drop(circuits);
        self.publish(record);
    }

    /// Logs a change and updates the gauge; the record to write.
    fn changed(&self, backend: &str, c: &Circuit, error: Option<&str>, now: i64) -> CircuitRecord {
        let state = c.state;
        self.metrics.set_live(
            "oncall_relay_backend_circuit_state",
            &[("backend", backend)],
            state.gauge(),
        );
        let open_until = match state {
            State::Open { until } => Some(until),
            _ => None,
        };
        match state {
            State::Open { .. } => tracing::warn!(
                backend,
                failures = c.failures,
                cooldown_ms = self.settings.breaker_cooldown.as_millis() as u64,
                error = error.unwrap_or(""),
                "circuit breaker opened: backend skipped for the cool-down"
            ),
            State::HalfOpen { .. } => {
                tracing::info!(backend, "circuit breaker half-open: one probe goes through")
            }
            State::Closed => tracing::info!(backend, "circuit breaker closed: backend healthy"),
        }
        CircuitRecord {
            backend: backend.to_string(),
            state: state.name().to_string(),
            failures: i64::from(c.failures),
            opens: c.opens as i64,
            open_until,
            last_error: error.map(str::to_string),
            changed_at: now,
        }
    }

    fn publish(&self, record: CircuitRecord) {
        // Memory decides; a full queue of writes only delays what the admin API shows.
        let _ = self.writes.try_send(record);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::Receiver<CircuitRecord>,
    retention: std::time::Duration,
) {
    while let Some(r) = rx.recv().await {
        if let Err(e) = save(&store, &r, retention).await {
            tracing::warn!(error = %e, backend = %r.backend, "cannot record the circuit breaker's state");
        }
    }
}

async fn save(
    store: &Store,
    r: &CircuitRecord,
    retention: std::time::Duration,
) -> Result<(), sqlx::Error> {
    let _guard = store.write_guard().await;
    let mut tx = store.pool().begin().await?;
    sqlx::query(
        "INSERT INTO circuit_changes (backend, state, failures, open_until, error, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(r.backend.clone())
    .bind(r.state.clone())
    .bind(r.failures)
    .bind(r.open_until)
    .bind(r.last_error.clone())
    .bind(r.changed_at)
    .execute(&mut *tx)
    .await?;
    // Changes are rare (one per cool-down at most), so trimming here keeps the history
    // bounded without a purge task of its own.
    if !retention.is_zero() {
        sqlx::query("DELETE FROM circuit_changes WHERE changed_at < $1")
            .bind(r.changed_at - retention.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO backend_circuits (backend, state, failures, opens, open_until, last_error, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (backend) DO UPDATE SET state = $2, failures = $3, \
         opens = $4, open_until = $5, last_error = COALESCE($6, backend_circuits.last_error), changed_at = $7",
    )
    .bind(r.backend.clone())
    .bind(r.state.clone())
    .bind(r.failures)
    .bind(r.opens)
    .bind(r.open_until)
    .bind(r.last_error.clone())
    .bind(r.changed_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// One change of a backend's circuit breaker, from `circuit_changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct CircuitChange {
    /// The backend's name.
    pub backend: String,
    /// The state it changed to: `closed`, `open` or `half_open`.
    pub state: String,
    /// Failures in a row at the change.
    pub failures: i64,
    /// While open, when the next probe may go (Unix ms).
    pub open_until: Option<i64>,
    /// The failure that opened it.
    pub error: Option<String>,
    /// When it changed (Unix ms).
    pub changed_at: i64,
}

/// Breaker changes since `since` (Unix ms), of `backend` when given, newest first.
pub async fn changes(
    store: &Store,
    backend: Option<&str>,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<CircuitChange>, sqlx::Error> {
    sqlx::query_as::<_, CircuitChange>(
        "SELECT backend, state, failures, open_until, error, changed_at FROM circuit_changes \
         WHERE ($1 = '' OR backend = $1) AND changed_at >= $2 \
         ORDER BY changed_at DESC, id DESC LIMIT $3",
    )
    .bind(backend.unwrap_or("").to_string())
    .bind(since.unwrap_or(0))
    .bind(limit.min(10_000) as i64)
    .fetch_all(store.pool())
    .await
}

/// Every backend's breaker as last recorded, by name.
pub async fn circuits(store: &Store) -> Result<Vec<CircuitRecord>, sqlx::Error> {
    sqlx::query_as::<_, CircuitRecord>(
        "SELECT backend, state, failures, opens, open_until, last_error, changed_at \
         FROM backend_circuits ORDER BY backend",
    )
    .fetch_all(store.pool())
    .await
}

#[cfg(test)]
mod tests;
