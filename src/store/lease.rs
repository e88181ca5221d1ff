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
