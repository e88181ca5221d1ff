//! Requests from anyone: odd `Authorization` values and methods never crash or bloat the relay.

use reqwest::header::HeaderValue;

use crate::db_test;
use crate::helpers::*;

/// Everything logged at any level in this test process (each test runs in its own process
/// under nextest; elsewhere another test may have installed its subscriber first).
fn capture_all_logs() -> Option<LogSink> {
    let captured = LogSink::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .try_init()
        .ok()
        .map(|_| captured)
}

async fn non_ascii_authorization_is_an_invalid_token(db: Db) {
    let logs = capture_all_logs();
    let db = TestDb::new(db).await;
    let mut s = settings(&db);
    s.app.admin_token = oncall_relay::config::Tokens(vec![oncall_relay::config::Secret(
        "admin-token-0123456789".into(),
    )]);
    let app = TestApp::spawn(s).await;
    let values: Vec<HeaderValue> = vec![
        HeaderValue::from_bytes("Beaé".as_bytes()).expect("value"),
        HeaderValue::from_bytes("Bearé x".as_bytes()).expect("value"),
        HeaderValue::from_bytes("Tokeñ".as_bytes()).expect("value"),
        HeaderValue::from_bytes("€€€€€€€€".as_bytes()).expect("value"),
        HeaderValue::from_bytes(b"Bear\xff\xfe invalid utf-8").expect("value"),
        HeaderValue::from_static("Bearer presented-secret-value"),
    ];
    let routes = [
        ("GET", "/api/v1/info/"),
        ("GET", "/api/v1/users/"),
        ("POST", "/api/v1/make_call/"),
        ("POST", "/api/v1/integrations/"),
        ("POST", "/mobile_app/v1/fcm_relay/"),
        ("GET", "/api/admin/v1/users"),
        ("GET", "/api/admin/v1/events"),
    ];
    for (method, path) in routes {
        for value in &values {
            let resp = app
                .client
                .request(method.parse().expect("method"), app.url(path))
                .header("Authorization", value.clone())
                .send()
                .await
                .expect("an answer, not a dropped connection");
            assert_eq!(resp.status().as_u16(), 403, "{method} {path} {value:?}");
            let (_, body) = json_of(resp).await;
            assert_eq!(body["detail"], "Invalid token.", "{method} {path}");
        }
    }
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
    app.stop().await;
    if let Some(logs) = logs {
        let text = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).into_owned();
        assert!(!text.is_empty(), "the capture works");
        for needle in [
            "€€",
            "Beaé",
            "Bearé",
            "Tokeñ",
            "invalid utf-8",
            "presented-secret",
        ] {
            assert!(!text.contains(needle), "{needle} was logged:\n{text}");
        }
    }
}
db_test!(non_ascii_authorization_is_an_invalid_token);

async fn readiness_probes_share_one_query_per_second(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let ready = || async { app.plain_get_status("/readyz").await };
    assert_eq!(ready().await, 200);
    // With the pool closed, a probe that queried would fail: the next second's probes reuse
    // the last success instead of each taking a connection.
    app.store.close().await;
    assert_eq!(ready().await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(ready().await, 503);
    app.stop().await;
}
db_test!(readiness_probes_share_one_query_per_second);
