//! The delivery loop of a process: one transaction both records the outcomes that came back
//! and claims as many due rows as the slots they free.
//!
//! A delivery keeps its slot until its outcome is committed, not merely until the backend
//! answered: at any instant at most `queue.concurrency` deliveries are done but unrecorded,
//! which bounds what a crash can make the next claim repeat. Recording and claiming in the
//! same commit halves the commits per delivery, and a claim always fills every slot the
//! commit freed, so a fast backend moves a full batch per commit instead of a trickle.
//!
//! Rows accepted while a slot is free arrive already claimed ([`super::handoff`]); the
//! loop claims from the table only when rows may be waiting there (queued while every slot
//! was busy, a retry or an expired lease come due).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use rand::RngExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Notification;
use super::backends::Backends;
use super::breaker::Guards;
use super::handoff::{Claimed, Inbox, take_slots};
use super::queue::{self, Lease, Outcome};
use super::worker::{deliver, gate, record_metrics};
use crate::config::QueueSettings;
use crate::directory::Directory;
use crate::store::{Store, now_ms};
use crate::telemetry::metrics::Metrics;

/// Largest number of outcomes written in one transaction.
const RECORD_BATCH: usize = 512;

/// Failed commits in a row after which the outcomes waiting are given up: their leases run
/// out and the rows are claimed again rather than lost.
const RECORD_TRIES: u32 = 20;

/// A claim from the table leaves 1/`HANDOFF_SHARE` of the slots to rows handed over as they
/// are accepted.
const HANDOFF_SHARE: usize = 4;

/// Longest pause between two outcomes for which a commit waits for the next one.
const LINGER_GAP: Duration = Duration::from_millis(1);

/// Longest a commit waits for deliveries still running.
const LINGER_MAX: Duration = Duration::from_millis(5);

/// A finished delivery and the slot it holds until its outcome is written (none for a
/// notification that was not tried).
type Finished = (Outcome, Option<OwnedSemaphorePermit>);

/// Everything the loop needs, shared with nothing else.
pub(super) struct Dispatcher {
    pub store: Store,
    pub directory: Directory,
    pub backends: Arc<Backends>,
    pub settings: Arc<QueueSettings>,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
}

