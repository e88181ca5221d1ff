//! Background work that repeats until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;
use crate::store::Store;

/// Delay before retry number `retry` (from 0): `base` doubled `retry` times, capped at `max`.
pub fn doubling_delay(retry: usize, base: Duration, max: Duration) -> Duration {
    ExponentialBuilder::new()
        .with_min_delay(base)
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(retry)
        .unwrap_or(max)
        .min(max)
}

/// When a periodic task runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRun {
    /// At once, then every interval.
    Now,
    /// After one interval.
    AfterInterval,
}

/// Runs `tick` every `every` until `shutdown`. A tick still running at shutdown is dropped:
/// whatever it had open rolls back, so shutdown never waits on a slow database or server.
pub fn spawn_periodic<F, Fut>(
    every: Duration,
    first: FirstRun,
    shutdown: CancellationToken,
    mut tick: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut wait = first == FirstRun::AfterInterval;
        loop {
            if wait {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            wait = true;
            tokio::select! {
                _ = tick() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}

/// Checks every `every` whether the directory changed, so another replica's edits reach the
/// look-up cache.
pub(crate) fn spawn_directory_refresh(
    directory: Directory,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // Warn once per outage, not once per interval.
    let failing = Arc::new(AtomicBool::new(false));
    spawn_periodic(every, FirstRun::AfterInterval, shutdown, move || {
        let (directory, failing) = (directory.clone(), failing.clone());
        async move {
            match directory.refresh().await {
                Ok(_) => failing.store(false, Ordering::Relaxed),
                Err(e) => {
                    if !failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "cannot refresh the user directory; recent look-ups may be stale");
                    }
                }
            }
        }
    })
}

/// Every ten minutes, deletes finished notifications and pages older than `retention`, and
/// used action links past their expiry.
pub(crate) fn spawn_purge(
    store: Store,
    retention: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let every = Duration::from_secs(600);
    spawn_periodic(every, FirstRun::Now, shutdown, move || {
        let store = store.clone();
        async move {
            let before = crate::store::now_ms() - retention.as_millis() as i64;
            match crate::notify::purge_finished(&store, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "purged old notifications"),
                Err(e) => tracing::warn!(error = %e, "cannot purge old notifications"),
            }
            if let Err(e) = crate::ack::registry::purge(&store, before).await {
                tracing::warn!(error = %e, "cannot purge old pages");
            }
            if let Err(e) = crate::ack::links::purge(&store, crate::store::now_ms()).await {
                tracing::warn!(error = %e, "cannot purge used action links");
            }
        }
    })
}

/// Returns memory freed after a burst to the system, so an idle relay stays small.
pub(crate) fn spawn_memory_trim(shutdown: CancellationToken) -> JoinHandle<()> {
    let every = Duration::from_secs(30);
    spawn_periodic(every, FirstRun::AfterInterval, shutdown, || async {
        crate::telemetry::release_free_memory();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_delay_doubles_then_caps() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(600));
        assert_eq!(doubling_delay(0, base, max), base);
        assert_eq!(doubling_delay(1, base, max), Duration::from_secs(2));
        assert_eq!(doubling_delay(9, base, max), Duration::from_secs(512));
        assert_eq!(doubling_delay(10, base, max), max);
        assert_eq!(doubling_delay(30, base, max), max);
    }
}
