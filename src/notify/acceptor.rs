//! Group commit: concurrent requests share one database transaction.
//!
//! Each request hands its notification to a channel and waits. A committer takes everything
//! waiting (up to `queue.batch_size`), inserts it in one transaction and answers every waiter
//! at once. Under load many requests ride on one commit; alone, a request waits for just its
//! own. `queue.writers` commits may run at the same time.
//!
//! Refused requests ride on the same commits ([`super::refusals`]): handed over without
//! waiting, through a bounded buffer that drops (and counts) what does not fit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::refusals::{self, Refusal};
use super::{NewNotification, NotifyError, queue};
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
    /// channel is drained, so nothing handed over is left behind at shutdown.
    pub fn spawn(
        store: Store,
        settings: &QueueSettings,
        wake: Arc<Notify>,
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
            batch,
            writers,
            wake,
            metrics.clone(),
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

/// Inserts accepted notifications and refusals in one transaction.
async fn commit(
    store: &Store,
    items: &[NewNotification],
    refused: &[Refusal],
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    if !items.is_empty() {
        queue::insert_rows(&mut tx, items, now).await?;
    }
    if !refused.is_empty() {
        refusals::insert_rows(&mut tx, refused, now).await?;
    }
    tx.commit().await
}

async fn commit_loop(
    store: Store,
    mut inbox: Inbox,
    batch: usize,
    writers: usize,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let slots = Arc::new(Semaphore::new(writers));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some((pending, refused)) = inbox.next(batch).await else {
            break;
        };
        let store = store.clone();
        let wake = wake.clone();
        let metrics = metrics.clone();
        running.spawn(async move {
            let _permit = permit;
            // Requests whose caller already gave up (timed out) are still committed: the
            // engine treats them as failed, but a page that rings anyway beats a lost one.
            let (items, waiters): (Vec<_>, Vec<_>) =
                pending.into_iter().map(|p| (p.item, p.done)).unzip();
            let result = commit(&store, &items, &refused).await;
            match &result {
                Ok(()) => {
                    tracing::debug!(
                        count = items.len(),
                        refused = refused.len(),
                        "committed notifications"
                    );
                    if !items.is_empty() {
                        wake.notify_one();
                    }
                    for n in &items {
                        metrics.count(
                            "oncall_relay_notifications_accepted_total",
                            &[("kind", n.kind.as_str())],
                            1,
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, count = items.len(), refused = refused.len(), "cannot commit notifications")
                }
            }
            let answer = result.map_err(|e| e.to_string());
            for w in waiters {
                let _ = w.send(answer.clone());
            }
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

    #[tokio::test]
    async fn refusals_beyond_the_buffer_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let db = crate::config::DbSettings {
            driver: crate::config::Driver::Sqlite,
            path: dir.path().join("r.db").display().to_string(),
            ..Default::default()
        };
        let store = Store::connect(&db).await.expect("connect");
        store.migrate().await.expect("migrate");
        let metrics = Arc::new(Metrics::default());
        let (acceptor, committer) = Acceptor::spawn(
            store.clone(),
            &QueueSettings::default(),
            Arc::new(Notify::new()),
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
