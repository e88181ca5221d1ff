//! Test harness: a fresh database per test (SQLite file or PostgreSQL database), the real
//! router on a random loopback port, and the fakes and processes around it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

mod asterisk;
mod browser;
mod fake;
mod pg;
mod process;

pub use asterisk::*;
pub use browser::*;
pub use fake::*;
pub use pg::*;
pub use process::*;

/// The token every test app accepts.
pub const TOKEN: &str = "test-token-0123456789";

/// The content type of OnCall's form posts.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// A make_call form for Alice saying `message`, with the token, to the relay at `base`: for
/// callers that send from many tasks at once.
pub fn make_call_request(
    client: &reqwest::Client,
    base: &str,
    message: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/api/v1/make_call"))
        .header("Authorization", TOKEN)
        .header("Content-Type", FORM)
        .body(format!("email=alice%40example.com&message={message}"))
}

/// Calls Alice `count` times at once, spread over `apps` in turn, the `i`th call saying
/// `message(i)`; asserts every call was answered 200.
pub async fn call_alice_at_once(apps: &[&TestApp], count: usize, message: fn(usize) -> String) {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let app = apps[i % apps.len()];
            let request = make_call_request(&app.client, &app.base, &message(i));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for task in tasks {
        let status = task.await.expect("join").expect("send");
        assert_eq!(status, 200);
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs `$name` once on SQLite and once on PostgreSQL. It takes a fresh [`TestDb`], or the
/// [`Db`] kind when it makes its database itself.
#[macro_export]
macro_rules! db_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::helpers::run_on($crate::helpers::Db::Sqlite, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::skip_postgres() {
                    return;
                }
                $crate::helpers::run_on($crate::helpers::Db::Postgres, super::$name).await
            }
        }
    };
}

/// What a test run by `db_test!` takes: the database kind, or a fresh database of it.
pub trait OnDb: Sized {
    /// What the test gets on a `kind` database.
    fn make(kind: Db) -> impl std::future::Future<Output = Self>;
}

impl OnDb for Db {
    async fn make(kind: Db) -> Db {
        kind
    }
}

impl OnDb for TestDb {
    async fn make(kind: Db) -> TestDb {
        TestDb::new(kind).await
    }
}

