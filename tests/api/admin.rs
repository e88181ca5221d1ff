//! The admin API: its own token, users and devices CRUD, events paging, the OpenAPI document.

use serde_json::json;

use crate::db_test;
use crate::helpers::*;

const ADMIN: &str = "admin-token-987";

fn with_admin(db: &TestDb) -> oncall_relay::config::Settings {
    let mut s = settings(db);
    s.app.admin_token =
        oncall_relay::config::Tokens(vec![oncall_relay::config::Secret(ADMIN.into())]);
    s.queue.deliver = false;
    s
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = app
        .client
        .request(method.parse().expect("method"), app.url(path));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    (
        status,
        if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).expect("json")
        },
    )
}

/// The admin API, called with the admin token at paths below `/api/admin/v1`.
trait AdminApi {
    /// Status and JSON body (null when empty) of a `method` request to `path`.
    async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value);

    async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        self.admin("GET", path, None).await
    }

    async fn admin_delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.admin("DELETE", path, None).await
    }

    async fn admin_post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.admin("POST", path, Some(body)).await
    }

    async fn admin_put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.admin("PUT", path, Some(body)).await
    }

    async fn admin_patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.admin("PATCH", path, Some(body)).await
    }
}

impl AdminApi for TestApp {
    async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let path = format!("/api/admin/v1{path}");
        call(self, method, &path, Some(ADMIN), body).await
    }
}

async fn admin_api_needs_its_own_token(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let (status, body) = call(&app, "GET", "/api/admin/v1/users", Some(TOKEN), None).await;
    assert_eq!(status, 404, "off without app.admin_token: {body}");
    app.stop().await;

    let app = TestApp::spawn(with_admin(&db)).await;
    for token in [None, Some(TOKEN), Some("wrong")] {
        let (status, body) = call(&app, "GET", "/api/admin/v1/users", token, None).await;
        assert_eq!(status, 403, "{token:?}: {body}");
    }
    let (status, _) = app.admin_get("/users").await;
    assert_eq!(status, 200);
    // The admin token opens nothing on the OnCall side.
    let (status, _) = call(&app, "GET", "/api/v1/info/", Some(ADMIN), None).await;
    assert_eq!(status, 403);
    app.stop().await;
}
db_test!(admin_api_needs_its_own_token);

