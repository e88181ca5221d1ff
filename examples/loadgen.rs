//! A closed-loop HTTP load generator for the oncall-relay benchmark (`bench/run.sh`).
//!
//! `--concurrency` tasks each send one request at a time, over keep-alive HTTP/1.1
//! connections, for `--warmup` and then `--duration`. Prints one JSON line: request counts,
//! errors by status, requests per second and latency percentiles of the measured window.
//!
//! ```text
//! cargo build --release --example loadgen
//! target/release/examples/loadgen --url http://127.0.0.1:8880/api/v1/make_call --method POST \
//!     --header 'Authorization: TOKEN' --users 10000 \
//!     --body-template 'email=u{n}%40bench.example&message=Bench+call+{n}'
//! ```
//!
//! With `--wait-ready`, it sends no load: it polls `--url` every millisecond until a 2xx
//! answer and prints the milliseconds elapsed since `--since-ns` (Unix time in nanoseconds,
//! e.g. `date +%s%N` taken just before the server was started).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::json;

/// Closed-loop HTTP load generator printing one JSON line of results.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Cli {
    /// Target URL; `{n}` and `{i}` in it are replaced as in `--body-template` (e.g. a
    /// different heartbeat link per request).
    #[arg(long)]
    url: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Literal request body (sent as application/x-www-form-urlencoded unless a
    /// Content-Type header is given).
    #[arg(long, conflicts_with = "body_template")]
    body: Option<String>,
    /// Request body in which `{n}` becomes the request number modulo `--users` and `{i}` the
    /// request number itself (the body is sent as is: URL-encode it yourself).
    #[arg(long)]
    body_template: Option<String>,
    /// Modulus of `{n}` in `--body-template`.
    #[arg(long, default_value_t = 1)]
    users: u64,
    /// Request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Requests in flight at once (one task and one connection each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured time, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time under load before measuring starts (its requests are counted apart).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Per-request timeout (a timed-out request counts as an error).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Runtime worker threads [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Send no load: poll `--url` every millisecond until it answers 2xx, then print the
    /// milliseconds since `--since-ns`.
    #[arg(long, requires = "since_ns")]
    wait_ready: bool,
    /// Start of the clock for `--wait-ready`, in nanoseconds since the Unix epoch.
    #[arg(long)]
    since_ns: Option<u128>,
    /// Longest wait in `--wait-ready` mode.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.wait_ready {
        return wait_ready(&cli);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime.enable_all().build()?.block_on(load(cli))
}

/// What one task saw in one phase (warm-up or measured).
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    ok: u64,
    /// Error counts by HTTP status or transport error kind.
    errors: BTreeMap<String, u64>,
    /// Latencies in microseconds.
    latencies_us: Vec<u64>,
}

