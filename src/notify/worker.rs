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
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backends::{Backends, DeliveryError, MAX_RETRY_AFTER, Step};
use super::breaker::{Admit, Guards};
use super::dispatch::Dispatcher;
use super::queue::{self, Next, Outcome};
use super::{NewNotification, Notification, NotifyError};
use crate::config::OnTimeout;
use crate::config::QueueSettings;
use crate::directory::Directory;
use crate::store::{Store, now_ms};
use crate::telemetry::metrics::Metrics;

/// How long a delivery waits for a slot of its backend's bulkhead before it is put off: the
/// rows of one claim start together, and a fast backend frees its slots within moments.
const BULKHEAD_WAIT: Duration = Duration::from_millis(50);

/// How close to its backend's timeout a failed attempt counts as timed out (timers fire a
/// little early or late).
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// Starts the delivery workers of this process; `inbox` is the delivering side of the
/// [`super::handoff::channel`] whose other side the acceptor holds.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    store: Store,
    directory: Directory,
    backends: Arc<Backends>,
    settings: QueueSettings,
    wake: Arc<Notify>,
    inbox: super::handoff::Inbox,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    let dispatcher = Dispatcher {
        store,
        directory,
        backends,
        settings: Arc::new(settings),
        wake,
        shutdown,
        metrics,
    };
    tokio::spawn(dispatcher.run(inbox))
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
pub(super) async fn gate(
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
    let slot = guards.slot(name, BULKHEAD_WAIT).await;
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
    let Some(slot) = slot else {
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
pub(super) async fn deliver(
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

pub(super) fn record_metrics(metrics: &Metrics, kind: &str, created_at: i64, o: &Outcome) {
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
        let user = directory.by_id(&n.user_id).await?;
        let chain = backends.chain(&n, user.as_deref());
        if let Some(user) = &user {
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
