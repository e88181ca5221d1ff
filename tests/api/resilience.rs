//! PostgreSQL going away and coming back: quick 503s, readiness, recovery without restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// A loopback TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, tasks) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    // Down: the connection is closed at once, as by a dead server.
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("lock").push(link);
            }
        });
        Proxy { port, up, links }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gives_quick_503s_and_recovers_without_restart_on_postgres() {
    let Some(db) = postgres_test_db().await else {
        return;
    };
    let proxy = Proxy::start(pg_address().leak()).await;
    let mut s = settings(&db);
    // The same database, through the proxy.
    let mut url = reqwest::Url::parse(db.settings.url.expose()).expect("database URL");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.port)).expect("port");
    url.query_pairs_mut().append_pair("sslmode", "disable");
    s.db.url = oncall_relay::config::Secret(url.to_string());
    s.db.timeout = Duration::from_secs(1);
    // A claim whose answer was lost in the outage is taken over when its lease ends.
    s.queue.lease = Duration::from_secs(2);
    let app = TestApp::spawn_with_alice(s).await;
    let call = || {
        app.post_fields(
            "/api/v1/make_call",
            &[("email", "alice@example.com"), ("message", "hi")],
        )
    };
    assert_eq!(call().await.status().as_u16(), 200);

    proxy.cut();
    let started = Instant::now();
    let (status, body) = json_of(call().await).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, serde_json::json!({"error": "failed"}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within OnCall's 5 s: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let (status, _) = json_of(app.plain_get("/readyz").await).await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The user sync keeps answering from memory.
    let (status, body) = app.get_json("/api/v1/users?email=alice@example.com").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 1);

    proxy.restore();
    wait_for(Duration::from_secs(15), || async {
        (call().await.status().as_u16() == 200).then_some(())
    })
    .await;
    let resp = app.plain_get("/readyz").await;
    assert_eq!(resp.status().as_u16(), 200);
    let events = app.wait_until_settled(2).await;
    assert!(events.iter().all(|e| e.status == "delivered"), "{events:?}");
    app.stop().await;
}
