//! Test harness: a fresh database per test (SQLite file or PostgreSQL database), the real
//! router on a random loopback port, and a loopback fake for outbound webhooks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::any;
use oncall_relay::Application;
use oncall_relay::config::{
    BackendSettings, DbSettings, Driver, Secret, Settings, Tokens, WebhookSettings,
};
pub use oncall_relay::directory::User;
use oncall_relay::directory::{Directory, NewUser};
pub use oncall_relay::notify::NotificationRecord;
use oncall_relay::notify::{EventFilter, events};
use oncall_relay::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token every test app accepts.
pub const TOKEN: &str = "test-token-0123456789";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs `$name(Db)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! db_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::skip_postgres() {
                    return;
                }
                super::$name($crate::helpers::Db::Postgres).await
            }
        }
    };
}

fn pg_admin_url() -> String {
    std::env::var("RELAY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Host and port of a `postgres://` URL (5432 when it names none).
fn pg_host_port(url: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?.trim_matches(|c| c == '[' || c == ']');
    Some((host.to_string(), url.port().unwrap_or(5432)))
}

/// `host:port` of the PostgreSQL server of `RELAY_TEST_PG`.
pub fn pg_address() -> String {
    let (host, port) = pg_host_port(&pg_admin_url()).expect("RELAY_TEST_PG names a host");
    format!("{host}:{port}")
}

/// Whether PostgreSQL tests must be skipped: only outside CI, when no server answers at the
/// address of `RELAY_TEST_PG`. `scripts/test` leaves them out of the run then, so they count
/// as skipped; a direct run returns early from them with a note on stderr.
pub fn skip_postgres() -> bool {
    if std::env::var("RELAY_TEST_REQUIRE_PG").is_ok() || std::env::var("CI").is_ok() {
        return false;
    }
    let url = pg_admin_url();
    let Some((host, port)) = pg_host_port(&url) else {
        eprintln!(
            "RELAY_TEST_PG is not a postgres:// URL with a host: skipping this PostgreSQL test"
        );
        return true;
    };
    use std::net::ToSocketAddrs;
    let reachable = (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut addrs| {
            addrs.any(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
            })
        })
        .unwrap_or(false);
    if !reachable {
        eprintln!("PostgreSQL is not running on {host}:{port}: skipping this PostgreSQL test");
    }
    !reachable
}

/// A PostgreSQL database made for one test and dropped when it is dropped.
pub struct PgDatabase {
    pub name: String,
    /// Its URL: `RELAY_TEST_PG` with the database name replaced.
    pub url: String,
}

impl PgDatabase {
    /// Creates `{prefix}_{random}` on the server of `RELAY_TEST_PG`.
    pub async fn create(prefix: &str) -> PgDatabase {
        use sqlx::{Connection, Executor};
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let admin = pg_admin_url();
        let mut conn = sqlx::postgres::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL must be running for the PostgreSQL tests (scripts/test starts it)");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    /// Drops the database on a thread of its own, so that it works inside and outside a
    /// runtime and during a panic; `WITH (FORCE)` ends connections an app still holds. A
    /// database that cannot be dropped is only a warning: `scripts/test` sweeps leftovers.
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        let (admin, name) = (pg_admin_url(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let drop = async {
                    let mut conn = sqlx::postgres::PgConnection::connect(&admin).await?;
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await?;
                    conn.close().await
                };
                match tokio::time::timeout(Duration::from_secs(10), drop).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test database {} not dropped: {e}", self.name),
            Err(_) => eprintln!("warning: test database {} not dropped: panicked", self.name),
        }
    }
}

/// A fresh, empty database.
pub struct TestDb {
    pub kind: Db,
    pub settings: DbSettings,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    pub async fn new(kind: Db) -> TestDb {
        oncall_relay::install_crypto_provider();
        // Side connections of some tests use `sqlx::Any` before an app installs the drivers.
        sqlx::any::install_default_drivers();
        match kind {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("relay.db");
                let settings = DbSettings {
                    driver: Driver::Sqlite,
                    path: path.display().to_string(),
                    ..DbSettings::default()
                };
                TestDb {
                    kind,
                    settings,
                    _dir: Some(dir),
                    _pg: None,
                }
            }
            Db::Postgres => {
                let pg = PgDatabase::create("ort").await;
                let settings = DbSettings {
                    driver: Driver::Postgres,
                    url: Secret(pg.url.clone()),
                    ..DbSettings::default()
                };
                TestDb {
                    kind,
                    settings,
                    _dir: None,
                    _pg: Some(pg),
                }
            }
        }
    }

    /// A URL or path for `--db-url`/`--db-path` flags of the binary.
    pub fn cli_args(&self) -> Vec<String> {
        match self.kind {
            Db::Sqlite => vec![
                "--db-driver".into(),
                "sqlite".into(),
                "--db-path".into(),
                self.settings.path.clone(),
            ],
            Db::Postgres => vec!["--db-url".into(), self.settings.url.expose().to_string()],
        }
    }
}

/// Settings for a test app on `db`: random port, test token, quick polling.
pub fn settings(db: &TestDb) -> Settings {
    let mut s = Settings::default();
    s.app.port = oncall_relay::config::ListenAddr("127.0.0.1:0".into());
    s.app.auth_token = Tokens(vec![Secret(TOKEN.into())]);
    s.app.log_level = "warn".into();
    s.db = db.settings.clone();
    s.queue.poll_interval = Duration::from_millis(50);
    s.queue.retry_base = Duration::from_millis(100);
    s.queue.retry_max = Duration::from_millis(500);
    s.directory.refresh_interval = Duration::from_millis(200);
    s.app.metrics_interval = Duration::from_millis(100);
    s
}

