//! Delivery under faults, measured against a real `oncall-relay serve` (see `bench/faults.sh`).
//!
//! `crash`: 64 clients send calls for `--load-secs`; the server is killed with SIGKILL while
//! deliveries flow and started again; prints how many notifications a loopback webhook received
//! twice (same `Idempotency-Key`), against `queue.concurrency`.
//!
//! `stall`: 100 SMS are routed to an SMS webhook that never answers (`--hang`) or answers at
//! once, then calls are sent to a healthy voice webhook at a steady rate; prints the p50, p99
//! and max delay from a call's 200 to its arrival at the voice webhook.
//!
//! ```text
//! cargo build --release --bin oncall-relay --example faults
//! target/release/examples/faults crash --relay target/release/oncall-relay --db-path /tmp/f.db
//! target/release/examples/faults stall --relay target/release/oncall-relay --db-path /tmp/s.db --hang
//! ```

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "bench-token-0123456789";

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// The `oncall-relay` binary.
    #[arg(long, global = true, default_value = "target/release/oncall-relay")]
    relay: String,
    /// SQLite file (a fresh one).
    #[arg(long, global = true)]
    db_path: Option<String>,
    /// PostgreSQL URL (an empty database) instead of SQLite.
    #[arg(long, global = true)]
    db_url: Option<String>,
    /// `queue.concurrency` of the server.
    #[arg(long, global = true, default_value_t = 32)]
    concurrency: usize,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// SIGKILL under load, then count repeated deliveries.
    Crash {
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds of load before the kill.
        #[arg(long, default_value_t = 5)]
        load_secs: u64,
    },
    /// Delay of calls to a healthy backend while another backend hangs (or not).
    Stall {
        /// The SMS webhook never answers.
        #[arg(long)]
        hang: bool,
        /// Calls sent, 20 a second.
        #[arg(long, default_value_t = 200)]
        calls: usize,
    },
}

/// What a loopback webhook received: per message, when; per idempotency key, how often.
#[derive(Default)]
struct Seen {
    at: HashMap<String, Instant>,
    keys: HashMap<String, usize>,
}

type Shared = Arc<Mutex<Seen>>;

async fn webhook(hang: bool) -> anyhow::Result<(String, Shared)> {
    let seen: Shared = Arc::default();
    async fn record(State((seen, hang)): State<(Shared, bool)>, headers: HeaderMap, body: String) {
        if hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
        s.at.entry(message).or_insert_with(Instant::now);
        *s.keys.entry(key).or_default() += 1;
    }
    let app = Router::new()
        .fallback(any(record))
        .with_state((seen.clone(), hang));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/hook"), seen))
}

struct Relay {
    child: tokio::process::Child,
    addr: String,
}