/// Outcomes waiting for their commit, with the slots they hold.
#[derive(Default)]
struct Pending {
    outcomes: Vec<Outcome>,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Pending {
    fn push(&mut self, (outcome, permit): Finished) {
        self.outcomes.push(outcome);
        self.permits.extend(permit);
    }

    /// Takes whatever else has finished meanwhile, without waiting.
    fn gather(&mut self, rx: &mut mpsc::Receiver<Finished>) {
        while self.outcomes.len() < RECORD_BATCH {
            match rx.try_recv() {
                Ok(f) => self.push(f),
                Err(_) => break,
            }
        }
    }
}

impl Dispatcher {
    /// Runs until `shutdown`, then lets the deliveries in flight finish and records them.
    /// `inbox` holds the slots every delivery takes and the rows claimed as they were
    /// accepted.
    pub async fn run(self, mut inbox: Inbox) {
        let settings = self.settings.clone();
        let slots = inbox.slots.clone();
        // Each outcome travels with its slot, so the channel never holds more than the slots.
        let (done_tx, mut done_rx) = mpsc::channel::<Finished>(settings.concurrency.max(1));
        let guards = Arc::new(Guards::new(
            &settings,
            self.store.clone(),
            self.metrics.clone(),
        ));
        let mut pending = Pending::default();
        // Whether rows may be due that no one claimed: rows were queued (a wake-up), time
        // passed (retries and expired leases come due), or the last claim filled every slot.
        // Only then does a commit claim: rows accepted with a free slot never wait in the
        // queue, and a claim that finds nothing costs a query.
        let mut due = true;
        let mut last_claim = Instant::now();
        let mut failures = 0u32;

        loop {
            if pending.outcomes.is_empty() {
                let free = slots.available_permits() > 0;
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => break,
                    Some(claimed) = inbox.rx.recv() => {
                        self.start_claimed(claimed, &guards, &done_tx).await;
                        continue;
                    }
                    Some(f) = done_rx.recv() => pending.push(f),
                    _ = self.wake.notified(), if free && !due => due = true,
                    _ = tokio::time::sleep(settings.poll_interval), if free && !due => due = true,
                    _ = std::future::ready(()), if free && due => {}
                }
            }
            // Rows accepted meanwhile are claimed already: they go first.
            while let Ok(claimed) = inbox.rx.try_recv() {
                self.start_claimed(claimed, &guards, &done_tx).await;
            }
            pending.gather(&mut done_rx);
            self.linger(&mut pending, &mut done_rx, &slots).await;
            due |= self.wake.notified().now_or_never().is_some()
                || last_claim.elapsed() >= settings.poll_interval;
            // The slots this commit frees count for its claim: the claim is what uses them.
            // The others are taken before claiming, as the acceptor takes them too.
            let (reused, extra) = if due {
                let reused = pending.permits.len().min(settings.batch_size);
                // A claim holds its slots until it commits; taking every free one would send
                // the rows accepted meanwhile to the queue, whose wake-up claims again, and so
                // on. A share stays free for them.
                let keep = settings.concurrency / HANDOFF_SHARE;
                let wanted = (settings.batch_size - reused)
                    .min(slots.available_permits().saturating_sub(keep));
                (reused, take_slots(&slots, wanted))
            } else {
                (0, Vec::new())
            };
            let limit = reused + extra.len();
            let now = now_ms();
            let lease = Lease {
                now,
                until: now + settings.lease.as_millis() as i64,
                tag: rand::rng().random(),
            };
            match self.commit(&pending.outcomes, limit, lease).await {
                Ok(rows) => {
                    failures = 0;
                    // On record: only now are their slots free again, for the rows claimed.
                    let mut permits = std::mem::take(&mut pending).permits;
                    permits.extend(extra);
                    permits.truncate(rows.len());
                    if limit > 0 {
                        last_claim = Instant::now();
                        due = rows.len() == limit;
                    }
                    if !rows.is_empty() {
                        self.metrics.count(
                            "oncall_relay_notifications_claimed_total",
                            &[("via", "queue")],
                            rows.len() as u64,
                        );
                    }
                    self.start(rows, permits, lease.tag, &guards, &done_tx)
                        .await;
                }
                Err(e) => {
                    failures += 1;
                    // Once per outage is enough in the log; the readiness probe tells the rest.
                    if failures == 1 || failures % 60 == 0 {
                        tracing::warn!(error = %e, count = pending.outcomes.len(), "cannot record delivery outcomes or claim notifications");
                    }
                    if failures >= RECORD_TRIES && !pending.outcomes.is_empty() {
                        // Their leases run out and they are delivered again rather than lost.
                        pending = Pending::default();
                    }
                    let wait = settings
                        .poll_interval
                        .min(Duration::from_millis(100) * failures.min(50));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => break,
                    }
                }
            }
        }

