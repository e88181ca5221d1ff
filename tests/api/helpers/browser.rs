//! A headless Chromium driven over the WebDriver protocol: `chromedriver` on a random loopback
//! port, spoken to with reqwest (a handful of commands need no client crate).

use std::time::Duration;

use serde_json::{Value, json};

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether browser tests are left out: no `chromedriver` here, and not in CI (where `.ci/run`
/// installs it and a missing one is a failure).
pub fn skip_browser() -> bool {
    if std::env::var("RELAY_TEST_REQUIRE_BROWSER").is_ok() || std::env::var("CI").is_ok() {
        return false;
    }
    let found = chromedriver().is_some();
    if !found {
        eprintln!(
            "chromedriver not found: skipping this browser test (apt-get install chromium chromium-driver)"
        );
    }
    !found
}

fn chromedriver() -> Option<std::path::PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = tokio::process::Command::new(chromedriver().expect("chromedriver installed"))
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        super::wait_for(Duration::from_secs(20), || {
            let http = http.clone();
            let url = format!("{root}/status");
            async move {
                let ready = http
                    .get(url)
                    .send()
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()?;
                (ready["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        // On a loaded machine pages come slowly: look for elements for a while before failing.
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "timeouts": {"implicit": 15000, "pageLoad": 60000, "script": 30000},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1000,1000", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let answer: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session JSON");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"));
        Browser {
            http,
            session: format!("{root}/session/{id}"),
            _driver: driver,
            _profile: profile,
        }
    }

    /// WebDriver's whole answer to `request`.
    async fn answer(request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("webdriver request");
        response.json().await.expect("webdriver JSON")
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        match self.try_command(method, path, body).await {
            Ok(value) => value,
            Err(error) => panic!("webdriver {path}: {error}"),
        }
    }

    /// A WebDriver command; `Err` with WebDriver's error (a stale element while the next page
    /// loads, say).
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, Value> {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let answer = Browser::answer(request).await;
        if answer["value"]["error"].is_string() {
            return Err(answer["value"].clone());
        }
        Ok(answer["value"].clone())
    }

    /// Waits until the address shown is `url` (a click does not wait for the page it leads to).
    pub async fn wait_url(&self, url: &str) {
        for _ in 0..150 {
            if self.url().await == url {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.url().await, url, "the page never came");
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// The address shown.
    pub async fn url(&self) -> String {
        let v = self
            .command(reqwest::Method::GET, "/url", Value::Null)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        let body = self.find("body").await;
        // The body may go stale under us while the next page loads: no text yet then.
        self.try_command(
            reqwest::Method::GET,
            &format!("/element/{body}/text"),
            Value::Null,
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    /// Waits until the page's text contains `needle` (a page that is still loading, or a form
    /// whose answer has not arrived, is looked at again).
    pub async fn wait_text(&self, needle: &str) {
        for _ in 0..150 {
            if self.text().await.contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no `{needle}` at {}: {}",
            self.url().await,
            self.text().await
        );
    }

    /// The element `css` selects (the first one).
    pub async fn find(&self, css: &str) -> String {
        let query = json!({"using": "css selector", "value": css});
        let request = self.http.post(format!("{}/element", self.session));
        let answer = Browser::answer(request.json(&query)).await;
        match answer["value"][ELEMENT].as_str() {
            Some(id) => id.to_string(),
            None => {
                let source = self
                    .command(reqwest::Method::GET, "/source", Value::Null)
                    .await;
                panic!(
                    "no element {css} at {}: {answer} {source}",
                    self.url().await
                )
            }
        }
    }

    /// POSTs `body` to the element `el`'s endpoint `action` (clear, value, click).
    async fn element(&self, el: &str, action: &str, body: Value) {
        let path = format!("/element/{el}/{action}");
        self.command(reqwest::Method::POST, &path, body).await;
    }

    /// Replaces the text of the field `css` selects with `text`, as typed.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.element(&el, "clear", json!({})).await;
        self.element(&el, "value", json!({"text": text})).await;
    }

    /// Clicks what `css` selects (a submit button waits for the next page).
    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.element(&el, "click", json!({})).await;
    }

    /// Renders pages as for a visitor who asked for a dark theme.
    pub async fn prefer_dark(&self) {
        let media = json!({"cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]}});
        self.command(reqwest::Method::POST, "/goog/cdp/execute", media)
            .await;
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let v = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("PNG base64");
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Ends the session (chromedriver goes with the value).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
