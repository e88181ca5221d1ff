//! Group commit: concurrent requests share one database transaction.
//!
//! Each request hands its notification to a channel and waits. A committer takes everything
//! waiting (up to `queue.batch_size`), inserts it in one transaction and answers every waiter
//! at once. Under load many requests ride on one commit; alone, a request waits for just its
//! own. `queue.writers` commits may run at the same time.
//!
//! Refused requests ride on the same commits ([`super::refusals`]): handed over without
//! waiting, through a bounded buffer that drops (and counts) what does not fit.
//!
//! Notifications for which this process has a free delivery slot are inserted already
//! claimed and handed to its dispatcher ([`super::handoff`]); the rest wait in the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::handoff::{Claimed, Handoff};
use super::refusals::{self, Refusal};
use super::{NewNotification, Notification, NotifyError, queue};
use crate::config::QueueSettings;
use crate::store::{Store, now_ms};
use crate::telemetry::metrics::Metrics;

/// Longest wait of refusals for an accepted notification to share a commit with.
const REFUSAL_LINGER: Duration = Duration::from_millis(50);
/// Most refusals written in one commit.
const REFUSAL_BATCH: usize = 1024;

struct Pending {
    item: NewNotification,
    done: oneshot::Sender<Result<(), String>>,
}

/// Accepts notifications into the durable queue.
#[derive(Clone, Debug)]
pub struct Acceptor {
    tx: mpsc::Sender<Pending>,
    refused: mpsc::Sender<Refusal>,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl Acceptor {
    /// Starts the committer; it stops once every `Acceptor` clone is dropped and the
    /// channel is drained, so nothing handed over is left behind at shutdown. With a
    /// `handoff` (this process delivers), rows it has slots for go straight to its deliveries.
    pub fn spawn(
        store: Store,
        settings: &QueueSettings,
        wake: Arc<Notify>,
        handoff: Option<Handoff>,
        metrics: Arc<Metrics>,
    ) -> (Acceptor, JoinHandle<()>) {
        let batch = settings.batch_size.max(1);
        let (tx, rx) = mpsc::channel(batch * 8);
        let (refused, refused_rx) = mpsc::channel(refusals::BUFFER);
        // SQLite has one writer at a time: a second committer would only wait on its lock.
        let writers = match store.driver() {
            crate::config::Driver::Sqlite => 1,
            crate::config::Driver::Postgres => settings.writers.max(1),
        };
        let inbox = Inbox {
            accepted: rx,
            refused: refused_rx,
        };
        let handle = tokio::spawn(commit_loop(
            store,
            inbox,
            Committer {
                batch,
                writers,
                wake,
                handoff,
                metrics: metrics.clone(),
            },
        ));
        (
            Acceptor {
                tx,
                refused,
                metrics,
                timeout: settings.accept_timeout,
            },
            handle,
        )
    }

    /// Returns once `item` is committed, or an error if that did not happen in time.
    pub async fn accept(&self, item: NewNotification) -> Result<(), NotifyError> {
        let (done, wait) = oneshot::channel();
        let work = async {
            self.tx
                .send(Pending { item, done })
                .await
                .map_err(|_| NotifyError::Unavailable("the queue is shutting down".into()))?;
            match wait.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(NotifyError::Unavailable(e)),
                Err(_) => Err(NotifyError::Unavailable("the committer stopped".into())),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| NotifyError::Unavailable("commit timed out".into()))?
    }

    /// Puts a refused request on record with the next commit, without waiting for it.
    pub fn refuse(&self, refusal: Refusal) {
        let reason = refusal.reason.as_str();
        tracing::debug!(kind = %refusal.kind, email = %refusal.email, reason, "request refused");
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) = self.refused.try_send(refusal)
        {
            self.metrics.count(
                "oncall_relay_refusals_dropped_total",
                &[("reason", reason)],
                1,
            );
        }
    }
}

/// What the committer takes its work from.
struct Inbox {
    accepted: mpsc::Receiver<Pending>,
    refused: mpsc::Receiver<Refusal>,
}