async fn users_and_devices_crud(db: TestDb) {
    let app = TestApp::spawn(with_admin(&db)).await;
    let (status, user) = app
        .admin_post(
            "/users",
            json!({"email": "Ann@Example.com", "phone_number": "+49 30 123456", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["phone_number"], "+4930123456");
    let (status, body) = app.admin_post("/users", json!({"email": "bad"})).await;
    assert_eq!(status, 400);
    assert!(body["email"].is_array(), "{body}");

    let (_, sync) = app.get_json("/api/v1/users?email=ann@example.com").await;
    assert_eq!(sync["results"][0]["is_phone_number_verified"], true);

    let (status, patched) = app
        .admin_patch(
            "/users/ann@example.com",
            json!({"phone_number": null, "contacts": {"telegram": "42"}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched["phone_number"].is_null());
    assert_eq!(patched["contacts"]["telegram"], "42");
    let (_, sync) = app.get_json("/api/v1/users?email=ann@example.com").await;
    assert_eq!(
        sync["results"][0]["is_phone_number_verified"], false,
        "the same directory as the cloud API"
    );

    let id = user["id"].as_str().expect("id");
    let (status, _) = app
        .admin_put("/devices/tok-1", json!({"user": id, "label": "phone"}))
        .await;
    assert_eq!(status, 200);
    let (_, devices) = app.admin_get("/devices").await;
    assert_eq!(devices["count"], 1);
    assert_eq!(devices["results"][0]["user_id"], id);
    let (status, _) = app.admin_delete("/devices/tok-1").await;
    assert_eq!(status, 204);

    let (status, _) = app.admin_delete(&format!("/users/{id}")).await;
    assert_eq!(status, 204);
    let (status, body) = app.admin_get(&format!("/users/{id}")).await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}
db_test!(users_and_devices_crud);

async fn events_are_filtered_and_paged(db: TestDb) {
    let app = TestApp::spawn(with_admin(&db)).await;
    app.add_user("a@example.com", Some("+4930123456")).await;
    for i in 0..5 {
        app.send_ok("/api/v1/send_sms", "a@example.com", &format!("m{i}"))
            .await;
    }
    let (status, page1) = app.admin_get("/events?limit=2&status=queued").await;
    assert_eq!(status, 200);
    assert_eq!(page1["count"], 2);
    assert_eq!(page1["results"][0]["message"], "m4", "newest first");
    let before = page1["next_before"].as_i64().expect("next page");
    let (_, page2) = app
        .admin_get(&format!("/events?limit=2&before={before}"))
        .await;
    assert_eq!(page2["results"][0]["message"], "m2");
    let (_, last) = app.admin_get("/events?limit=10&user=A@example.com").await;
    assert_eq!(last["count"], 5);
    assert!(last["next_before"].is_null());
    let (status, body) = app.admin_get("/events?status=lost").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.admin_get("/events?limit=many").await;
    assert_eq!(status, 400);
    app.stop().await;
}
db_test!(events_are_filtered_and_paged);

#[tokio::test]
async fn openapi_document_lists_every_admin_route() {
    let db = TestDb::new(Db::Sqlite).await;
    let app = TestApp::spawn(with_admin(&db)).await;
    let (status, doc) = call(&app, "GET", "/api/admin/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(
        str_of(&doc["openapi"]).starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.push((path.clone(), method.clone()));
        }
    }
    // Every documented route is really served: 403 without a token, not 404/405.
    for (path, method) in &documented {
        if path == "/openapi.json" {
            continue;
        }
        let concrete = path
            .replace("{user}", "x@example.com")
            .replace("{token}", "t")
            .replace("{key}", "k");
        let (status, _) = call(
            &app,
            &method.to_uppercase(),
            &format!("/api/admin/v1{concrete}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 403, "{method} {path}");
    }
    for (path, method) in [
        ("/users", "get"),
        ("/users", "post"),
        ("/users/{user}", "get"),
        ("/users/{user}", "patch"),
        ("/users/{user}", "delete"),
        ("/devices", "get"),
        ("/devices/{token}", "put"),
        ("/devices/{token}", "delete"),
        ("/integrations", "get"),
        ("/schedules", "get"),
        ("/schedules", "post"),
        ("/schedules/{key}", "get"),
        ("/schedules/{key}", "delete"),
        ("/events", "get"),
        ("/circuits", "get"),
        ("/circuits/changes", "get"),
        ("/oncall", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented; documented: {documented:?}"
        );
    }
    app.stop().await;
}

#[test]
fn the_admin_token_must_differ_from_oncalls() {
    let mut s = oncall_relay::config::Settings::default();
    s.app.auth_token =
        oncall_relay::config::Tokens(vec![oncall_relay::config::Secret("same".into())]);
    s.app.admin_token = s.app.auth_token.clone();
    let err = s.validate().expect_err("same token");
    assert!(err.to_string().contains("app.admin_token"), "{err}");
}

#[tokio::test]
async fn profiling_is_on_the_admin_side_only_and_only_with_debug() {
    let db = TestDb::new(Db::Sqlite).await;
    let app = TestApp::spawn(with_admin(&db)).await;
    let (status, _) = app.admin_get("/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, 404, "off without debug: true");
    app.stop().await;

    let mut s = with_admin(&db);
    s.debug = true;
    let app = TestApp::spawn(s).await;
    let (status, _) = call(
        &app,
        "GET",
        "/api/admin/v1/debug/pprof/profile?seconds=1",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 403, "never with OnCall's token");
    let resp = app
        .client
        .get(app.url("/api/admin/v1/debug/pprof/flamegraph?seconds=1"))
        .header("Authorization", format!("Bearer {ADMIN}"))
        .send()
        .await
        .expect("send");
    if cfg!(feature = "profiling") {
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.text().await.expect("svg").contains("<svg"));
    } else {
        assert_eq!(resp.status().as_u16(), 501);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert!(str_of(&body["detail"]).contains("--features profiling"));
    }
    app.stop().await;
}

async fn schedules_can_be_added_listed_and_removed(db: TestDb) {
    let app = TestApp::spawn(with_admin(&db)).await;
    let (status, created) = app.admin_post("/schedules", json!({"key": "platform", "ical_url": "http://127.0.0.1:9/ical", "transport": "callback", "callback_url": "http://127.0.0.1:9/cb"})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["transport"], "callback");
    let (_, list) = app.admin_get("/schedules").await;
    assert_eq!(list["count"], 1);
    let (status, one) = app.admin_get("/schedules/platform").await;
    assert_eq!(status, 200);
    assert_eq!(one["key"], "platform");
    let (status, _) = app
        .admin_post(
            "/schedules",
            json!({"key": "x", "ical_url": "http://h/i", "transport": "pigeon"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = app.admin_delete("/schedules/platform").await;
    assert_eq!(status, 204);
    let (status, _) = app.admin_get("/schedules/platform").await;
    assert_eq!(status, 404);
    app.stop().await;
}
db_test!(schedules_can_be_added_listed_and_removed);

async fn a_users_language_is_a_short_language_tag(db: TestDb) {
    let app = TestApp::spawn(with_admin(&db)).await;
    let (status, user) = app.admin_post("/users", json!({"email": "ana@example.com", "language": "pt_br", "timezone": "America/Sao_Paulo"})).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["language"], "pt-BR");
    let (status, body) = app
        .admin_patch("/users/ana@example.com", json!({"language": "portuguese"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["language"].is_array(), "{body}");
    let (status, user) = app
        .admin_patch("/users/ana@example.com", json!({"language": ""}))
        .await;
    assert_eq!(status, 200, "{user}");
    assert!(
        user["language"].is_null(),
        "an empty tag removes it: {user}"
    );
    app.stop().await;
}
db_test!(a_users_language_is_a_short_language_tag);
