//! Several `serve` processes on one PostgreSQL behave as one service, even when one is killed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_mid_way_loses_nothing_on_postgres() {
    let Some(db) = postgres_test_db().await else {
        return;
    };
    let fake = Fake::start().await;
    let mut a = RelayProcess::spawn(&db, &fake.url, "").await;
    let b = RelayProcess::spawn(&db, &fake.url, "").await;
    add_alice_to(&db).await;

    let total = 2_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let (addr_a, addr_b) = (a.addr.clone(), b.addr.clone());
    // 16 clients alternate between the replicas; replica A is killed half-way.
    let mut clients = Vec::new();
    for c in 0..16 {
        let (client, sent) = (client.clone(), sent.clone());
        let (addr_a, addr_b) = (addr_a.clone(), addr_b.clone());
        clients.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            loop {
                let i = sent.fetch_add(1, Ordering::SeqCst);
                if i >= total {
                    return accepted;
                }
                let addr = if (i + c) % 2 == 0 { &addr_a } else { &addr_b };
                let resp = make_call_request(&client, &format!("http://{addr}"), &format!("n{i}"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                if let Ok(r) = resp
                    && r.status().as_u16() == 200
                {
                    accepted.push(format!("n{i}"));
                }
            }
        }));
    }
    wait_for(Duration::from_secs(60), || async {
        (sent.load(Ordering::SeqCst) >= total / 2).then_some(())
    })
    .await;
    a.kill().await;
    let mut accepted = Vec::new();
    for c in clients {
        accepted.extend(c.await.expect("client"));
    }
    assert!(
        accepted.len() >= total / 2,
        "most requests accepted: {}",
        accepted.len()
    );

    // Every accepted notification is delivered; the killed replica's in-flight ones may be twice.
    let delivered = wait_for(Duration::from_secs(60), || async {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for r in fake.requests() {
            *seen
                .entry(r.json()["message"].as_str().expect("message").to_string())
                .or_default() += 1;
        }
        accepted
            .iter()
            .all(|m| seen.contains_key(m))
            .then_some(seen)
    })
    .await;
    let doubled = delivered.values().filter(|&&n| n > 1).count();
    let unexpected: Vec<&String> = delivered.keys().filter(|m| !accepted.contains(m)).collect();
    eprintln!(
        "replicas: {} accepted of {total}, {} delivered, {doubled} delivered twice (in flight on the killed replica), {} delivered though unanswered",
        accepted.len(),
        delivered.len(),
        unexpected.len()
    );
    assert!(
        doubled <= 64,
        "only the killed replica's in-flight deliveries may repeat: {doubled}"
    );
    assert!(delivered.values().all(|&n| n <= 2));
    drop(b);
}
