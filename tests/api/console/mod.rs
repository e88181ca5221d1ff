//! The web console: HTTP-level checks of sign-in, sessions and form tokens here and in
//! `http.rs`, and the same flows in a real headless Chromium in `browser.rs`.

mod browser;
mod http;

use std::collections::BTreeMap;

use oncall_relay::config::{Secret, Settings, Tokens};

use crate::helpers::*;

pub(super) const ADMIN_TOKEN: &str = "admin-secret-0123";

/// Settings with the admin token set and every SMS or call going to `gateway` (a fake SMS
/// gateway: a webhook backend).
pub(super) fn console_settings(db: &TestDb, gateway: &Fake) -> Settings {
    let mut s = webhook_settings(db, &gateway.url);
    s.app.admin_token = Tokens(vec![Secret(ADMIN_TOKEN.into())]);
    s
}

/// The six-digit code in the last message the gateway received.
pub(super) async fn code_sent(gateway: &Fake) -> String {
    wait_for(std::time::Duration::from_secs(20), || async {
        let last = gateway.requests().last()?.json();
        let message = last["message"].as_str()?.to_string();
        let digits: String = message.chars().filter(char::is_ascii_digit).collect();
        (digits.len() >= 6).then(|| digits[digits.len() - 6..].to_string())
    })
    .await
}

/// A console app with Alice in its directory, every code going to `gateway`.
pub(super) struct Console {
    pub gateway: Fake,
    pub app: TestApp,
    pub alice: User,
}

impl Console {
    /// Starts the app on [`console_settings`], changed by `change`.
    pub async fn start(db: &TestDb, change: impl FnOnce(&mut Settings)) -> Console {
        let gateway = Fake::start().await;
        let mut s = console_settings(db, &gateway);
        change(&mut s);
        let app = TestApp::spawn_with_alice(s).await;
        let alice = app.directory.get("alice@example.com").await.expect("alice");
        Console {
            gateway,
            app,
            alice,
        }
    }

    /// Stops the app gracefully.
    pub async fn stop(self) {
        self.app.stop().await;
    }

    /// A visitor signed in with the admin token.
    pub async fn admin(&self) -> Visitor<'_> {
        let mut admin = Visitor::new(&self.app);
        admin.sign_in_admin().await;
        admin
    }
}

/// A visitor without a browser: keeps the cookies it is given and the last form token it read.
pub(super) struct Visitor<'a> {
    pub app: &'a TestApp,
    pub cookies: BTreeMap<String, String>,
    /// The form token of the last page read with [`Visitor::open_form`].
    pub csrf: String,
}

impl<'a> Visitor<'a> {
    pub fn new(app: &'a TestApp) -> Visitor<'a> {
        Visitor {
            app,
            cookies: BTreeMap::new(),
            csrf: String::new(),
        }
    }

    /// GETs the page at `path` and keeps its form token for [`Visitor::submit`].
    pub async fn open_form(&mut self, path: &str) -> String {
        let (_, _, page) = self.get(path).await;
        self.csrf = form_token(&page);
        self.csrf.clone()
    }

    /// POSTs `fields` to `path` with the kept form token first.
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let csrf = self.csrf.clone();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    /// Asks for a sign-in code for `email` from the sign-in form: the post's status, where it
    /// sent the browser, and the page there.
    pub async fn ask_for_code(&mut self, email: &str) -> (u16, String, String) {
        self.open_form("/console/signin").await;
        let (status, location, _) = self.submit("/console/signin", &[("email", email)]).await;
        let (_, _, page) = self.get(&location).await;
        (status, location, page)
    }

    /// Signs in as `email` with `code`; the status and the Location.
    pub async fn enter_code(&mut self, email: &str, code: &str) -> (u16, String) {
        let (status, location, _) = self
            .submit("/console/signin/code", &[("email", email), ("code", code)])
            .await;
        (status, location)
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// GET `path` with extra `headers`; answers the status, the Location and the body.
    pub async fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut request = self
            .app
            .client
            .get(self.app.url(path))
            .header("cookie", self.cookie_header());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.answer(request.send().await.expect("GET")).await
    }

    pub async fn get(&mut self, path: &str) -> (u16, String, String) {
        self.get_with(path, &[]).await
    }

    /// POST a form to `path`.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let response = self
            .app
            .client
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).expect("form"))
            .send()
            .await
            .expect("POST");
        self.answer(response).await
    }

    async fn answer(&mut self, response: reqwest::Response) -> (u16, String, String) {
        self.keep(&response);
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, location, response.text().await.expect("body"))
    }

    /// Signs in with the admin token.
    pub async fn sign_in_admin(&mut self) {
        self.open_form("/console/signin").await;
        let (status, location, _) = self
            .submit("/console/signin", &[("token", ADMIN_TOKEN)])
            .await;
        assert_eq!((status, location.as_str()), (303, "/console"));
    }
}

/// The form token in a page.
pub(super) fn form_token(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a token") + marker.len();
    let rest = &page[start..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}
