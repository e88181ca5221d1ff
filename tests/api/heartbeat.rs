//! E4/E5 integrations, E6 heartbeat links, and the watchdog.

use std::time::Duration;

use crate::db_test;
use crate::helpers::*;

const NAME: &str = "OnCall Cloud Heartbeat http://oncall-engine:8080";

pub(crate) async fn create(app: &TestApp) -> serde_json::Value {
    // python-requests' encoding of data={"type": ..., "name": ...}.
    let resp = app
        .post_fields(
            "/api/v1/integrations/",
            &[("type", "formatted_webhook"), ("name", NAME)],
        )
        .await;
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 201, "{body}");
    body
}

pub(crate) fn path_of(link: &str) -> String {
    let rest = link.split_once("://").expect("absolute").1;
    format!("/{}", rest.split_once('/').expect("path").1)
}

async fn creating_twice_returns_the_same_integration(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let first = create(&app).await;
    let again = create(&app).await;
    assert_eq!(first, again, "idempotent on the name");
    let id = first["id"].as_str().expect("id");
    assert!(!id.is_empty() && id.len() <= 50);
    assert_eq!(first["name"], NAME);
    assert_eq!(first["type"], "formatted_webhook");
    let link = first["link"].as_str().expect("link");
    let beat = first["heartbeat"]["link"].as_str().expect("heartbeat link");
    assert!(link.starts_with(&format!("http://{}/", app.addr)), "{link}");
    assert!(beat.starts_with("http://") && beat.len() <= 200, "{beat}");
    assert!(beat.ends_with("/heartbeat/"), "{beat}");

    // JSON works too, and the no-slash path.
    let resp = app
        .client
        .post(app.url("/api/v1/integrations"))
        .header("Authorization", TOKEN)
        .json(&serde_json::json!({"type": "formatted_webhook", "name": NAME}))
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 201);
    assert_eq!(body["id"], first["id"]);

    let (status, body) = json_of(
        app.get(&format!("/api/v1/integrations/?name={}", urlencode(NAME)))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 1);
    assert_eq!(body["results"][0]["id"], first["id"]);
    assert!(body["next"].is_null());
    let (_, body) = app.get_json("/api/v1/integrations/?name=nothing").await;
    assert_eq!(body["count"], 0);
    app.stop().await;
}
db_test!(creating_twice_returns_the_same_integration);

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn bad_integration_requests_are_400_with_detail(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let (status, body) = app
        .post_fields_json(
            "/api/v1/integrations/",
            &[("type", "alertmanager"), ("name", "x")],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        serde_json::json!({"detail": "Invalid integration type"})
    );
    let (status, body) = app
        .post_fields_json("/api/v1/integrations/", &[("type", "formatted_webhook")])
        .await;
    assert_eq!(status, 400);
    assert!(body["detail"].is_string());
    assert_eq!(
        status_of(
            app.client
                .post(app.url("/api/v1/integrations/"))
                .body("type=formatted_webhook&name=x")
        )
        .await,
        403
    );
    app.stop().await;
}
db_test!(bad_integration_requests_are_400_with_detail);

async fn heartbeat_link_needs_no_token_and_unknown_links_are_403(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let created = create(&app).await;
    let beat = path_of(created["heartbeat"]["link"].as_str().expect("link"));
    assert_eq!(status_of(app.client.get(app.url(&beat))).await, 200);
    assert_eq!(
        status_of(app.client.post(app.url(&beat)).body("{}")).await,
        200
    );
    assert_eq!(
        status_of(app.client.get(app.url(beat.trim_end_matches('/')))).await,
        200
    );
    let unknown = "/integrations/v1/formatted_webhook/not-a-real-token/heartbeat/";
    let (status, body) = json_of(app.plain_get(unknown).await).await;
    assert_eq!(status, 403);
    assert!(body["detail"].is_string());
    app.stop().await;
}
db_test!(heartbeat_link_needs_no_token_and_unknown_links_are_403);

pub(crate) fn watchdog_settings(db: &TestDb, fake: &Fake) -> oncall_relay::config::Settings {
    let mut s = webhook_settings(db, &fake.url);
    s.heartbeat.timeout = Duration::from_millis(800);
    s.heartbeat.check_interval = Duration::from_millis(100);
    s
}

pub(crate) fn heartbeat_alerts(fake: &Fake) -> Vec<serde_json::Value> {
    fake.requests()
        .iter()
        .map(|r| r.json())
        .filter(|b| b["kind"] == "heartbeat")
        .collect()
}