impl Inbox {
    /// Waits for the first piece of work, then takes what else is waiting (up to `batch`
    /// notifications and [`REFUSAL_BATCH`] refusals); `None` once every sender is gone and
    /// both are drained.
    async fn next(&mut self, batch: usize) -> Option<(Vec<Pending>, Vec<Refusal>)> {
        let mut pending = Vec::new();
        let mut refused = Vec::new();
        // Accepted notifications first: someone waits for each of them.
        tokio::select! {
            biased;
            Some(p) = self.accepted.recv() => pending.push(p),
            Some(r) = self.refused.recv() => refused.push(r),
            else => return None,
        }
        while pending.len() < batch {
            match self.accepted.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        if pending.is_empty() {
            // Refusals alone wait a moment for an accepted notification to ride with (which
            // ends the wait at once), so that a flood of refusals costs a few transactions a
            // second rather than one per request.
            let until = tokio::time::Instant::now() + REFUSAL_LINGER;
            tokio::select! {
                biased;
                Some(p) = self.accepted.recv() => pending.push(p),
                _ = tokio::time::sleep_until(until) => {}
            }
            while pending.len() < batch {
                match self.accepted.try_recv() {
                    Ok(p) => pending.push(p),
                    Err(_) => break,
                }
            }
        }
        while refused.len() < REFUSAL_BATCH {
            match self.refused.try_recv() {
                Ok(r) => refused.push(r),
                Err(_) => break,
            }
        }
        Some((pending, refused))
    }
}

/// Inserts accepted notifications and refusals in one transaction: `now` already claimed
/// for `lease` (returned as claimed), `queued` for any worker.
async fn commit(
    store: &Store,
    now: &[NewNotification],
    lease: Option<queue::Lease>,
    queued: &[NewNotification],
    refused: &[Refusal],
) -> Result<Vec<Notification>, sqlx::Error> {
    let at = lease.map_or_else(now_ms, |l| l.now);
    let mut tx = store.begin_write().await?;
    let mut claimed = Vec::new();
    if let Some(lease) = lease.filter(|_| !now.is_empty()) {
        claimed = queue::insert_claimed(&mut tx, store, now, lease).await?;
    }
    if !queued.is_empty() {
        queue::insert_rows(&mut tx, queued, at).await?;
    }
    if !refused.is_empty() {
        refusals::insert_rows(&mut tx, refused, at).await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

/// How the committer works: its limits and whom it tells.
struct Committer {
    batch: usize,
    writers: usize,
    wake: Arc<Notify>,
    handoff: Option<Handoff>,
    metrics: Arc<Metrics>,
}

impl Committer {
    /// Commits one batch and answers its waiters.
    async fn run(&self, store: &Store, pending: Vec<Pending>, refused: Vec<Refusal>) {
        // Requests whose caller already gave up (timed out) are still committed: the
        // engine treats them as failed, but a page that rings anyway beats a lost one.
        let (items, waiters): (Vec<_>, Vec<_>) =
            pending.into_iter().map(|p| (p.item, p.done)).unzip();
        // A duplicate is final at once: nothing to deliver.
        let (mut now, mut queued): (Vec<_>, Vec<_>) =
            items.into_iter().partition(|n| n.duplicate_of.is_none());
        let permits = match &self.handoff {
            Some(handoff) => handoff.reserve(now.len()),
            None => Vec::new(),
        };
        queued.extend(now.split_off(permits.len()));
        let lease = self.handoff.as_ref().map(|h| h.lease(now_ms()));
        let result = commit(store, &now, lease, &queued, &refused).await;
        match &result {
            Ok(claimed) => {
                tracing::debug!(
                    claimed = claimed.len(),
                    queued = queued.len(),
                    refused = refused.len(),
                    "committed notifications"
                );
                if queued.iter().any(|n| n.duplicate_of.is_none()) {
                    self.wake.notify_one();
                }
                for n in now.iter().chain(&queued) {
                    self.metrics.count(
                        "oncall_relay_notifications_accepted_total",
                        &[("kind", n.kind.as_str())],
                        1,
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, count = now.len() + queued.len(), refused = refused.len(), "cannot commit notifications")
            }
        }
        let answer = match result {
            Ok(rows) => {
                if !rows.is_empty() {
                    self.metrics.count(
                        "oncall_relay_notifications_claimed_total",
                        &[("via", "acceptance")],
                        rows.len() as u64,
                    );
                }
                if let (Some(handoff), Some(lease)) = (&self.handoff, lease) {
                    handoff.send(Claimed {
                        rows,
                        permits,
                        claim: lease.tag,
                    });
                }
                Ok(())
            }
            // The slots reserved for the rows go back with `permits`.
            Err(e) => Err(e.to_string()),
        };
        for w in waiters {
            let _ = w.send(answer.clone());
        }
    }
}

async fn commit_loop(store: Store, mut inbox: Inbox, committer: Committer) {
    let committer = Arc::new(committer);
    let slots = Arc::new(Semaphore::new(committer.writers));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some((pending, refused)) = inbox.next(committer.batch).await else {
            break;
        };
        let store = store.clone();
        let committer = committer.clone();
        running.spawn(async move {
            let _permit = permit;
            committer.run(&store, pending, refused).await;
        });
        // Reap finished commits so the set does not grow.
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Kind;
    use crate::notify::refusals::Reason;

    async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
        let db = crate::config::DbSettings {
            driver: crate::config::Driver::Sqlite,
            path: dir.path().join("r.db").display().to_string(),
            ..Default::default()
        };
        let store = Store::connect(&db).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// Status, attempts and claim tag of every row, in id order.
    async fn rows(store: &Store) -> Vec<(String, i64, Option<i64>)> {
        sqlx::query_as("SELECT status, attempts, claim FROM notifications ORDER BY id")
            .fetch_all(store.pool())
            .await
            .expect("rows")
    }

    #[tokio::test]
    async fn with_a_free_slot_a_notification_is_committed_claimed_and_handed_over() {
        let dir = tempfile::tempdir().expect("dir");
        let store = sqlite_store(&dir).await;
        let (handoff, mut inbox) = super::super::handoff::channel(1, Duration::from_secs(60));
        let (acceptor, _committer) = Acceptor::spawn(
            store.clone(),
            &QueueSettings::default(),
            Arc::new(Notify::new()),
            Some(handoff),
            Arc::new(Metrics::default()),
        );
        for message in ["first", "second"] {
            acceptor
                .accept(NewNotification::to_nobody(Kind::Call, message.into()))
                .await
                .expect("accepted");
        }
        let claimed = inbox.rx.try_recv().expect("the first is handed over");
        assert_eq!(claimed.rows.len(), 1);
        assert_eq!(claimed.permits.len(), 1);
        assert_eq!(claimed.rows[0].message, "first");
        assert_eq!(claimed.rows[0].attempt, 1);
        assert!(
            inbox.rx.try_recv().is_err(),
            "no slot was left for the second"
        );
        // The first as a claim leaves it (its lease guards it against a crash); the second
        // waits in the queue for any worker.
        assert_eq!(
            rows(&store).await,
            vec![
                ("delivering".to_string(), 1, Some(claimed.claim)),
                ("queued".to_string(), 0, None),
            ]
        );
        assert_eq!(inbox.slots.available_permits(), 0);
        drop(claimed);
        assert_eq!(inbox.slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn without_deliveries_in_this_process_everything_is_queued() {
        let dir = tempfile::tempdir().expect("dir");
        let store = sqlite_store(&dir).await;
        let (acceptor, _committer) = Acceptor::spawn(
            store.clone(),
            &QueueSettings::default(),
            Arc::new(Notify::new()),
            None,
            Arc::new(Metrics::default()),
        );
        acceptor
            .accept(NewNotification::to_nobody(Kind::Sms, "hello".into()))
            .await
            .expect("accepted");
        assert_eq!(rows(&store).await, vec![("queued".to_string(), 0, None)]);
    }

    #[tokio::test]
    async fn refusals_beyond_the_buffer_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let store = sqlite_store(&dir).await;
        let metrics = Arc::new(Metrics::default());
        let (acceptor, committer) = Acceptor::spawn(
            store.clone(),
            &QueueSettings::default(),
            Arc::new(Notify::new()),
            None,
            metrics.clone(),
        );
        // On this single-threaded runtime the committer cannot run during the loop, so the
        // buffer fills up exactly: what does not fit is dropped, and the answer never waits.
        let extra = 100;
        for i in 0..refusals::BUFFER + extra {
            acceptor.refuse(Refusal::new(
                Kind::Call,
                &format!("nobody{i}@example.com"),
                "db-1 down",
                Reason::UserNotFound,
            ));
        }
        drop(acceptor);
        committer.await.expect("committer");
        let (stored,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE status = 'refused'")
                .fetch_one(store.pool())
                .await
                .expect("count");
        assert_eq!(stored, refusals::BUFFER as i64);
        let text = String::from_utf8_lossy(&metrics.render(0)).into_owned();
        assert!(
            text.contains(&format!(
                "oncall_relay_refusals_dropped_total{{reason=\"user-not-found\"}} {extra}"
            )),
            "{text}"
        );
    }
}
