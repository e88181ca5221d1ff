//! Delivery workers: claim due notifications, deliver them, record what happened.
//!
//! A dispatcher claims as many rows as there are free delivery slots and runs each delivery
//! in its own task; a recorder writes finished attempts in batches. Claims carry a lease: a
//! row whose process died is due again once the lease runs out, so nothing accepted is lost.
//!
//! A delivery keeps its slot until its outcome is committed, not merely until the backend
//! answered: at any instant at most `queue.concurrency` deliveries are done but unrecorded,
//! which bounds what a crash can make the next claim repeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backends::{Backends, DeliveryError, MAX_RETRY_AFTER, Step};
use super::breaker::{Admit, Guards};
use super::queue::{self, Next, Outcome};
use super::{NewNotification, Notification, NotifyError};
use crate::config::OnTimeout;
use crate::config::QueueSettings;
use crate::directory::Directory;
use crate::store::{Store, now_ms};
use crate::telemetry::metrics::Metrics;

/// Largest number of outcomes written in one transaction.
const RECORD_BATCH: usize = 512;

/// How close to its backend's timeout a failed attempt counts as timed out (timers fire a
/// little early or late).
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// Starts the delivery workers of this process.
pub fn spawn(
    store: Store,
    directory: Directory,
    backends: Arc<Backends>,
    settings: QueueSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        // Each outcome travels with its slot, so the channel never holds more than the slots.
        let (done_tx, done_rx) = mpsc::channel::<Finished>(settings.concurrency.max(1));
        let recorder = tokio::spawn(record_loop(store.clone(), done_rx));
        let guards = Arc::new(Guards::new(&settings, store.clone(), metrics.clone()));
        let lease_ms = settings.lease.as_millis() as i64;
        let mut failures = 0u32;

        loop {
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let limit = (1 + slots.available_permits()).min(settings.batch_size);
            let now = now_ms();
            let claim_tag: i64 = rand::rng().random();
            let claimed = queue::claim(&store, limit, now, now + lease_ms, claim_tag).await;
            let rows = match claimed {
                Ok(rows) => {
                    failures = 0;
                    rows
                }
                Err(e) => {
                    failures += 1;
                    // Once per outage is enough in the log; the readiness probe tells the rest.
                    if failures == 1 || failures % 60 == 0 {
                        tracing::warn!(error = %e, "cannot claim notifications");
                    }
                    drop(first);
                    tokio::select! {
                        _ = tokio::time::sleep(settings.poll_interval) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            let claimed_all = rows.len() == limit;
            let mut first = Some(first);
            let snapshot = directory.snapshot();
            for mut n in rows {
                let permit = match first.take() {
                    Some(p) => p,
                    // Only this loop takes slots, so the ones counted above are still free.
                    None => match slots.clone().try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let chain = backends.chain(&n, &snapshot);
                let backend_slot = match gate(&guards, &chain, &n, claim_tag) {
                    Ok(slot) => slot,
                    Err(not_tried) => {
                        // Nothing was delivered, so a crash cannot repeat it: the slot goes to
                        // the next row at once.
                        let _ = done_tx.send((not_tried, None)).await;
                        first = Some(permit);
                        continue;
                    }
                };
                let done = done_tx.clone();
                let settings = settings.clone();
                let metrics = metrics.clone();
                let guards = guards.clone();
                if let Some(user) = snapshot.by_id(&n.user_id) {
                    n.contacts = user.contacts.clone();
                    n.reader = super::Reader::of(user);
                }
                n.links = backends.links_for(&n);
                let incidents = backends.incidents();
                tokio::spawn(async move {
                    // Settling a call's answer sends nothing: no details needed.
                    if n.answer_deadline.is_none() {
                        n.alert_group = incidents.of(&n).await;
                    }
                    let (kind, created_at) = (n.kind.clone(), n.created_at);
                    let (outcome, health) = deliver(&chain, &settings, n, claim_tag).await;
                    drop(backend_slot);
                    if !outcome.backend.is_empty() {
                        guards.record(
                            &outcome.backend,
                            health.as_deref().map_or(Ok(()), Err),
                            now_ms(),
                        );
                    }
                    record_metrics(&metrics, &kind, created_at, &outcome);
                    // The slot is freed by the recorder, once the outcome is committed.
                    let _ = done.send((outcome, Some(permit))).await;
                });
            }
            drop(first);
            if !claimed_all {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(settings.poll_interval) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }

        // Let deliveries in flight finish so their outcomes are recorded; what does not finish
        // in time stays claimed and is picked up again after its lease.
        let all = settings.concurrency as u32;
        let _ = tokio::time::timeout(settings.lease, slots.acquire_many(all)).await;
        drop(done_tx);
        let _ = recorder.await;
    })
}

/// Delay before retry number `attempt` (from 1): doubling from `base`, capped, with ±20 % jitter
/// so that many notifications failing together do not retry together.
pub fn backoff(attempt: i64, base: Duration, max: Duration) -> Duration {
    let retry = attempt.clamp(1, 30) as usize - 1;
    let raw = crate::tasks::doubling_delay(retry, base, max);
    let jitter = rand::rng().random_range(0.8..1.2);
    raw.mul_f64(jitter).min(max)
}

/// The wait before a throttled retry: the queue's backoff, but never sooner than the provider
/// asked, and never longer than [`MAX_RETRY_AFTER`] whatever it asked.
fn retry_delay(backoff: Duration, asked: Duration) -> Duration {
    backoff.max(asked.min(MAX_RETRY_AFTER))
}

/// The step of `chain` that `n` is on: a route that shrank since the last attempt
/// (configuration change) continues on its last step.
fn step_index(n: &Notification, chain: &[Step]) -> usize {
    (n.stage.max(0) as usize).min(chain.len().saturating_sub(1))
}

/// How long a notification whose backend is full waits before it is claimed again: a full
/// backend is usually a slow or hung one, whose slots free up within its timeout; half of
/// that (0.5 to 5 s), spread so that many of them neither come back together nor keep the
/// workers busy claiming them again and again.
fn busy_wait(timeout: Duration) -> Duration {
    let base = (timeout / 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
    base.mul_f64(rand::rng().random_range(0.5..1.0))
}

/// Whether `n` may go to its step's backend now: a slot of that backend's bulkhead, or the
/// outcome of not trying (due again shortly when the backend is full; when its breaker is
/// open, the next step at once, or a wait for the cool-down on the last step).
fn gate(
    guards: &Guards,
    chain: &[Step],
    n: &Notification,
    claim: i64,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Outcome> {
    let index = step_index(n, chain);
    let Some(step) = chain.get(index) else {
        return Ok(None);
    };
    // Settling a call's answer sends nothing: no slot, and an answered call must not be
    // moved on because its backend's breaker opened meanwhile.
    if n.answer_deadline.is_some() {
        return Ok(None);
    }
    let name = step.backend.name();
    let now = now_ms();
    let not_tried = |next: Next, why: String| Outcome {
        id: n.id,
        claim,
        attempt: n.attempt,
        backend: name.to_string(),
        error: Some(why),
        next,
        started_at: now,
        duration_ms: 0,
    };
    let Some(slot) = guards.try_slot(name) else {
        let due = now + busy_wait(step.backend.timeout()).as_millis() as i64;
        return Err(not_tried(
            Next::Defer(due),
            format!("{name} is busy (its concurrency limit is reached): waiting"),
        ));
    };
    match guards.admit(name, now) {
        Admit::Pass => Ok(Some(slot)),
        Admit::Skip(until) => {
            let why = format!("{name} skipped: its circuit breaker is open");
            let next = if index + 1 < chain.len() {
                Next::Fallback(index as i64 + 1)
            } else {
                Next::Defer(until)
            };
            if matches!(next, Next::Fallback(_)) {
                tracing::warn!(id = n.id, kind = %n.kind, backend = name, "circuit breaker open, trying the next route");
            }
            Err(not_tried(next, why))
        }
    }
}

/// Delivers `n` on its current step; the outcome, and the failure that counts against the
/// backend's circuit breaker (none when the backend answered, even with a refusal).
async fn deliver(
    chain: &[Step],
    settings: &QueueSettings,
    n: Notification,
    claim: i64,
) -> (Outcome, Option<String>) {
    let index = step_index(&n, chain);
    let Some(step) = chain.get(index) else {
        let outcome = Outcome {
            id: n.id,
            claim,
            attempt: n.attempt,
            backend: String::new(),
            error: Some("no backend to deliver to".into()),
            next: Next::Failed,
            started_at: now_ms(),
            duration_ms: 0,
        };
        return (outcome, None);
    };
    let backend = &step.backend;
    let budget = i64::from(step.attempts.unwrap_or(settings.max_attempts));
    let next_step = (index + 1 < chain.len()).then_some(index as i64 + 1);
    let started_at = now_ms();
    let clock = Instant::now();
    // A step that waited for the call's answer is settled, not delivered again.
    let settling = n.answer_deadline.is_some();
    let result = if settling {
        super::answer::verdict(&n)
    } else {
        // The backend's own timeout applies first; this one guards against a backend that forgets.
        match tokio::time::timeout(
            backend.timeout() + Duration::from_secs(1),
            backend.deliver(&n),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Transient("delivery timed out".into())),
        }
    };
    let elapsed = clock.elapsed();
    let duration_ms = elapsed.as_millis() as i64;
    // A transient failure that used the backend's whole time budget: it hangs, or is too slow.
    let timed_out = matches!(result, Err(DeliveryError::Transient(_)))
        && elapsed + TIMEOUT_SLACK >= backend.timeout();
    // A call nobody answered says nothing about the backend's health.
    let health = match &result {
        _ if settling => None,
        Ok(()) | Err(DeliveryError::Permanent(_)) => None,
        Err(e) => Some(e.to_string()),
    };
    let give_up = |e: String| match next_step {
        Some(stage) => (Next::Fallback(stage), Some(e)),
        None => (Next::Failed, Some(e)),
    };
    let (next, error) = match result {
        Ok(()) => match step.answer_wait {
            Some(wait) if !settling && backend.reports_answer(&n) => {
                (Next::AwaitAnswer(now_ms() + wait.as_millis() as i64), None)
            }
            _ => (Next::Delivered, None),
        },
        Err(DeliveryError::Permanent(e)) => give_up(e),
        Err(DeliveryError::Transient(e))
            if timed_out && step.on_timeout == OnTimeout::Next && next_step.is_some() =>
        {
            give_up(format!(
                "{e} ({} timed out, the next step takes over)",
                backend.name()
            ))
        }
        Err(DeliveryError::Transient(e) | DeliveryError::Throttled { message: e, .. })
            if n.stage_attempts >= budget =>
        {
            give_up(format!(
                "{e} (gave up on {} after {} attempts)",
                backend.name(),
                n.stage_attempts
            ))
        }
        Err(DeliveryError::Transient(e)) => {
            let delay = backoff(n.stage_attempts, settings.retry_base, settings.retry_max);
            (Next::Retry(now_ms() + delay.as_millis() as i64), Some(e))
        }
        Err(DeliveryError::Throttled { message, after }) => {
            let delay = retry_delay(
                backoff(n.stage_attempts, settings.retry_base, settings.retry_max),
                after,
            );
            (
                Next::Retry(now_ms() + delay.as_millis() as i64),
                Some(message),
            )
        }
    };
    let error_text = error.as_deref().unwrap_or("");
    match &next {
        Next::Delivered => {
            tracing::info!(id = n.id, kind = %n.kind, backend = backend.name(), attempt = n.attempt, duration_ms, "notification delivered")
        }
        Next::Retry(_) => {
            tracing::warn!(id = n.id, kind = %n.kind, backend = backend.name(), attempt = n.attempt, error = error_text, "delivery failed, will retry")
        }
        Next::Fallback(_) => {
            tracing::warn!(id = n.id, kind = %n.kind, backend = backend.name(), attempt = n.attempt, error = error_text, "backend gave up, trying the next route")
        }
        Next::Failed => {
            tracing::error!(id = n.id, kind = %n.kind, backend = backend.name(), attempt = n.attempt, error = error_text, "delivery failed for good")
        }
        Next::AwaitAnswer(_) => {
            tracing::info!(id = n.id, kind = %n.kind, backend = backend.name(), attempt = n.attempt, duration_ms, "call placed, waiting for its answer")
        }
        Next::Defer(_) => {}
    }
    let outcome = Outcome {
        id: n.id,
        claim,
        attempt: n.attempt,
        backend: backend.name().to_string(),
        error,
        next,
        started_at,
        duration_ms,
    };
    (outcome, health)
}

fn record_metrics(metrics: &Metrics, kind: &str, created_at: i64, o: &Outcome) {
    let outcome = match o.next {
        Next::Delivered => "delivered",
        Next::Retry(_) => "retry",
        Next::Fallback(_) => "fallback",
        Next::Failed => "failed",
        Next::AwaitAnswer(_) => "awaiting_answer",
        Next::Defer(_) => return,
    };
    metrics.count(
        "oncall_relay_delivery_attempts_total",
        &[
            ("kind", kind),
            ("backend", &o.backend),
            ("outcome", outcome),
        ],
        1,
    );
    metrics.observe(
        "oncall_relay_delivery_duration_seconds",
        &[("backend", &o.backend)],
        Duration::from_millis(o.duration_ms.max(0) as u64),
    );
    if matches!(o.next, Next::Delivered) {
        metrics.observe(
            "oncall_relay_delivery_latency_seconds",
            &[("kind", kind)],
            Duration::from_millis((now_ms() - created_at).max(0) as u64),
        );
    }
}

/// One attempt of [`deliver_test`], for printing.
#[derive(Debug, Clone)]
pub struct TestAttempt {
    /// The backend tried.
    pub backend: String,
    /// `delivered`, `fallback` or `failed`.
    pub outcome: &'static str,
    /// What went wrong.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// Sends `new` through its real route right now, trying each step once, and records it like
/// any other notification; returns the notification id and every attempt.
pub async fn deliver_test(
    store: &Store,
    directory: &Directory,
    backends: &Backends,
    settings: &QueueSettings,
    new: NewNotification,
) -> Result<(i64, Vec<TestAttempt>), NotifyError> {
    let now = now_ms();
    let id = queue::insert_held(store, &new, now).await?;
    let lease_ms = settings.lease.as_millis() as i64;
    let mut attempts = Vec::new();
    loop {
        let tag: i64 = rand::rng().random();
        let now = now_ms();
        let Some(mut n) = queue::claim_id(store, id, now, now + lease_ms, tag).await? else {
            break;
        };
        let snapshot = directory.snapshot();
        let chain = backends.chain(&n, &snapshot);
        if let Some(user) = snapshot.by_id(&n.user_id) {
            n.contacts = user.contacts.clone();
            n.reader = super::Reader::of(user);
        }
        n.links = backends.links_for(&n);
        let stage = n.stage.max(0);
        let has_next = (stage as usize) + 1 < chain.len();
        let (mut outcome, _) = deliver(&chain, settings, n, tag).await;
        // A test tries each step once: a retry becomes the next step, or the end.
        if let Next::Retry(_) = outcome.next {
            outcome.next = if has_next {
                Next::Fallback(stage + 1)
            } else {
                Next::Failed
            };
        }
        queue::record(store, std::slice::from_ref(&outcome), now_ms()).await?;
        let label = match outcome.next {
            // `notify test` builds its backends without hooks: no call waits for an answer.
            Next::Delivered | Next::AwaitAnswer(_) => "delivered",
            Next::Fallback(_) => "fallback",
            Next::Retry(_) | Next::Failed | Next::Defer(_) => "failed",
        };
        attempts.push(TestAttempt {
            backend: outcome.backend.clone(),
            outcome: label,
            error: outcome.error.clone(),
            duration_ms: outcome.duration_ms,
        });
        if !matches!(outcome.next, Next::Fallback(_)) {
            break;
        }
    }
    Ok((id, attempts))
}

/// A finished delivery and the slot it holds until its outcome is written (none for a
/// notification that was not tried).
type Finished = (Outcome, Option<OwnedSemaphorePermit>);

async fn record_loop(store: Store, mut rx: mpsc::Receiver<Finished>) {
    while let Some((first, permit)) = rx.recv().await {
        let mut batch = vec![first];
        let mut permits = vec![permit];
        while batch.len() < RECORD_BATCH {
            match rx.try_recv() {
                Ok((o, p)) => {
                    batch.push(o);
                    permits.push(p);
                }
                Err(_) => break,
            }
        }
        // Keep trying while the database is away; if it never comes back, the leases run out
        // and the notifications are delivered again rather than lost.
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=20 {
            match queue::record(&store, &batch, now_ms()).await {
                Ok(()) => break,
                Err(e) => {
                    if attempt == 1 || attempt == 20 {
                        tracing::warn!(error = %e, count = batch.len(), attempt, "cannot record delivery outcomes");
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Only now may the dispatcher claim more: whatever happens next, these are on record
        // (or, if the database never came back, their leases run out and they are claimed again).
        drop(permits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_retry_waits_as_asked_within_the_cap() {
        let second = Duration::from_secs(1);
        assert_eq!(retry_delay(second / 10, second * 2), second * 2);
        assert_eq!(retry_delay(second * 5, second * 2), second * 5);
        assert_eq!(retry_delay(second, second * 86_400), MAX_RETRY_AFTER);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let first = backoff(1, base, max);
            assert!(first >= Duration::from_millis(1600) && first <= Duration::from_millis(2400));
            let third = backoff(3, base, max);
            assert!(third >= Duration::from_millis(6400) && third <= Duration::from_millis(9600));
            assert!(backoff(30, base, max) <= max);
        }
    }
}
