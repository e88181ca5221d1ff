//! E1 `api/v1/info/`, authentication and the HTTP rules every endpoint follows.

use crate::db_test;
use crate::helpers::*;

async fn info_answers_with_and_without_slash(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    for path in ["/api/v1/info/", "/api/v1/info"] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 200, "{path}");
        let url = body["url"].as_str().expect("url is a string");
        assert_eq!(url, format!("http://{}/", app.addr));
        assert!(url.len() <= 200);
    }
    app.stop().await;
}
db_test!(info_answers_with_and_without_slash);

async fn bad_or_missing_token_is_403_invalid_token(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    for token in [Some("wrong"), Some(""), None, Some("Bearer wrong")] {
        let mut req = app.client.get(app.url("/api/v1/info/"));
        if let Some(t) = token {
            req = req.header("Authorization", t);
        }
        let (status, body) = json_of(req.send().await.expect("send")).await;
        assert_eq!(status, 403, "token {token:?}");
        assert_eq!(body, serde_json::json!({"detail": "Invalid token."}));
    }
    for path in ["/api/v1/users", "/api/v1/make_call", "/api/v1/send_sms"] {
        let method = if path.ends_with("users") {
            "GET"
        } else {
            "POST"
        };
        assert_eq!(
            status_of(
                app.client
                    .request(method.parse().expect("method"), app.url(path))
                    .header("Authorization", "nope")
            )
            .await,
            403,
            "{path}"
        );
    }
    app.stop().await;
}
db_test!(bad_or_missing_token_is_403_invalid_token);

async fn raw_uppercase_authorization_header_and_bearer_are_accepted(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let answer = raw_http(
        app.addr,
        &format!("GET /api/v1/info/ HTTP/1.1\r\nHost: relay\r\nAUTHORIZATION: {TOKEN}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"url":"http://relay/"}"#), "{answer}");
    assert_eq!(
        status_of(
            app.client
                .get(app.url("/api/v1/info"))
                .header("Authorization", format!("Bearer {TOKEN}"))
        )
        .await,
        200
    );
    app.stop().await;
}
db_test!(raw_uppercase_authorization_header_and_bearer_are_accepted);

async fn path_prefix_and_hostname_shape_the_public_url(db: TestDb) {
    let mut s = settings(&db);
    s.app.path_prefix = "/oncall".into();
    let app = TestApp::spawn(s).await;
    let (status, body) = app.get_json("/oncall/api/v1/info/").await;
    assert_eq!(status, 200);
    assert_eq!(body["url"], format!("http://{}/oncall/", app.addr));
    // Engines before v1.0.12 dropped the prefix: the root keeps working.
    let (status, body) = app.get_json("/api/v1/info").await;
    assert_eq!(status, 200);
    assert_eq!(body["url"], format!("http://{}/", app.addr));
    app.stop().await;

    let mut s = settings(&db);
    s.app.hostname = "https://relay.example.com/oncall".into();
    let app = TestApp::spawn(s).await;
    let (_, body) = app.get_json("/api/v1/info/").await;
    assert_eq!(body["url"], "https://relay.example.com/oncall/");
    app.stop().await;
}
db_test!(path_prefix_and_hostname_shape_the_public_url);

async fn errors_are_json_and_nothing_redirects(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let (status, body) = app.get_json("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert!(body["detail"].is_string());
    let (status, _) = app.get_json("/").await;
    assert_eq!(status, 404);
    // Wrong method on a real route.
    let (status, body) = app.get_json("/api/v1/make_call/").await;
    assert_eq!(status, 405, "{body}");
    let (status, _) = json_of(app.post_form("/api/v1/info/", "").await).await;
    assert_eq!(status, 405);
    // Trailing slashes are trimmed in place: never a 3xx.
    for path in ["/api/v1/info/", "/api/v1/users/", "/healthz/"] {
        let resp = app.get(path).await;
        assert!(!resp.status().is_redirection(), "{path} redirected");
    }
    app.stop().await;
}
db_test!(errors_are_json_and_nothing_redirects);

/// The links OnCall's UI builds from `info.url`.
const ONCALL_LINKS: [&str; 4] = [
    "/a/grafana-oncall-app/users?p=1&id=U123",
    "/a/grafana-irm-app/users?p=1&id=U123",
    "/a/grafana-oncall-app/?page=users&p=1&id=U123",
    "/a/grafana-oncall-app/integrations/X1",
];

async fn oncall_ui_links_get_a_page_not_a_404(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    for path in ONCALL_LINKS {
        // The console's sign-in, coming back to the link afterwards.
        let resp = app.client.get(app.url(path)).send().await.expect("send");
        assert_eq!(resp.status().as_u16(), 303, "{path}");
        let location = resp.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert!(
            location.starts_with("/console/signin?next=%2Fa%2Fgrafana-"),
            "{location}"
        );
        let resp = app
            .client
            .get(app.url(&location))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 200, "{location}");
        assert!(resp.text().await.expect("text").contains("Sign in"));
    }
    app.stop().await;

    let mut s = settings(&db);
    s.console.enabled = false;
    let app = TestApp::spawn(s).await;
    for path in ONCALL_LINKS {
        let resp = app.client.get(app.url(path)).send().await.expect("send");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let text = resp.text().await.expect("text");
        assert!(text.contains("oncall-relay users"), "{path}");
    }
    assert_eq!(status_of(app.client.get(app.url("/healthz"))).await, 200);
    assert_eq!(status_of(app.client.get(app.url("/readyz"))).await, 200);
    app.stop().await;
}
db_test!(oncall_ui_links_get_a_page_not_a_404);

async fn allow_any_token_accepts_anything_only_without_configured_tokens(db: TestDb) {
    let mut s = settings(&db);
    s.app.auth_token = oncall_relay::config::Tokens(vec![]);
    s.app.allow_any_token = true;
    let app = TestApp::spawn(s).await;
    assert_eq!(
        status_of(
            app.client
                .get(app.url("/api/v1/info/"))
                .header("Authorization", "whatever")
        )
        .await,
        200
    );
    app.stop().await;

    let mut s = settings(&db);
    s.app.auth_token = oncall_relay::config::Tokens(vec![]);
    let err = oncall_relay::Application::build(s)
        .await
        .err()
        .expect("refuses");
    assert!(matches!(err, oncall_relay::StartupError::NoToken));
}
db_test!(allow_any_token_accepts_anything_only_without_configured_tokens);
