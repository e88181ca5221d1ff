//! E2/E3 `api/v1/users`: bulk sync pages and the single-user lookup.

use oncall_relay::directory::UserPatch;

use crate::db_test;
use crate::helpers::*;

async fn seed(app: &TestApp, n: usize) {
    let rows = (0..n)
        .map(|i| oncall_relay::directory::ImportRow {
            email: format!("user{i:04}@example.com"),
            phone_number: (i % 3 != 0).then(|| format!("+4930{:07}", 1_000_000 + i)),
            role: Some(["admin", "editor", "viewer"][i % 3].into()),
            ..Default::default()
        })
        .collect();
    app.directory.import(rows).await.expect("import");
}

async fn bulk_sync_pages_until_next_is_null(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    seed(&app, 250).await;

    // Exactly what the engine sends: no slash before `?`, repeated roles.
    let mut url = app.url("/api/v1/users?page=1&short=true&roles=0&roles=1");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = app
            .client
            .get(&url)
            .header("Authorization", TOKEN)
            .send()
            .await
            .expect("send");
        let (status, body) = json_of(resp).await;
        assert_eq!(status, 200);
        pages += 1;
        assert_eq!(body["count"], 167, "admins and editors of 250");
        assert_eq!(body["page_size"], 100);
        assert_eq!(body["total_pages"], 2);
        assert_eq!(body["current_page_number"], pages);
        for u in body["results"].as_array().expect("results") {
            let id = u["id"].as_str().expect("id");
            assert!(!id.is_empty() && id.len() <= 20, "id {id}");
            assert!(u["grafana_id"].is_i64());
            assert!(u["is_phone_number_verified"].is_boolean());
            assert!(["admin", "editor"].contains(&u["role"].as_str().expect("role")));
            assert!(u.get("name").is_none(), "short form");
            seen.push(str_of(&u["email"]).to_string());
        }
        match body["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with("http://"), "absolute: {next}");
                url = next.to_string();
            }
            None => break,
        }
        assert!(pages < 5, "pagination never ends");
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 167);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 167, "no user twice");

    // A page past the end answers the last page.
    let (status, body) = json_of(
        app.get("/api/v1/users?page=99&short=true&roles=0&roles=1")
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["current_page_number"], 2);
    assert!(body["next"].is_null());
    assert!(str_of(&body["previous"]).contains("page=1"));
    assert_eq!(body["results"].as_array().expect("results").len(), 67);

    // perpage and the viewer role.
    let (_, body) = app.get_json("/api/v1/users?perpage=10&roles=2").await;
    assert_eq!(body["count"], 83);
    assert_eq!(body["results"].as_array().expect("results").len(), 10);
    assert_eq!(body["total_pages"], 9);
    app.stop().await;
}
db_test!(bulk_sync_pages_until_next_is_null);

async fn single_lookup_by_email_with_plus_sent_as_space(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let john = app
        .add_user("John+OnCall@Example.com", Some("+49 30 123456"))
        .await;
    app.add_user("john@example.com", None).await;

    // python-requests leaves `+` in the query as is; it decodes to a space.
    for path in [
        "/api/v1/users/?email=john+oncall@example.com&roles=0&roles=1&short=true",
        "/api/v1/users?email=john+oncall@example.com&roles=0&roles=1&short=true",
        "/api/v1/users/?email=JOHN%2BONCALL@EXAMPLE.COM&roles=0&roles=1&short=true",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["count"], 1, "{path}: {body}");
        let u = &body["results"][0];
        assert_eq!(u["id"], john.id.as_str());
        // Stored spelling, not the query's.
        assert_eq!(u["email"], "John+OnCall@Example.com");
        assert_eq!(u["is_phone_number_verified"], true);
    }
    let (_, body) = json_of(
        app.get("/api/v1/users/?email=nobody@example.com&roles=0&roles=1&short=true")
            .await,
    )
    .await;
    assert_eq!(body["count"], 0);
    assert_eq!(body["results"], serde_json::json!([]));
    // Role filter applies to the match too.
    let (_, body) = json_of(
        app.get("/api/v1/users/?email=john%2Boncall@example.com&roles=0")
            .await,
    )
    .await;
    assert_eq!(body["count"], 0);
    let (_, body) = app.get_json("/api/v1/users/?username=JOHN").await;
    assert_eq!(body["count"], 1);
    assert_eq!(body["results"][0]["email"], "john@example.com");
    app.stop().await;
}
db_test!(single_lookup_by_email_with_plus_sent_as_space);

