use super::*;
use std::time::Duration;

async fn guards(failures: u32) -> (Guards, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let db = crate::config::DbSettings {
        driver: crate::config::Driver::Sqlite,
        path: dir.path().join("b.db").display().to_string(),
        ..Default::default()
    };
    let store = Store::connect(&db).await.expect("connect");
    store.migrate().await.expect("migrate");
    let settings = QueueSettings {
        breaker_failures: failures,
        breaker_cooldown: Duration::from_secs(10),
        concurrency: 4,
        ..QueueSettings::default()
    };
    (
        Guards::new(&settings, store, Arc::new(Metrics::default())),
        dir,
    )
}

#[tokio::test]
async fn opens_after_failures_in_a_row_then_probes_once_and_closes() {
    let (g, _dir) = guards(3).await;
    for _ in 0..2 {
        g.record("gw", Err("503"), 0);
    }
    g.record("gw", Ok(()), 0);
    g.record("gw", Err("503"), 0);
    g.record("gw", Err("503"), 0);
    assert_eq!(g.admit("gw", 0), Admit::Pass, "a success resets the count");
    g.record("gw", Err("503"), 1_000);
    assert_eq!(g.admit("gw", 1_000), Admit::Skip(11_000));
    assert_eq!(g.admit("other", 1_000), Admit::Pass);
    assert_eq!(g.admit("gw", 11_000), Admit::Pass, "the probe");
    assert!(matches!(g.admit("gw", 11_000), Admit::Skip(_)), "one probe");
    g.record("gw", Err("503"), 12_000);
    assert_eq!(g.admit("gw", 12_000), Admit::Skip(22_000), "failed probe");
    assert_eq!(g.admit("gw", 22_000), Admit::Pass);
    g.record("gw", Ok(()), 22_500);
    assert_eq!(g.admit("gw", 22_500), Admit::Pass);
    assert_eq!(g.admit("gw", 22_500), Admit::Pass);
}

#[tokio::test]
async fn zero_failures_turns_it_off() {
    let (g, _dir) = guards(0).await;
    for _ in 0..100 {
        g.record("gw", Err("503"), 0);
    }
    assert_eq!(g.admit("gw", 0), Admit::Pass);
}

#[tokio::test]
async fn bulkhead_defaults_to_half_the_slots() {
    let (g, _dir) = guards(3).await;
    let a = g.try_slot("gw");
    let b = g.try_slot("gw");
    assert!(a.is_some() && b.is_some());
    assert!(g.try_slot("gw").is_none(), "2 of 4 slots");
    assert!(g.try_slot("other").is_some(), "each backend has its own");
    drop(a);
    assert!(g.try_slot("gw").is_some());
}

/// Waits for the background writer until `store` holds `n` changes; returns them.
async fn changes_when(store: &Store, n: usize) -> Vec<CircuitChange> {
    for _ in 0..250 {
        let got = changes(store, None, None, 100).await.expect("changes");
        if got.len() == n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "never {n} changes: {:?}",
        changes(store, None, None, 100).await
    );
}

#[tokio::test]
async fn every_change_is_kept_for_the_retention() {
    let (_, dir) = guards(1).await;
    let db = crate::config::DbSettings {
        driver: crate::config::Driver::Sqlite,
        path: dir.path().join("b.db").display().to_string(),
        ..Default::default()
    };
    let store = Store::connect(&db).await.expect("connect");
    let settings = QueueSettings {
        breaker_failures: 1,
        breaker_cooldown: Duration::from_secs(10),
        retention: Duration::from_secs(60),
        ..QueueSettings::default()
    };
    let g = Guards::new(&settings, store.clone(), Arc::new(Metrics::default()));
    g.record("gw", Err("HTTP 503"), 1_000);
    assert_eq!(g.admit("gw", 11_000), Admit::Pass);
    g.record("gw", Ok(()), 11_500);
    let got = changes_when(&store, 3).await;
    let seen: Vec<_> = got
        .iter()
        .map(|c| (c.state.as_str(), c.changed_at, c.error.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("closed", 11_500, None),
            ("half_open", 11_000, None),
            ("open", 1_000, Some("HTTP 503"))
        ]
    );
    assert_eq!(got[2].open_until, Some(11_000));
    assert!(
        changes(&store, Some("other"), None, 10)
            .await
            .expect("other")
            .is_empty()
    );
    // A change a retention later trims what came before it.
    g.record("gw", Err("HTTP 502"), 100_000);
    let got = changes_when(&store, 1).await;
    assert_eq!(
        (got[0].state.as_str(), got[0].changed_at),
        ("open", 100_000)
    );
}

#[tokio::test]
async fn a_full_bulkhead_is_waited_for_briefly() {
    let (g, _dir) = guards(3).await;
    let (a, b) = (g.try_slot("gw"), g.try_slot("gw"));
    assert!(a.is_some() && b.is_some());
    let freed = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
    });
    let waited = g.slot("gw", Duration::from_secs(30)).await;
    assert!(waited.is_some(), "a slot freed during the wait is taken");
    freed.await.expect("task");
    assert!(
        g.slot("gw", Duration::from_millis(20)).await.is_none(),
        "no slot freed: the wait ends empty"
    );
}