async fn watchdog_alerts_once_when_silent_and_once_when_restored(db: TestDb) {
    let fake = Fake::start().await;
    let s = watchdog_settings(&db, &fake);
    let app = TestApp::spawn(s.clone()).await;
    let admin = app.add_user("admin@example.com", Some("+4930123456")).await;
    app.directory
        .update(
            "admin@example.com",
            oncall_relay::directory::UserPatch {
                role: Some("admin".into()),
                ..Default::default()
            },
        )
        .await
        .expect("admin");
    app.add_user("editor@example.com", Some("+4930123457"))
        .await;

    // A never-beaten integration raises nothing.
    let (_, quiet) = app
        .post_fields_json(
            "/api/v1/integrations/",
            &[("type", "formatted_webhook"), ("name", "never beats")],
        )
        .await;
    assert!(quiet["id"].is_string());
    let created = create(&app).await;
    let beat = path_of(created["heartbeat"]["link"].as_str().expect("link"));
    assert_eq!(app.plain_get_status(&beat).await, 200);

    let alerts = wait_for(Duration::from_secs(10), || async {
        let a = heartbeat_alerts(&fake);
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(
        alerts[0]["user"]["id"],
        admin.id.as_str(),
        "admins are told by default"
    );
    assert!(str_of(&alerts[0]["message"]).contains("stopped sending heartbeats"));
    assert!(str_of(&alerts[0]["message"]).contains("http://oncall-engine:8080"));

    // Still silent, and a restart: no second alert.
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.stop().await;
    let app = TestApp::spawn(s).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(heartbeat_alerts(&fake).len(), 1, "once per transition");

    assert_eq!(
        app.client
            .post(app.url(&beat))
            .send()
            .await
            .expect("beat")
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.plain_get_status(&beat).await, 200);
    let alerts = wait_for(Duration::from_secs(10), || async {
        let a = heartbeat_alerts(&fake);
        (a.len() >= 2).then_some(a)
    })
    .await;
    assert!(str_of(&alerts[1]["message"]).contains("sending heartbeats again"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(heartbeat_alerts(&fake).len(), 2);
    app.stop().await;
}
db_test!(watchdog_alerts_once_when_silent_and_once_when_restored);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_announce_each_transition_once_on_postgres() {
    let Some(db) = postgres_test_db().await else {
        return;
    };
    let fake = Fake::start().await;
    let mut s = watchdog_settings(&db, &fake);
    s.heartbeat.check_interval = Duration::from_millis(20);
    let a = TestApp::spawn(s.clone()).await;
    let b = TestApp::spawn(s).await;
    a.directory
        .add(oncall_relay::directory::NewUser {
            email: "admin@example.com".into(),
            role: Some("admin".into()),
            ..Default::default()
        })
        .await
        .expect("admin");
    let created = create(&a).await;
    let beat = path_of(created["heartbeat"]["link"].as_str().expect("link"));
    // Beats through both instances.
    a.client.get(a.url(&beat)).send().await.expect("beat");
    b.client.get(b.url(&beat)).send().await.expect("beat");
    wait_for(Duration::from_secs(10), || async {
        (!heartbeat_alerts(&fake).is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(heartbeat_alerts(&fake).len(), 1);
    let (ra, rb) = tokio::join!(
        a.client.get(a.url(&beat)).send(),
        b.client.get(b.url(&beat)).send()
    );
    assert_eq!(ra.expect("beat").status().as_u16(), 200);
    assert_eq!(rb.expect("beat").status().as_u16(), 200);
    wait_for(Duration::from_secs(10), || async {
        (heartbeat_alerts(&fake).len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = heartbeat_alerts(&fake);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    a.stop().await;
    b.stop().await;
}

/// A connection of its own to the test database (outside the app's pool).
async fn side_connection(db: &TestDb) -> sqlx::AnyConnection {
    let url = match db.kind {
        Db::Sqlite => format!("sqlite://{}", db.settings.path),
        Db::Postgres => db.settings.url.expose().to_string(),
    };
    <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("side connection")
}

async fn last_beat_at(conn: &mut sqlx::AnyConnection) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT last_beat_at FROM integrations")
        .fetch_one(&mut *conn)
        .await
        .expect("last beat")
}

async fn heartbeat_links_are_checked_before_any_write(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let created = create(&app).await;
    let beat = path_of(created["heartbeat"]["link"].as_str().expect("link"));
    let status = |path: String| {
        let client = app.client.clone();
        let url = app.url(&path);
        async move {
            tokio::time::timeout(Duration::from_secs(3), client.get(url).send())
                .await
                .expect("answered without waiting for the write lock")
                .expect("answer")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(beat.clone()).await, 200);
    let mut side = side_connection(&db).await;
    let first = last_beat_at(&mut side).await;

    // Someone else holds the write lock: neither random links nor a repeated beat of a known
    // link within a second may wait for it, since neither writes.
    let lock: &[&str] = match db.kind {
        Db::Sqlite => &["BEGIN IMMEDIATE"],
        Db::Postgres => &["BEGIN", "LOCK TABLE integrations IN EXCLUSIVE MODE"],
    };
    for statement in lock {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*statement))
            .execute(&mut side)
            .await
            .expect("lock");
    }
    assert_eq!(status(beat.clone()).await, 200, "a known link still works");
    let random: Vec<_> = (0..50)
        .map(|i| {
            status(format!(
                "/integrations/v1/formatted_webhook/{:024x}{i}/heartbeat/",
                rand::random::<u128>()
            ))
        })
        .collect();
    for answer in futures_util::future::join_all(random).await {
        assert_eq!(answer, 403, "unknown links are refused");
    }
    let long = format!(
        "/integrations/v1/formatted_webhook/{}/heartbeat",
        "x".repeat(5000)
    );
    assert_eq!(status(long).await, 403);
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut side)
        .await
        .expect("unlock");
    assert_eq!(
        last_beat_at(&mut side).await,
        first,
        "the beats in between wrote nothing"
    );

    // After the interval, the next beat is written again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(beat.clone()).await, 200);
    assert!(last_beat_at(&mut side).await > first);
    app.stop().await;
}
db_test!(heartbeat_links_are_checked_before_any_write);
