//! A loopback HTTP server that records every request and answers as scripted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request arrived.
    pub at: Instant,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// How the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// A status and a JSON body (`content-type: application/json`).
    Json(u16, &'static str),
    /// A status with a `Retry-After` header and a JSON body.
    RetryAfter(u16, &'static str, &'static str),
    /// Never answers (the client times out).
    Hang,
}

#[derive(Default)]
struct FakeState {
    requests: Vec<Recorded>,
    script: Vec<Reply>,
    default: Option<Reply>,
}

/// A loopback HTTP server that records every request and answers as scripted.
#[derive(Clone)]
pub struct Fake {
    pub url: String,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    /// Answers 200 unless told otherwise.
    pub async fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState {
            default: Some(Reply::Status(200)),
            ..FakeState::default()
        }));
        let app = Router::new()
            .fallback(any(record))
            .with_state(state.clone());
        let addr = serve_loopback(app).await;
        Fake {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    /// Answers every request with `reply`.
    pub async fn answering(reply: Reply) -> Fake {
        let fake = Fake::start().await;
        fake.script(&[], reply);
        fake
    }

    /// The next answers, in order; after them, `default`.
    pub fn script(&self, replies: &[Reply], default: Reply) {
        let mut s = self.state.lock().expect("lock");
        s.script = replies.iter().rev().copied().collect();
        s.default = Some(default);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("lock").requests.clone()
    }

    /// The JSON body of the first request, once one has come (within 10 s).
    pub async fn first_json(&self) -> serde_json::Value {
        super::wait_for(Duration::from_secs(10), || async {
            self.requests().first().map(|r| r.json())
        })
        .await
    }

    /// Asserts exactly two requests arrived, the second no sooner than the 2 s that `who`
    /// asked for (with 50 ms of clock slack).
    pub fn assert_second_request_waited_2s(&self, who: &str) {
        let requests = self.requests();
        assert_eq!(requests.len(), 2);
        let waited = requests[1].at - requests[0].at;
        assert!(
            waited >= std::time::Duration::from_millis(1950),
            "retried after {waited:?}, {who} asked for 2 s"
        );
    }
}

async fn record(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let reply = {
        let mut s = state.lock().expect("lock");
        s.requests.push(Recorded {
            method,
            uri,
            headers,
            body,
            at: Instant::now(),
        });
        s.script.pop().or(s.default).unwrap_or(Reply::Status(200))
    };
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::OK)
            .into_response(),
        Reply::Json(code, body) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Reply::RetryAfter(code, seconds, body) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            [
                (axum::http::header::CONTENT_TYPE, "application/json"),
                (axum::http::header::RETRY_AFTER, seconds),
            ],
            body,
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// Serves `app` on a random loopback port until the test ends; its address.
pub async fn serve_loopback(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
