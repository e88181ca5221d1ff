//! Background work that repeats until shutdown.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