impl Tally {
    fn record(&mut self, outcome: Result<u16, &'static str>, latency: Duration) {
        self.requests += 1;
        match outcome {
            Ok(status) if (200..300).contains(&status) => self.ok += 1,
            Ok(status) => *self.errors.entry(status.to_string()).or_default() += 1,
            Err(kind) => *self.errors.entry(kind.to_string()).or_default() += 1,
        }
        self.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// A request body, with its placeholders split out once.
#[derive(Debug, Clone)]
enum Body {
    None,
    Fixed(String),
    /// Literal pieces; between two consecutive pieces comes a placeholder.
    Template {
        pieces: Vec<String>,
        slots: Vec<Slot>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    /// `{n}`: request number modulo `--users`.
    N,
    /// `{i}`: request number.
    I,
}

impl Body {
    fn template(raw: &str) -> Body {
        let mut pieces = Vec::new();
        let mut slots = Vec::new();
        let mut rest = raw;
        let mut literal = String::new();
        while let Some(pos) = rest.find('{') {
            let (slot, len) = if rest[pos..].starts_with("{n}") {
                (Some(Slot::N), 3)
            } else if rest[pos..].starts_with("{i}") {
                (Some(Slot::I), 3)
            } else {
                (None, 1)
            };
            literal.push_str(&rest[..pos]);
            match slot {
                Some(s) => {
                    pieces.push(std::mem::take(&mut literal));
                    slots.push(s);
                }
                None => literal.push('{'),
            }
            rest = &rest[pos + len..];
        }
        literal.push_str(rest);
        pieces.push(literal);
        Body::Template { pieces, slots }
    }

    fn render(&self, i: u64, users: u64) -> Option<String> {
        match self {
            Body::None => None,
            Body::Fixed(s) => Some(s.clone()),
            Body::Template { pieces, slots } => {
                let mut out =
                    String::with_capacity(pieces.iter().map(String::len).sum::<usize>() + 16);
                out.push_str(&pieces[0]);
                for (slot, piece) in slots.iter().zip(&pieces[1..]) {
                    let value = match slot {
                        Slot::N => i % users,
                        Slot::I => i,
                    };
                    out.push_str(&value.to_string());
                    out.push_str(piece);
                }
                Some(out)
            }
        }
    }
}

fn parse_headers(raw: &[String], has_body: bool) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for h in raw {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header `{h}`: use `Name: value`");
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("--header `{h}`: bad name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("--header `{h}`: bad value"))?;
        headers.append(name, value);
    }
    if has_body && !headers.contains_key(CONTENT_TYPE) {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    Ok(headers)
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_us.len()) - 1;
    round3(sorted_us[idx] as f64 / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn load(cli: Cli) -> anyhow::Result<()> {
    // reqwest is built with `rustls-no-provider`: it panics unless a provider is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let url = Url::parse(&cli.url).with_context(|| format!("--url `{}`", cli.url))?;
    let method = Method::from_bytes(cli.method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("--method `{}`", cli.method))?;
    let body = match (&cli.body, &cli.body_template) {
        (Some(b), _) => Body::Fixed(b.clone()),
        (None, Some(t)) => Body::template(t),
        (None, None) => Body::None,
    };
    let headers = parse_headers(&cli.headers, !matches!(body, Body::None))?;
    let url_template =
        (cli.url.contains("{n}") || cli.url.contains("{i}")).then(|| Body::template(&cli.url));
    let concurrency = cli.concurrency.max(1);
    let users = cli.users.max(1);
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(cli.timeout)
        .default_headers(headers)
        .build()
        .context("cannot build the HTTP client")?;

    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + cli.warmup;
    let end = measure_from + cli.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        let url_template = url_template.clone();
        let method = method.clone();
        let body = body.clone();
        let counter = counter.clone();
        tasks.spawn(async move {
            let mut warmup = Tally::default();
            let mut measured = Tally::default();
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let mut req = match url_template.as_ref().and_then(|t| t.render(i, users)) {
                    Some(u) => client.request(method.clone(), u),
                    None => client.request(method.clone(), url.clone()),
                };
                if let Some(b) = body.render(i, users) {
                    req = req.body(b);
                }
                let outcome = match req.send().await {
                    // Read the whole body so the connection goes back to the pool.
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        match resp.bytes().await {
                            Ok(_) => Ok(status),
                            Err(e) => Err(error_kind(&e)),
                        }
                    }
                    Err(e) => Err(error_kind(&e)),
                };
                let tally = if sent < measure_from {
                    &mut warmup
                } else {
                    &mut measured
                };
                tally.record(outcome, sent.elapsed());
            }
            (warmup, measured)
        });
    }
    let mut warmup = Tally::default();
    let mut measured = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        let (w, m) = joined.context("a load task panicked")?;
        warmup.merge(w);
        measured.merge(m);
    }
    // Requests started in the window and finished after it are counted, so is their time.
    let elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    measured.latencies_us.sort_unstable();
    let lat = &measured.latencies_us;
    let report = json!({
        "url": cli.url,
        "method": method.as_str(),
        "concurrency": concurrency,
        "duration_s": round3(elapsed),
        "requests": measured.requests,
        "ok": measured.ok,
        "errors": measured.error_count(),
        "error_counts": measured.errors,
        "rps": round3(measured.requests as f64 / elapsed),
        "ok_rps": round3(measured.ok as f64 / elapsed),
        "p50_ms": percentile_ms(lat, 50.0),
        "p90_ms": percentile_ms(lat, 90.0),
        "p99_ms": percentile_ms(lat, 99.0),
        "max_ms": percentile_ms(lat, 100.0),
        "warmup_requests": warmup.requests,
        "warmup_ok": warmup.ok,
        "warmup_errors": warmup.errors,
        "total_ok": warmup.ok + measured.ok,
    });
    println!("{report}");
    Ok(())
}

fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "transport"
    }
}

/// `--wait-ready`: blocking raw HTTP/1.1 probes, so that nothing but the probe itself runs.
fn wait_ready(cli: &Cli) -> anyhow::Result<()> {
    let since_ns = cli.since_ns.context("--wait-ready needs --since-ns")?;
    let url = Url::parse(&cli.url).with_context(|| format!("--url `{}`", cli.url))?;
    if url.scheme() != "http" {
        bail!("--wait-ready supports http:// URLs only");
    }
    let addr = url
        .socket_addrs(|| Some(80))?
        .into_iter()
        .next()
        .context("--url has no address")?;
    let host = url.host_str().unwrap_or("localhost").to_string();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + cli.ready_timeout;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if probe(&addr, &request).unwrap_or(false) {
            let now_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
            let ms = now_ns.saturating_sub(since_ns) as f64 / 1e6;
            println!("{}", json!({"ready_ms": round3(ms), "probes": attempts}));
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer 2xx within {:?}",
                cli.url,
                cli.ready_timeout
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn probe(addr: &std::net::SocketAddr, request: &str) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_nodelay(true)?;
    stream.write_all(request.as_bytes())?;
    // The status line fits in the first read: `HTTP/1.1 200 OK`.
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    Ok(head
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2') && code.len() == 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_substitutes_placeholders() {
        let body = Body::template("email=u{n}%40x&message=call+{i}+{x}");
        assert_eq!(
            body.render(12, 10).as_deref(),
            Some("email=u2%40x&message=call+12+{x}")
        );
        assert_eq!(
            Body::template("plain").render(3, 1).as_deref(),
            Some("plain")
        );
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }
}
