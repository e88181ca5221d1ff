//! Background work that repeats until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
