//! Requests from anyone: odd `Authorization` values and methods never crash or bloat the relay.

use reqwest::header::HeaderValue;

use crate::db_test;
use crate::helpers::*;

async fn non_ascii_authorization_is_an_invalid_token(db: Db) {
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
}
db_test!(non_ascii_authorization_is_an_invalid_token);
