//! Group commit: concurrent requests share one database transaction.
//!
//! Each request hands its notification to a channel and waits. A committer takes everything
//! waiting (up to `queue.batch_size`), inserts it in one transaction and answers every waiter
//! at once. Under load many requests ride on one commit; alone, a request waits for just its
//! own. `queue.writers` commits may run at the same time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{NewNotification, NotifyError, queue};
use crate::config::QueueSettings;
use crate::store::{Store, now_ms};
use crate::telemetry::metrics::Metrics;

struct Pending {
    item: NewNotification,
    done: oneshot::Sender<Result<(), String>>,
}

/// Accepts notifications into the durable queue.
#[derive(Clone, Debug)]
pub struct Acceptor {
    tx: mpsc::Sender<Pending>,
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
        // SQLite has one writer at a time: a second committer would only wait on its lock.
        let writers = match store.driver() {
            crate::config::Driver::Sqlite => 1,
            crate::config::Driver::Postgres => settings.writers.max(1),
        };
        let handle = tokio::spawn(commit_loop(store, rx, batch, writers, wake, metrics));
        (
            Acceptor {
                tx,
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
}

async fn commit_loop(
    store: Store,
    mut rx: mpsc::Receiver<Pending>,
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
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut pending = Vec::with_capacity(batch.min(64));
        pending.push(first);
        while pending.len() < batch {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let store = store.clone();
        let wake = wake.clone();
        let metrics = metrics.clone();
        running.spawn(async move {
            let _permit = permit;
            // Requests whose caller already gave up (timed out) are still committed: the
            // engine treats them as failed, but a page that rings anyway beats a lost one.
            let (items, waiters): (Vec<_>, Vec<_>) =
                pending.into_iter().map(|p| (p.item, p.done)).unzip();
            let result = queue::insert_batch(&store, &items, now_ms()).await;
            match &result {
                Ok(()) => {
                    tracing::debug!(count = items.len(), "committed notifications");
                    wake.notify_one();
                    for n in &items {
                        metrics.count(
                            "oncall_relay_notifications_accepted_total",
                            &[("kind", n.kind.as_str())],
                            1,
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, count = items.len(), "cannot commit notifications")
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
