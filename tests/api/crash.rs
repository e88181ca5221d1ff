//! A `serve` process killed under load repeats at most the deliveries it had in flight, and
//! every repeat carries the same idempotency key as the first delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::db_test;
use crate::helpers::*;

/// Delivery slots of the killed process: the most deliveries that may be repeated.
const CONCURRENCY: usize = 4;

/// How often each idempotency key reached the webhook.
fn keys_seen(fake: &Fake) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in fake.requests() {
        let key = r
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .expect("every delivery carries an Idempotency-Key")
            .to_string();
        *seen.entry(key).or_default() += 1;
    }
    seen
}

/// Calls sent in all, most of them before the kill.
const CALLS: usize = 2_000;

/// 32 clients send [`CALLS`] calls as fast as the relay accepts them; returns how many were
/// accepted.
async fn load(addr: String) -> usize {
    let client = reqwest::Client::new();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..32 {
        let (client, sent, addr) = (client.clone(), sent.clone(), addr.clone());
        clients.push(tokio::spawn(async move {
            let mut accepted = 0;
            loop {
                let i = sent.fetch_add(1, Ordering::SeqCst);
                if i >= CALLS {
                    return accepted;
                }
                let resp =
                    make_call_request(&client, &format!("http://{addr}"), &format!("c{c}n{i}"))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 200 => accepted += 1,
                    Ok(_) => {}
                    // Killed: nothing more will be answered.
                    Err(_) => return accepted,
                }
            }
        }));
    }
    let mut total = 0;
    for c in clients {
        total += c.await.expect("client");
    }
    total
}

async fn sigkill_under_load_repeats_at_most_the_deliveries_in_flight(db: TestDb) {
    let fake = Fake::start().await;
    let queue = format!("  concurrency: {CONCURRENCY}\n");
    let mut relay = RelayProcess::spawn_with_queue(&db, &fake.url, &queue, "").await;
    add_alice_to(&db).await;

    let clients = tokio::spawn(load(relay.addr.clone()));
    // Kill while deliveries are flowing, well behind the acceptance of new ones.
    wait_for(Duration::from_secs(60), || async {
        (fake.requests().len() >= CALLS / 4).then_some(())
    })
    .await;
    relay.kill().await;
    let accepted = clients.await.expect("load");
    let before_restart = keys_seen(&fake).len();

    let restarted = RelayProcess::spawn_with_queue(&db, &fake.url, &queue, "").await;
    let seen = wait_for(Duration::from_secs(120), || async {
        let seen = keys_seen(&fake);
        (seen.len() >= accepted).then_some(seen)
    })
    .await;
    let repeated = seen.values().filter(|&&n| n > 1).count();
    eprintln!(
        "crash: {accepted} accepted, {before_restart} delivered before the kill, {repeated} repeated after restart (slots: {CONCURRENCY})"
    );
    assert!(
        repeated <= CONCURRENCY,
        "only the {CONCURRENCY} deliveries in flight may repeat, {repeated} did"
    );
    assert!(seen.values().all(|&n| n <= 2), "none more than twice");
    drop(restarted);
}
db_test!(sigkill_under_load_repeats_at_most_the_deliveries_in_flight);
