//! Random requests from anyone: odd methods, paths, headers, bodies and encodings, sent over
//! raw TCP so that nothing a client library would refuse is left out. The relay must never
//! panic, never stop serving, and answer JSON whenever it answers itself.
//!
//! Bounded in time and seeded, so a failure can be replayed with the printed seed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db_test;
use crate::helpers::*;

/// Most requests per run, and the longest a run may take.
const MAX_REQUESTS: usize = 3000;
const TIME_BOUND: Duration = Duration::from_secs(8);
const WORKERS: u64 = 4;

const METHODS: &[&str] = &[
    "GET", "GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "FOO", "get",
    "PROPFIND", "TRACE", "X-Y",
    // CONNECT needs an authority, and the others are no methods: hyper refuses them.
    "CONNECT", "G\"T", "PO ST", "",
];

const ROUTES: &[&str] = &[
    "/",
    "/api/v1/info/",
    "/api/v1/users/",
    "/api/v1/users",
    "/api/v1/make_call",
    "/api/v1/send_sms/",
    "/api/v1/integrations/",
    "/mobile_app/v1/fcm_relay/",
    "/integrations/v1/formatted_webhook/abc/heartbeat/",
    "/a/grafana-oncall-app/users/me",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/admin/v1/users",
    "/api/admin/v1/events",
    "/api/admin/v1/openapi.json",
    "/api/admin/v1/debug/pprof/profile",
];

const PATH_BITS: &[&str] = &[
    "..",
    "%2e%2e",
    "%00",
    "%ff",
    "%zz",
    "%",
    "%C3%A9",
    "%E2%82%AC",
    "//",
    "?",
    ";",
    "~",
    "%2F",
    "%5C",
    "*",
    ":",
    "@",
    "&",
    "=",
    "+",
    "/./",
    "%F0%9F%98%80",
];

/// Bytes a URI may not hold: hyper refuses the request line before routing.
const RAW_PATH_BITS: &[&str] = &[
    "é",
    "€",
    "\u{1F600}",
    "a b",
    "\\",
    "{token}",
    "#",
    "\"",
    "<",
];

const CONTENT_TYPES: &[&[u8]] = &[
    b"application/json",
    b"application/json; charset=utf-8",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=xyz",
    b"text/plain",
    b"application/json; charset=utf-16",
    b"application/x-www-form-urlencoded; charset=latin1",
    b"\xff\xfe\xfd",
    "application/jsoné".as_bytes(),
    b"",
    b";;;",
];

/// One generated request as raw bytes, and whether it is a HEAD (no body in the answer).
fn request(rng: &mut StdRng) -> (Vec<u8>, String, String) {
    let method = if rng.random_bool(0.03) {
        METHODS[rng.random_range(0..METHODS.len())].to_string()
    } else {
        METHODS[rng.random_range(0..METHODS.len() - 4)].to_string()
    };
    let mut path = ROUTES[rng.random_range(0..ROUTES.len())].to_string();
    let mutations = if rng.random_bool(0.5) {
        0
    } else {
        rng.random_range(1..4)
    };
    for _ in 0..mutations {
        let bit = if rng.random_bool(0.05) {
            RAW_PATH_BITS[rng.random_range(0..RAW_PATH_BITS.len())]
        } else {
            PATH_BITS[rng.random_range(0..PATH_BITS.len())]
        };
        // After the leading `/`: a target without it is refused by hyper, which case 3 and 4
        // below cover.
        let at = rng.random_range(1.min(path.len())..=path.len());
        let at = (0..=at)
            .rev()
            .find(|i| path.is_char_boundary(*i))
            .unwrap_or(0);
        path.insert_str(at, bit);
    }
    match rng.random_range(0..20) {
        0 => path.push_str(&"a".repeat(rng.random_range(1000..20_000))),
        1 => path = format!("/oncall{path}"),
        2 => path.push_str("?name=%ff&name=é&page=-1&page=99999999999999999999&short=maybe"),
        3 => path = "*".into(),
        4 => path = "http://evil.example/api/v1/info/".into(),
        _ => {}
    }
    let mut head: Vec<u8> = Vec::new();
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n");
    let authorization: Option<Vec<u8>> = match rng.random_range(0..9) {
        0 => None,
        1 => Some(TOKEN.as_bytes().to_vec()),
        2 => Some(format!("Bearer {TOKEN}").into_bytes()),
        3 => Some("€€€€€€€€".as_bytes().to_vec()),
        4 => Some("Bearé x".as_bytes().to_vec()),
        5 => Some(b"Bear\xff\xfe\xfd".to_vec()),
        6 => Some(b"Token ".to_vec()),
        7 => Some(vec![b'A'; rng.random_range(1..6000)]),
        _ => Some(b"Basic dXNlcjpwYXNz".to_vec()),
    };
    if let Some(value) = authorization {
        head.extend_from_slice(b"Authorization: ");
        head.extend_from_slice(&value);
        head.extend_from_slice(b"\r\n");
    }
    if rng.random_bool(0.7) {
        head.extend_from_slice(b"Content-Type: ");
        head.extend_from_slice(CONTENT_TYPES[rng.random_range(0..CONTENT_TYPES.len())]);
        head.extend_from_slice(b"\r\n");
    }
    if rng.random_bool(0.1) {
        head.extend_from_slice(b"X-Forwarded-Host: \xc3\xa9vil\r\nX-Forwarded-Proto: gopher\r\n");
    }
    if rng.random_bool(0.05) {
        head.extend_from_slice(b"Accept-Encoding: gzip, \xff\r\nX-Odd: \x01\r\n");
    }
    if rng.random_bool(0.02) {
        // More headers than hyper accepts: it answers 431 before routing.
        for i in 0..150 {
            head.extend_from_slice(format!("X-Many-{i}: {i}\r\n").as_bytes());
        }
    }
    let body: Vec<u8> = match rng.random_range(0..10) {
        0 => Vec::new(),
        1 => br#"{"email": "alice@example.com", "message": "hi"}"#.to_vec(),
        2 => b"email=alice%40example.com&message=hi&message=%ff".to_vec(),
        3 => br#"{"email": 12, "message": null, "type": ["x"], "name": {"a": 1}}"#.to_vec(),
        4 => br#"{"message": {"token": "abc", "data": "x"}}"#.to_vec(),
        5 => (0..rng.random_range(1..2000))
            .map(|_| rng.random::<u8>())
            .collect(),
        // UTF-16LE JSON.
        6 => "{\"email\": \"é@x\"}"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect(),
        // Latin-1 form.
        7 => b"email=\xe9@x&message=caf\xe9".to_vec(),
        8 => "[".repeat(rng.random_range(1..5000)).into_bytes(),
        _ => vec![b'x'; rng.random_range(200_000..400_000)],
    };
    head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    head.extend_from_slice(&body);
    (head, method, path)
}