/// Points delivery at a webhook backend named `hook`.
pub fn use_webhook(s: &mut Settings, url: &str) {
    s.plugin.backend = "hook".into();
    add_webhook(s, "hook", url);
}

/// Declares a webhook backend `name` posting to `url`.
pub fn add_webhook(s: &mut Settings, name: &str, url: &str) {
    s.plugin.backends.insert(
        name.into(),
        BackendSettings::Webhook(WebhookSettings {
            url: url.to_string(),
            method: "POST".into(),
            headers: Default::default(),
            timeout: Duration::from_secs(2),
            body: None,
            content_type: "application/json".into(),
            ..Default::default()
        }),
    );
}

/// A running app.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub directory: Directory,
    pub store: Store,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn(settings: Settings) -> TestApp {
        let app = Application::build(settings).await.expect("app builds");
        let addr = app.local_addr().expect("bound");
        let directory = app.directory();
        let store = app.store();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(async move {
            app.run().await.expect("app runs");
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            directory,
            store,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Stops gracefully and waits until everything is drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the raw token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("Authorization", TOKEN)
            .send()
            .await
            .expect("request")
    }

    /// POST a URL-encoded form body, exactly as given, with the raw token.
    pub async fn post_form(&self, path: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Authorization", TOKEN)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// POST a form the way python-requests encodes `data={...}`.
    pub async fn post_fields(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body = serde_urlencoded::to_string(fields).expect("encode");
        self.post_form(path, &body).await
    }

    pub async fn add_user(&self, email: &str, phone: Option<&str>) -> User {
        self.directory
            .add(NewUser {
                email: email.into(),
                phone_number: phone.map(str::to_string),
                ..NewUser::default()
            })
            .await
            .expect("user added")
    }

    pub async fn events(&self) -> Vec<NotificationRecord> {
        events::list(
            &self.store,
            &EventFilter {
                limit: 100_000,
                ..EventFilter::default()
            },
        )
        .await
        .expect("events")
    }

    /// Waits until every notification is final (delivered or failed).
    pub async fn wait_until_settled(&self, expected: usize) -> Vec<NotificationRecord> {
        wait_for(Duration::from_secs(20), || async {
            let ev = self.events().await;
            (ev.len() >= expected
                && ev
                    .iter()
                    .all(|e| matches!(e.status.as_str(), "delivered" | "failed" | "duplicate")))
            .then_some(ev)
        })
        .await
    }
}

impl Drop for TestApp {
    /// A test that ends without `stop` (or panics) still stops the app, before its database
    /// is dropped: locals drop in reverse order, and `TestDb` is made before the app.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` until it returns `Some`, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake {
            url: format!("http://{addr}/hook"),
            state,
        }
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
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// Sends raw bytes over TCP and returns the whole answer (status line, headers, body).
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code and JSON body of a response (panics when the body is not JSON).
pub async fn json_of(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} for {text}"
    );
    (status, value)
}

/// The real binary running `serve` on `db`, delivering to a webhook, as its own process.
pub struct RelayProcess {
    pub child: tokio::process::Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl RelayProcess {
    /// Starts `oncall-relay serve` with a 2 s lease and `extra_yaml` appended to its config,
    /// and waits until it listens.
    pub async fn spawn(db: &TestDb, webhook_url: &str, extra_yaml: &str) -> RelayProcess {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("relay.yml");
        let db_yaml = match db.kind {
            Db::Sqlite => format!("  driver: sqlite\n  path: '{}'\n", db.settings.path),
            Db::Postgres => format!(
                "  driver: postgres\n  url: '{}'\n",
                db.settings.url.expose()
            ),
        };
        std::fs::write(
            &config,
            format!(
                "app:\n  port: '127.0.0.1:0'\n  auth_token: '{TOKEN}'\n  log_level: info\ndb:\n{db_yaml}\
                 queue:\n  lease: 2s\n  poll_interval: 100ms\n\
                 plugin:\n  backend: hook\n  backends:\n    hook:\n      type: webhook\n      url: '{webhook_url}'\n      timeout: 1500ms\n\
                 {extra_yaml}"
            ),
        )
        .expect("config");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn relay");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("read") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "oncall-relay listening"
                {
                    return v["address"].as_str().expect("address").to_string();
                }
            }
            panic!("relay exited before listening");
        })
        .await
        .expect("relay starts");
        // Keep reading its log, so a full pipe never slows it down.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        RelayProcess {
            child,
            addr,
            _dir: dir,
        }
    }

    /// SIGKILL: no drain, no goodbye.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }
}

impl TestApp {
    /// Posts a make_call/send_sms form for `email` as OnCall does, and expects 200.
    pub async fn send_ok(&self, path: &str, email: &str, message: &str) {
        let resp = self
            .post_fields(path, &[("email", email), ("message", message)])
            .await;
        assert_eq!(resp.status().as_u16(), 200, "{path} for {email}");
    }

    /// Adds a user with a phone number and these backend contacts.
    pub async fn add_user_with_contacts(&self, email: &str, contacts: &[(&str, &str)]) -> User {
        self.directory
            .add(NewUser {
                email: email.into(),
                phone_number: Some("+4930123456".into()),
                contacts: contacts
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..NewUser::default()
            })
            .await
            .expect("user added")
    }
}

/// Log lines written while the returned guard lives on this thread, at `info` (the default).
pub fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}