        // Rows accepted before the acceptor stopped are claimed by this process: delivered
        // now rather than after their lease.
        while let Ok(claimed) = inbox.rx.try_recv() {
            self.start_claimed(claimed, &guards, &done_tx).await;
        }
        // Let deliveries in flight finish so their outcomes are recorded; what does not finish
        // in time stays claimed and is picked up again after its lease.
        drop(done_tx);
        let deadline = tokio::time::Instant::now() + settings.lease;
        loop {
            pending.gather(&mut done_rx);
            if !pending.outcomes.is_empty() {
                if let Err(e) = queue::record(&self.store, &pending.outcomes, now_ms()).await {
                    tracing::warn!(error = %e, count = pending.outcomes.len(), "cannot record delivery outcomes");
                }
                pending = Pending::default();
            }
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(f)) => pending.push(f),
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Waits a moment for deliveries still running, as long as their outcomes keep coming:
    /// a fast backend answers within microseconds, and committing each outcome as it
    /// trickles in would spend a commit (and a claim) on every one or two. A backend that
    /// hangs holds the commit back by one [`LINGER_GAP`] at most.
    async fn linger(
        &self,
        pending: &mut Pending,
        rx: &mut mpsc::Receiver<Finished>,
        slots: &Semaphore,
    ) {
        if pending.outcomes.is_empty() {
            return;
        }
        let cap = tokio::time::Instant::now() + LINGER_MAX;
        loop {
            // Slots held by deliveries whose outcome has not reached `pending` yet.
            let in_flight = self
                .settings
                .concurrency
                .saturating_sub(slots.available_permits() + pending.permits.len());
            if in_flight == 0 || pending.outcomes.len() >= RECORD_BATCH {
                return;
            }
            let gap = (tokio::time::Instant::now() + LINGER_GAP).min(cap);
            match tokio::time::timeout_at(gap, rx.recv()).await {
                Ok(Some(f)) => {
                    pending.push(f);
                    pending.gather(rx);
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Records `outcomes` and claims up to `limit` due rows, in one transaction.
    async fn commit(
        &self,
        outcomes: &[Outcome],
        limit: usize,
        lease: Lease,
    ) -> Result<Vec<Notification>, sqlx::Error> {
        let store = &self.store;
        if outcomes.is_empty() {
            if limit == 0 {
                return Ok(Vec::new());
            }
            return queue::claim(store, limit, lease).await;
        }
        let mut tx = store.begin_write().await?;
        queue::record_on(&mut tx, outcomes, lease.now).await?;
        let rows = if limit > 0 {
            queue::claim_on(&mut tx, store, limit, lease).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
        Ok(rows)
    }

    /// Starts the rows the acceptor claimed, on the slots it reserved for them.
    async fn start_claimed(
        &self,
        claimed: Claimed,
        guards: &Arc<Guards>,
        done_tx: &mpsc::Sender<Finished>,
    ) {
        self.start(
            claimed.rows,
            claimed.permits,
            claimed.claim,
            guards,
            done_tx,
        )
        .await;
    }

    /// Starts the delivery of each claimed row in its own task, on the slot given for it.
    async fn start(
        &self,
        rows: Vec<Notification>,
        permits: Vec<OwnedSemaphorePermit>,
        claim: i64,
        guards: &Arc<Guards>,
        done_tx: &mpsc::Sender<Finished>,
    ) {
        if rows.is_empty() {
            return;
        }
        let ids: Vec<&str> = rows.iter().map(|n| n.user_id.as_str()).collect();
        let users = match self.directory.by_ids(&ids).await {
            Ok(users) => users,
            Err(e) => {
                // Nothing started: the leases run out and the rows are claimed again.
                tracing::warn!(error = %e, "cannot read the directory for claimed notifications");
                return;
            }
        };
        let mut permits = permits.into_iter();
        for mut n in rows {
            // Slots are taken before claiming, one per row.
            let Some(permit) = permits.next() else {
                // Unreachable by construction; the row's lease runs out and it is claimed again.
                tracing::warn!(
                    id = n.id,
                    "no free delivery slot for a claimed notification"
                );
                continue;
            };
            let user = users.get(&n.user_id);
            let chain = self.backends.chain(&n, user.map(|u| u.as_ref()));
            let done = done_tx.clone();
            let settings = self.settings.clone();
            let metrics = self.metrics.clone();
            let guards = guards.clone();
            if let Some(user) = user {
                n.contacts = user.contacts.clone();
                n.reader = super::Reader::of(user);
            }
            n.links = self.backends.links_for(&n);
            let incidents = self.backends.incidents();
            tokio::spawn(async move {
                let backend_slot = match gate(&guards, &chain, &n, claim).await {
                    Ok(slot) => slot,
                    Err(not_tried) => {
                        // Nothing was delivered; the slot is back with the next commit.
                        let _ = done.send((not_tried, Some(permit))).await;
                        return;
                    }
                };
                // Settling a call's answer sends nothing: no details needed.
                if n.answer_deadline.is_none() {
                    n.alert_group = incidents.of(&n).await;
                }
                let (kind, created_at) = (n.kind.clone(), n.created_at);
                let (outcome, health) = deliver(&chain, &settings, n, claim).await;
                drop(backend_slot);
                if !outcome.backend.is_empty() {
                    guards.record(
                        &outcome.backend,
                        health.as_deref().map_or(Ok(()), Err),
                        now_ms(),
                    );
                }
                record_metrics(&metrics, &kind, created_at, &outcome);
                // The slot is freed once the outcome is committed.
                let _ = done.send((outcome, Some(permit))).await;
            });
        }
    }
}