async fn verified_tracks_phone_and_active_flag(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    app.add_user("a@example.com", Some("+12025550143")).await;
    let check = |expected: bool| {
        let app = &app;
        async move {
            // Both ways a sync reads people: one by email, and the pages of everyone.
            for path in ["/api/v1/users?short=true", "/api/v1/users?roles=0&roles=1"] {
                let (_, body) = app.get_json(path).await;
                assert_eq!(
                    body["results"][0]["is_phone_number_verified"], expected,
                    "{path}: {body}"
                );
            }
            let (_, body) = app.get_json("/api/v1/users?email=a@example.com").await;
            assert_eq!(
                body["results"][0]["is_phone_number_verified"], expected,
                "{body}"
            );
            body
        }
    };
    let body = check(true).await;
    // Long form without short=true.
    let u = &body["results"][0];
    assert_eq!(u["timezone"], "UTC");
    assert_eq!(u["teams"], serde_json::json!([]));
    assert!(u["slack"].is_null());
    assert!(u["name"].is_string());

    app.directory
        .update(
            "a@example.com",
            UserPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    check(false).await;
    app.directory
        .update(
            "a@example.com",
            UserPatch {
                active: Some(true),
                phone_number: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    check(false).await;
    app.stop().await;
}
db_test!(verified_tracks_phone_and_active_flag);

async fn bad_query_parameters_are_400_json(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let (status, body) = app.get_json("/api/v1/users?roles=0&roles=9").await;
    assert_eq!(status, 400);
    assert!(body["roles"].is_array(), "{body}");
    let (status, body) = app.get_json("/api/v1/users?page=abc").await;
    assert_eq!(status, 400);
    assert!(body["page"].is_array(), "{body}");
    app.stop().await;
}
db_test!(bad_query_parameters_are_400_json);

async fn a_user_added_by_another_process_is_seen(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    // A second directory handle on the same database stands for the CLI.
    add_user_to(&db, "late@example.com", "+4930123456").await;
    // make_call re-checks a miss against the database at once.
    app.send_ok("/api/v1/make_call", "late@example.com", "hi")
        .await;
    // The sync sees it after the refresh interval.
    wait_for(std::time::Duration::from_secs(5), || async {
        let (_, body) = app.get_json("/api/v1/users?email=late@example.com").await;
        (body["count"] == 1).then_some(())
    })
    .await;
    app.stop().await;
}
db_test!(a_user_added_by_another_process_is_seen);

async fn a_change_by_another_process_reaches_looked_up_users(db: Db) {
    let db = TestDb::new(db).await;
    let app = TestApp::spawn(settings(&db)).await;
    app.add_user("cached@example.com", Some("+4930123456"))
        .await;
    let admins = || async {
        let (_, body) = json_of(
            app.get("/api/v1/users?email=cached@example.com&roles=0")
                .await,
        )
        .await;
        body["count"].clone()
    };
    // Looked up once, so the relay now holds this person.
    assert_eq!(admins().await, 0);
    let other = oncall_relay::directory::Directory::load(
        oncall_relay::store::Store::connect(&db.settings)
            .await
            .expect("connect"),
    )
    .await
    .expect("load");
    other
        .update(
            "cached@example.com",
            UserPatch {
                role: Some("admin".into()),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    // The version moved: the next refresh forgets what was held.
    wait_for(std::time::Duration::from_secs(5), || async {
        (admins().await == 1).then_some(())
    })
    .await;
    app.stop().await;
}
db_test!(a_change_by_another_process_reaches_looked_up_users);

async fn start_up_reads_no_user_rows(db: Db) {
    let db = TestDb::new(db).await;
    let app = TestApp::spawn(settings(&db)).await;
    app.add_user("fine@example.com", Some("+4930123456")).await;
    // A row no look-up can decode: reading the whole directory at start would fail on it.
    sqlx::query(
        "INSERT INTO directory_users (public_id, email, email_key, contacts, created_at, updated_at) \
         VALUES ('Ubroken', 'broken@example.com', 'broken@example.com', 'not json', 0, 0)",
    )
    .execute(app.store.pool())
    .await
    .expect("insert");
    let directory = oncall_relay::directory::Directory::load(
        oncall_relay::store::Store::connect(&db.settings)
            .await
            .expect("connect"),
    )
    .await
    .expect("a directory opens without reading its people");
    let found = directory.by_email("FINE@example.com").await.expect("read");
    assert_eq!(
        found.map(|u| u.email.clone()).as_deref(),
        Some("fine@example.com")
    );
    app.stop().await;
}
db_test!(start_up_reads_no_user_rows);