/// Runs `test` on a `kind` database; the database outlives everything the test made.
pub async fn run_on<T: OnDb, F: std::future::Future<Output = ()>>(kind: Db, test: fn(T) -> F) {
    test(T::make(kind).await).await
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

/// The error of attempt `i` of `e`; empty when it has none.
pub fn attempt_error(e: &NotificationRecord, i: usize) -> &str {
    e.attempt_log[i].error.as_deref().unwrap_or_default()
}

/// Each attempt's backend and outcome, in order.
pub fn outcomes(e: &NotificationRecord) -> Vec<(&str, &str)> {
    e.attempt_log
        .iter()
        .map(|a| (a.backend.as_str(), a.outcome.as_str()))
        .collect()
}

/// The notification in `events` that `matches`, which must be there.
pub fn event_where(
    events: &[NotificationRecord],
    matches: impl Fn(&NotificationRecord) -> bool,
) -> &NotificationRecord {
    events.iter().find(|e| matches(e)).expect("event")
}

/// Asserts `e` was retried once, then delivered on its second attempt.
pub fn assert_delivered_on_the_second_attempt(e: &NotificationRecord) {
    assert_eq!(e.status, "delivered", "{e:?}");
    assert_eq!(e.attempts, 2);
    assert_eq!(e.attempt_log[0].outcome, "retry");
}

/// Makes the queue's own retry come after about 100 ms, so a test can tell a longer wait that a
/// provider asked for.
pub fn quick_retries(s: &mut Settings) {
    s.queue.retry_base = Duration::from_millis(100);
    s.queue.retry_max = Duration::from_millis(500);
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

/// The settings of `db`, delivering to a webhook backend named `hook` at `url`.
pub fn webhook_settings(db: &TestDb, url: &str) -> Settings {
    let mut s = settings(db);
    use_webhook(&mut s, url);
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

    /// Spawns an app on `settings` with Alice (+4930123456) as a user.
    pub async fn spawn_with_alice(settings: Settings) -> TestApp {
        let app = TestApp::spawn(settings).await;
        app.add_user("alice@example.com", Some("+4930123456")).await;
        app
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

    /// A GET without a token (heartbeat links, `/metrics`, probes).
    pub async fn plain_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// The status of a GET without a token.
    pub async fn plain_get_status(&self, path: &str) -> u16 {
        self.plain_get(path).await.status().as_u16()
    }

    /// The body of a GET without a token (`/metrics`).
    pub async fn plain_get_text(&self, path: &str) -> String {
        self.plain_get(path).await.text().await.expect("text")
    }

    /// A GET with `token` as a bearer token (the admin API, `/metrics`).
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).bearer_auth(token);
        request.send().await.expect("request")
    }

    /// Status and JSON body of a GET with `token` as a bearer token.
    pub async fn get_json_as(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        json_of(self.get_as(token, path).await).await
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

    /// POST `body` exactly as given, as `content_type`, with the raw token.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Authorization", TOKEN)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Status and JSON body of a GET with the raw token.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        json_of(self.get(path).await).await
    }

    /// POST `body` as JSON with the raw token.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Authorization", TOKEN)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POST a URL-encoded form body, exactly as given, with the raw token.
    pub async fn post_form(&self, path: &str, body: &str) -> reqwest::Response {
        self.post_raw(path, FORM, body.to_string()).await
    }

    /// POST a form the way python-requests encodes `data={...}`.
    pub async fn post_fields(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body = serde_urlencoded::to_string(fields).expect("encode");
        self.post_form(path, &body).await
    }

    /// Status and JSON body of a form post with `fields`.
    pub async fn post_fields_json(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        json_of(self.post_fields(path, fields).await).await
    }

    /// Status and JSON body of a make_call/send_sms form for `email`, whatever the answer.
    pub async fn send(&self, path: &str, email: &str, message: &str) -> (u16, serde_json::Value) {
        self.post_fields_json(path, &[("email", email), ("message", message)])
            .await
    }

    pub async fn add_user(&self, email: &str, phone: Option<&str>) -> User {
        self.add(NewUser {
            email: email.into(),
            phone_number: phone.map(str::to_string),
            ..NewUser::default()
        })
        .await
    }

    /// Adds `user` to the directory, which must take it.
    pub async fn add(&self, user: NewUser) -> User {
        self.directory.add(user).await.expect("user added")
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

    /// Every notification accepted (for delivery or as a duplicate): refused requests left out.
    pub async fn accepted_events(&self) -> Vec<NotificationRecord> {
        let mut events = self.events().await;
        events.retain(|e| e.status != "refused");
        events
    }

    /// Waits until every notification is final (delivered or failed).
    pub async fn wait_until_settled(&self, expected: usize) -> Vec<NotificationRecord> {
        wait_for(Duration::from_secs(20), || async {
            let ev = self.events().await;
            (ev.len() >= expected
                && ev.iter().all(|e| {
                    matches!(
                        e.status.as_str(),
                        "delivered" | "failed" | "duplicate" | "refused"
                    )
                }))
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

/// Sends raw bytes over TCP and returns the whole answer (status line, headers, body).
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The text of a JSON string; empty for anything else.
pub fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
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

impl TestApp {
    /// Posts a make_call/send_sms form for `email` as OnCall does, and expects 200.
    pub async fn send_ok(&self, path: &str, email: &str, message: &str) {
        let resp = self
            .post_fields(path, &[("email", email), ("message", message)])
            .await;
        assert_eq!(resp.status().as_u16(), 200, "{path} for {email}");
    }

    /// The phone number the directory holds for the user `id`.
    pub async fn phone_of(&self, id: &str) -> Option<String> {
        self.directory.get(id).await.expect("user").phone_number
    }

    /// Calls Alice with `message` as OnCall does, and expects 200.
    pub async fn call_alice(&self, message: &str) {
        self.send_ok("/api/v1/make_call", "alice@example.com", message)
            .await;
    }

    /// Sends Alice `message` as an SMS as OnCall does, and expects 200.
    pub async fn sms_alice(&self, message: &str) {
        self.send_ok("/api/v1/send_sms", "alice@example.com", message)
            .await;
    }

    /// Adds a user with a phone number and these backend contacts.
    pub async fn add_user_with_contacts(&self, email: &str, contacts: &[(&str, &str)]) -> User {
        self.add(NewUser {
            email: email.into(),
            phone_number: Some("+4930123456".into()),
            contacts: contact_map(contacts),
            ..NewUser::default()
        })
        .await
    }
}

/// Contacts as a user holds them.
pub fn contact_map(contacts: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    contacts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Adds Alice (+4930123456) to `db` from outside any app, as another replica would.
pub async fn add_alice_to(db: &TestDb) {
    add_user_to(db, "alice@example.com", "+4930123456").await;
}

/// Adds a user with `phone` to `db` from outside any app, as another replica or the CLI would.
pub async fn add_user_to(db: &TestDb, email: &str, phone: &str) {
    let store = Store::connect(&db.settings).await.expect("connect");
    let directory = Directory::load(store).await.expect("directory");
    directory
        .add(NewUser {
            email: email.into(),
            phone_number: Some(phone.into()),
            ..NewUser::default()
        })
        .await
        .expect("add");
}

/// Spawns an app on `s` with Alice (+4930123456), sends her `message` on `path` (make_call
/// or send_sms) and waits until it is final.
pub async fn deliver_to_alice(
    s: Settings,
    path: &str,
    message: &str,
) -> (TestApp, Vec<NotificationRecord>) {
    let app = TestApp::spawn_with_alice(s).await;
    app.send_ok(path, "alice@example.com", message).await;
    let events = app.wait_until_settled(1).await;
    (app, events)
}

/// A log writer that keeps everything written to it.
#[derive(Clone, Default)]
pub struct LogSink(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines written while the returned guard lives on this thread, at `info` (the default).
pub fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    let sink = LogSink::default();
    let buf = sink.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

/// The status of the answer to `req`.
pub async fn status_of(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("send").status().as_u16()
}

/// A `twilio` backend's settings with Twilio's API at `api_base`, signing with `auth_token`.
pub fn twilio_at(api_base: &str, auth_token: &str) -> oncall_relay::config::TwilioSettings {
    oncall_relay::config::TwilioSettings {
        account_sid: "AC0123456789abcdef".into(),
        auth_token: Secret(auth_token.into()),
        from: "+15550001111".into(),
        api_base: api_base.trim_end_matches("/hook").to_string(),
        max_length: 1600,
        split: true,
        voice: None,
        language: None,
        repeat: 2,
        timeout: Duration::from_secs(2),
        max_segments: 10,
        replies: false,
    }
}
