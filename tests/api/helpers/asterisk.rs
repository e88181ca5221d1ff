//! A fake Asterisk ARI on loopback: records the REST requests (originate, continue, variable)
//! and sends the events a test gives it down the event WebSocket of whoever is connected.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use oncall_relay::config::{Secret, SipSettings};

use super::{serve_loopback, wait_for};

/// Basic auth of `relay:ar1pass`, the credentials the fake accepts.
pub const ARI_AUTH: &str = "Basic cmVsYXk6YXIxcGFzcw==";

/// A `sip` backend on the Asterisk at `url` with the credentials [`ARI_AUTH`] stands for,
/// dialling `PJSIP/{{ phone }}@trunk` into the dialplan `oncall,oncall,1`.
pub fn sip_at(url: &str) -> SipSettings {
    SipSettings {
        url: url.to_string(),
        username: "relay".into(),
        password: Secret("ar1pass".into()),
        endpoint: "PJSIP/{{ phone }}@trunk".into(),
        context: "oncall".into(),
        extension: "oncall".into(),
        priority: 1,
        caller_id: None,
        ring_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(2),
        app: None,
        replies: false,
    }
}

/// One REST request the fake received: path and query pairs.
#[derive(Debug, Clone)]
pub struct AriRequest {
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl AriRequest {
    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<AriRequest>>>,
    events: broadcast::Sender<String>,
    /// The `app` of each event stream connection, in order.
    listeners: Arc<Mutex<Vec<String>>>,
}

/// The fake; `url` is what a `sip` backend's `url` takes.
pub struct FakeAsterisk {
    pub url: String,
    shared: Shared,
}

impl FakeAsterisk {
    /// A `sip` backend on this fake that originates into the Stasis app `oncall-relay`.
    pub fn backend(&self) -> SipSettings {
        SipSettings {
            app: Some("oncall-relay".into()),
            ..sip_at(&self.url)
        }
    }

    /// Starts the fake on a random loopback port.
    pub async fn start() -> FakeAsterisk {
        let shared = Shared {
            requests: Arc::default(),
            events: broadcast::channel(64).0,
            listeners: Arc::default(),
        };
        let app = Router::new()
            .route("/ari/events", get(events))
            .route("/ari/channels", post(originate))
            .route("/ari/channels/{id}/{action}", post(channel_action))
            .with_state(shared.clone());
        let addr = serve_loopback(app).await;
        FakeAsterisk {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// Waits until the relay listens to app `app`'s events.
    pub async fn wait_listening(&self, app: &str) {
        wait_for(Duration::from_secs(10), || async {
            let listening = self.shared.listeners.lock().expect("lock").clone();
            listening.iter().any(|a| a == app).then_some(())
        })
        .await
    }

    /// Sends `event` to every connected listener.
    pub fn send(&self, event: Value) {
        let _ = self.shared.events.send(event.to_string());
    }

    /// `StasisStart` of channel `id` with `args`.
    pub fn stasis_start(&self, id: &str, args: &[&str]) {
        self.send(json!({
            "type": "StasisStart", "application": "oncall-relay", "args": args,
            "channel": {"id": id, "name": "PJSIP/trunk-00000001", "state": "Up"},
        }));
    }

    /// `ChannelDtmfReceived`: `digit` pressed on channel `id`.
    pub fn dtmf(&self, id: &str, digit: &str) {
        self.send(json!({
            "type": "ChannelDtmfReceived", "digit": digit, "duration_ms": 120,
            "channel": {"id": id, "state": "Up"},
        }));
    }

    /// `ChannelDestroyed` of channel `id` with hang-up cause `cause`.
    pub fn destroyed(&self, id: &str, cause: i64) {
        self.send(json!({
            "type": "ChannelDestroyed", "cause": cause, "cause_txt": "test",
            "channel": {"id": id, "state": "Down"},
        }));
    }

    /// The REST requests so far, in order.
    pub fn requests(&self) -> Vec<AriRequest> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Waits for a request whose path ends with `suffix`; returns it.
    pub async fn wait_request(&self, suffix: &str) -> AriRequest {
        self.wait_nth_request(suffix, 0).await
    }

    /// Waits for the `n`th request (0 first) whose path ends with `suffix`; returns it.
    pub async fn wait_nth_request(&self, suffix: &str, n: usize) -> AriRequest {
        wait_for(Duration::from_secs(10), || async {
            self.requests()
                .into_iter()
                .filter(|r| r.path.ends_with(suffix))
                .nth(n)
        })
        .await
    }
}

fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(ARI_AUTH)
}

async fn events(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let app = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "app")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let receiver = shared.events.subscribe();
    ws.on_upgrade(move |socket| forward(socket, receiver, shared, app))
}

async fn forward(
    mut socket: WebSocket,
    mut receiver: broadcast::Receiver<String>,
    shared: Shared,
    app: String,
) {
    shared.listeners.lock().expect("lock").push(app);
    while let Ok(event) = receiver.recv().await {
        if socket.send(Message::Text(event.into())).await.is_err() {
            break;
        }
    }
}

async fn originate(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !authorised(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let query = query_pairs(query);
    let id = query
        .iter()
        .find(|(k, _)| k == "channelId")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "1700000000.1".into());
    shared.requests.lock().expect("lock").push(AriRequest {
        path: "/ari/channels".into(),
        query,
    });
    axum::Json(json!({"id": id, "name": "PJSIP/trunk-00000001", "state": "Down"})).into_response()
}

async fn channel_action(
    State(shared): State<Shared>,
    Path((id, action)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> StatusCode {
    if !authorised(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    shared.requests.lock().expect("lock").push(AriRequest {
        path: format!("/ari/channels/{id}/{action}"),
        query: query_pairs(query),
    });
    StatusCode::NO_CONTENT
}