async fn start(cli: &Cli, dir: &std::path::Path, plugin: &str) -> anyhow::Result<Relay> {
    let db = match (&cli.db_url, &cli.db_path) {
        (Some(url), _) => format!("  driver: postgres\n  url: '{url}'\n"),
        (None, Some(path)) => format!("  driver: sqlite\n  path: '{path}'\n"),
        (None, None) => bail!("give --db-path or --db-url"),
    };
    let config = dir.join("relay.yml");
    std::fs::write(
        &config,
        format!(
            "app:\n  port: '127.0.0.1:0'\n  auth_token: '{TOKEN}'\n  log_level: warn\ndb:\n{db}\
             queue:\n  lease: 5s\n  poll_interval: 100ms\n  concurrency: {}\n{plugin}",
            cli.concurrency
        ),
    )?;
    let mut child = tokio::process::Command::new(&cli.relay)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("ONCALL_RELAY_APP__LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start the relay")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "oncall-relay listening"
            {
                return v["address"].as_str().map(str::to_string);
            }
        }
        None
    })
    .await?
    .context("the relay did not start")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // Alice, through the CLI, as an operator would.
    let status = tokio::process::Command::new(&cli.relay)
        .arg("--config")
        .arg(&config)
        .args([
            "users",
            "add",
            "--email",
            "alice@example.com",
            "--phone",
            "+4930123456",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    // Already there after a restart.
    let _ = status;
    Ok(Relay { child, addr })
}

async fn post(client: &reqwest::Client, addr: &str, path: &str, message: &str) -> bool {
    client
        .post(format!("http://{addr}/api/v1/{path}"))
        .header("Authorization", TOKEN)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("email", "alice@example.com"), ("message", message)])
                .unwrap_or_default(),
        )
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn crash(cli: &Cli, clients: usize, load_secs: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, seen) = webhook(false).await?;
    let plugin = format!(
        "plugin:\n  backend: hook\n  backends:\n    hook:\n      type: webhook\n      url: '{url}'\n      timeout: 2s\n"
    );
    let mut relay = start(cli, dir.path(), &plugin).await?;
    // The server sees the new user within `directory.refresh_interval`.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(load_secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, addr, accepted) = (client.clone(), relay.addr.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                i += 1;
                if post(&client, &addr, "make_call", &format!("c{c}n{i}")).await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(load_secs)).await;
    relay.child.start_kill()?;
    relay.child.wait().await?;
    for t in tasks {
        let _ = t.await;
    }
    let accepted = accepted.load(Ordering::SeqCst);
    let before = seen.lock().unwrap_or_else(|p| p.into_inner()).keys.len();
    let mut again = start(cli, dir.path(), &plugin).await?;
    let limit = Instant::now() + Duration::from_secs(600);
    loop {
        let n = seen.lock().unwrap_or_else(|p| p.into_inner()).keys.len();
        if n >= accepted {
            break;
        }
        if Instant::now() > limit {
            bail!("only {n} of {accepted} delivered");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = again.child.start_kill();
    let s = seen.lock().unwrap_or_else(|p| p.into_inner());
    let repeated = s.keys.values().filter(|&&n| n > 1).count();
    let keyless = s.keys.get("").copied().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "mode": "crash", "clients": clients, "concurrency": cli.concurrency,
            "accepted": accepted, "delivered_before_kill": before,
            "repeated": repeated, "without_key": keyless,
        })
    );
    Ok(())
}

async fn stall(cli: &Cli, hang: bool, calls: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (sms_url, _) = webhook(hang).await?;
    let (voice_url, seen) = webhook(false).await?;
    let plugin = format!(
        "plugin:\n  backend: voice\n  backends:\n    sms_gw:\n      type: webhook\n      url: '{sms_url}'\n      timeout: 4s\n\
         \x20   voice:\n      type: webhook\n      url: '{voice_url}'\n      timeout: 4s\n\
         \x20 routes:\n    sms:\n      - backend: sms_gw\n    call:\n      - backend: voice\n"
    );
    let relay = start(cli, dir.path(), &plugin).await?;
    // The server sees the new user within `directory.refresh_interval`.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = reqwest::Client::new();
    for i in 0..100 {
        post(&client, &relay.addr, "send_sms", &format!("sms{i}")).await;
    }
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for i in 0..calls {
        tick.tick().await;
        let message = format!("call{i}");
        if post(&client, &relay.addr, "make_call", &message).await {
            sent.push((message, Instant::now()));
        }
    }
    let limit = Instant::now() + Duration::from_secs(300);
    let mut delays: Vec<Duration> = loop {
        {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            if sent.iter().all(|(m, _)| s.at.contains_key(m)) {
                break sent
                    .iter()
                    .filter_map(|(m, at)| s.at.get(m).map(|d| d.saturating_duration_since(*at)))
                    .collect();
            }
        }
        if Instant::now() > limit {
            bail!("calls not all delivered");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    delays.sort();
    let pct = |p: f64| {
        let i = ((delays.len() as f64 * p).ceil() as usize).clamp(1, delays.len()) - 1;
        delays.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "mode": "stall", "sms_backend_hangs": hang, "concurrency": cli.concurrency,
            "calls": delays.len(), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    oncall_relay::install_crypto_provider();
    match cli.mode {
        Mode::Crash { clients, load_secs } => crash(&cli, clients, load_secs).await,
        Mode::Stall { hang, calls } => stall(&cli, hang, calls).await,
    }
}
