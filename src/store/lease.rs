//! Leases: work that one replica at a time does. The holder renews its lease before it runs
//! out; when a replica dies, another takes over once the lease has run out.

use super::Store;

/// Takes or renews the lease `name` for `holder` until `until` (Unix ms); returns whether
/// `holder` has it.
pub async fn hold(
    store: &Store,
    name: &str,
    holder: &str,
    now: i64,
    until: i64,
) -> Result<bool, sqlx::Error> {
    let _guard = store.write_guard().await;
    let taken = sqlx::query(
        "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = $2, until = $3 \
         WHERE leases.holder = $2 OR leases.until < $4",
    )
    .bind(name)
    .bind(holder)
    .bind(until)
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Gives the lease up, so another replica can take it at once.
pub async fn release(store: &Store, name: &str, holder: &str) -> Result<(), sqlx::Error> {
    let _guard = store.write_guard().await;
    sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A lease this process takes under its own random holder id, and the loop that works while
/// it holds it.
#[derive(Debug, Clone)]
pub struct Runner {
    store: Store,
    name: String,
    holder: String,
    ttl: std::time::Duration,
}

impl Runner {
    /// The lease `name`, lasting `ttl` from each renewal.
    pub fn new(store: Store, name: String, ttl: std::time::Duration) -> Runner {
        Runner {
            store,
            name,
            holder: format!("{:016x}", rand::random::<u64>()),
            ttl,
        }
    }

    /// Takes or renews the lease; whether this process holds it (a database error: no).
    pub async fn renew(&self) -> bool {
        let now = super::now_ms();
        hold(
            &self.store,
            &self.name,
            &self.holder,
            now,
            now + self.ttl.as_millis() as i64,
        )
        .await
        .unwrap_or(false)
    }

    /// Waits before the next round: `pause` after a round that went well (`Some(Ok)`), 5 s
    /// more per failure in a row after a failed one (at most 30 s; `failed` hears of the first
    /// failure and every 30th), a third of the lease while another process holds it (`None`).
    /// Returns `false` once `shutdown` comes.
    pub async fn pause(
        &self,
        pace: &mut Pace,
        round: Option<Result<(), String>>,
        pause: std::time::Duration,
        shutdown: &tokio_util::sync::CancellationToken,
        failed: impl Fn(&str),
    ) -> bool {
        let wait = match round {
            Some(Ok(())) => {
                pace.failures = 0;
                pause
            }
            Some(Err(e)) => {
                pace.failures += 1;
                if pace.failures == 1 || pace.failures % 30 == 0 {
                    failed(&e);
                }
                std::time::Duration::from_secs(u64::from(pace.failures.min(6)) * 5)
            }
            None => self.ttl / 3,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = shutdown.cancelled() => false,
        }
    }

    /// Gives the lease up, so another process can take it at once.
    pub async fn release(&self) {
        let _ = release(&self.store, &self.name, &self.holder).await;
    }
}

/// Failures in a row of the rounds run under a lease.
#[derive(Debug, Default)]
pub struct Pace {
    failures: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DbSettings, Driver};

    #[tokio::test]
    async fn one_holder_at_a_time_until_the_lease_runs_out() {
        let dir = tempfile::tempdir().expect("dir");
        let db = DbSettings {
            driver: Driver::Sqlite,
            path: dir.path().join("relay.db").display().to_string(),
            ..DbSettings::default()
        };
        let store = Store::connect(&db).await.expect("connect");
        store.migrate().await.expect("migrate");
        assert!(hold(&store, "poll", "a", 0, 100).await.expect("hold"));
        assert!(!hold(&store, "poll", "b", 50, 150).await.expect("hold"));
        assert!(hold(&store, "poll", "a", 60, 160).await.expect("renew"));
        assert!(
            hold(&store, "poll", "b", 161, 260)
                .await
                .expect("take over")
        );
        release(&store, "poll", "b").await.expect("release");
        assert!(
            hold(&store, "poll", "a", 170, 270)
                .await
                .expect("free again")
        );
        store.close().await;
    }
}