/// An answer as read off the wire.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

async fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<Answer> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        // The server may answer (and close) before reading a large body: ignore write errors.
        let _ = stream.write_all(bytes).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        Some(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s")?;
    parse(&raw)
}

/// Counts panics anywhere in this process while the fuzz runs (handlers' panics are caught
/// and answered 500, but a panic in a connection task would only drop that connection).
fn count_panics() -> Arc<AtomicU64> {
    static PANICS: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();
    PANICS
        .get_or_init(|| {
            let count = Arc::new(AtomicU64::new(0));
            let seen = count.clone();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                seen.fetch_add(1, Ordering::SeqCst);
                previous(info);
            }));
            count
        })
        .clone()
}

#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, u64>,
    /// Answers written by the HTTP library before any route ran (no body, no content type).
    library: BTreeMap<u16, u64>,
    /// Connections closed without an answer.
    dropped: u64,
    problems: Vec<String>,
}

async fn random_requests_never_crash_and_answer_json(db: Db) {
    let panics = count_panics();
    let panics_before = panics.load(Ordering::SeqCst);
    let db = TestDb::new(db).await;
    let app = TestApp::spawn(settings(&db)).await;
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0c_a1_1e_d0);
    eprintln!("fuzz seed {seed} (set FUZZ_SEED to replay)");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let addr = app.addr;
        let tally = tally.clone();
        let sent = sent.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(worker));
            while started.elapsed() < TIME_BOUND
                && sent.fetch_add(1, Ordering::SeqCst) < MAX_REQUESTS as u64
            {
                let (bytes, method, path) = request(&mut rng);
                let shown = format!("{method} {}", path.chars().take(120).collect::<String>());
                let answer = send(addr, &bytes).await;
                let mut t = tally.lock().expect("tally");
                let Some(answer) = answer else {
                    t.dropped += 1;
                    continue;
                };
                *t.by_status.entry(answer.status).or_default() += 1;
                let content_type = answer.header("content-type").unwrap_or("").to_string();
                if content_type.is_empty() && answer.body.is_empty() && answer.status >= 400 {
                    // hyper refused the request line or headers before routing.
                    *t.library.entry(answer.status).or_default() += 1;
                    if std::env::var("FUZZ_DEBUG").is_ok() && t.library.values().sum::<u64>() < 40 {
                        eprintln!(
                            "library {}: {:?}",
                            answer.status,
                            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                        );
                    }
                    continue;
                }
                if answer.status >= 500 && answer.status != 503 {
                    t.problems.push(format!("{shown}: {}", answer.status));
                }
                let non_json_page = answer.status < 400
                    && (path.contains("/metrics") || path.contains("/a/"))
                    && !content_type.starts_with("application/json");
                if non_json_page {
                    continue;
                }
                if !content_type.starts_with("application/json") {
                    t.problems.push(format!(
                        "{shown}: {} with content-type {content_type:?}",
                        answer.status
                    ));
                } else if method != "HEAD"
                    && serde_json::from_slice::<serde_json::Value>(&answer.body).is_err()
                {
                    t.problems
                        .push(format!("{shown}: {} body is not JSON", answer.status));
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = started.elapsed();
    let tally = Arc::into_inner(tally)
        .expect("sole owner")
        .into_inner()
        .expect("tally");
    let total: u64 = tally.by_status.values().sum::<u64>() + tally.dropped;
    eprintln!(
        "fuzz: {total} requests in {elapsed:?}; statuses {:?}; answered by the HTTP library \
         before routing {:?}; connections closed without an answer {}",
        tally.by_status, tally.library, tally.dropped
    );
    assert!(
        tally.problems.is_empty(),
        "{} problems, e.g. {:#?}",
        tally.problems.len(),
        &tally.problems[..tally.problems.len().min(20)]
    );
    assert_eq!(
        panics.load(Ordering::SeqCst) - panics_before,
        0,
        "nothing panicked"
    );
    assert!(total >= 300, "only {total} requests ran");
    let health = app.client.get(app.url("/healthz")).send().await;
    assert_eq!(
        health.expect("still serving").status().as_u16(),
        200,
        "still serving"
    );
    app.stop().await;
}
db_test!(random_requests_never_crash_and_answer_json);
