//! The console without a browser: form tokens, sessions, the trusted header, codes.

use super::*;
use crate::db_test;

db_test!(a_post_without_the_sessions_form_token_is_refused);
async fn a_post_without_the_sessions_form_token_is_refused(db: TestDb) {
    let console = Console::start(&db, |_| {}).await;
    let (app, alice) = (&console.app, &console.alice);
    let mut admin = console.admin().await;
    let edit = format!("/console/people/{}/edit", alice.id);
    let csrf = admin.open_form(&edit).await;
    let change = |token: &'static str| {
        vec![
            ("csrf", token),
            ("email", "alice@example.com"),
            ("name", "Mallory"),
            ("role", "editor"),
            ("active", "on"),
        ]
    };
    for token in ["", "forged"] {
        let (status, _, body) = admin.post(&edit, &change(token)).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("Form expired"), "an HTML page: {body}");
    }
    let no_token = [("email", "alice@example.com"), ("name", "Mallory")];
    let (status, _, _) = admin.post(&edit, &no_token).await;
    assert_eq!(status, 403, "no token at all");
    let name = || async { app.directory.get(&alice.id).await.expect("alice").name };
    assert_eq!(name().await, alice.name);

    let mut with_token = change("");
    with_token[0].1 = &csrf;
    let (status, location, _) = admin.post(&edit, &with_token).await;
    assert_eq!(
        (status, location),
        (303, format!("/console/people/{}", alice.id))
    );
    assert_eq!(name().await, "Mallory");
    console.stop().await;
}

db_test!(an_expired_or_unknown_session_goes_back_to_sign_in);
async fn an_expired_or_unknown_session_goes_back_to_sign_in(db: TestDb) {
    let console = Console::start(&db, |_| {}).await;
    let mut admin = console.admin().await;
    let (status, _, _) = admin.get("/console/people").await;
    assert_eq!(status, 200);
    sqlx::query("UPDATE console_sessions SET expires_at = 1")
        .execute(console.app.store.pool())
        .await
        .expect("expire");
    let (status, location, _) = admin.get("/console/people?q=x").await;
    assert_eq!(status, 303);
    assert_eq!(location, "/console/signin?next=%2Fconsole%2Fpeople%3Fq%3Dx");

    let mut stranger = Visitor::new(&console.app);
    stranger
        .cookies
        .insert("relay_console".into(), "made-up".into());
    let (status, location, _) = stranger.get("/console/events").await;
    assert_eq!(
        (status, location.starts_with("/console/signin")),
        (303, true)
    );
    // A form post with a dead session changes nothing either.
    let eve = [("csrf", "x"), ("email", "eve@example.com")];
    let (status, _, _) = stranger.post("/console/people/new", &eve).await;
    assert_eq!(status, 303);
    assert!(console.app.directory.get("eve@example.com").await.is_err());
    console.stop().await;
}

#[tokio::test]
async fn the_trusted_header_is_ignored_unless_its_proxy_is_configured() {
    let db = TestDb::new(Db::Sqlite).await;
    let header = [("X-WEBAUTH-USER", "alice@example.com")];
    let console = Console::start(&db, |_| {}).await;
    let mut visitor = Visitor::new(&console.app);
    let (status, _, page) = visitor.get_with("/console/signin", &header).await;
    assert_eq!(status, 200, "the sign-in form, not a session");
    assert!(page.contains("Send me a code"));
    assert!(!visitor.cookies.contains_key("relay_console"));
    let Console { gateway, app, .. } = console;
    app.stop().await;

    // Alice is in the database already: these apps only start on it.
    let trusting = |proxy: &str| {
        let mut s = console_settings(&db, &gateway);
        s.console.trusted_proxies = vec![proxy.parse().expect("ip")];
        TestApp::spawn(s)
    };
    let elsewhere = trusting("192.0.2.1").await;
    let mut visitor = Visitor::new(&elsewhere);
    let (status, _, _) = visitor.get_with("/console/signin", &header).await;
    assert_eq!(status, 200, "a proxy at another address is not this peer");
    elsewhere.stop().await;

    let proxied = trusting("127.0.0.1").await;
    let mut visitor = Visitor::new(&proxied);
    let (status, location, _) = visitor
        .get_with("/console/signin?next=/console", &header)
        .await;
    assert_eq!((status, location.as_str()), (303, "/console"));
    let (status, location, _) = visitor.get("/console").await;
    assert_eq!(status, 303);
    assert!(location.starts_with("/console/people/U"), "{location}");
    let (status, _, page) = visitor.get(&location).await;
    assert_eq!(status, 200);
    assert!(page.contains("alice@example.com"));
    let (status, _, _) = visitor.get("/console/people").await;
    assert_eq!(status, 403, "an editor is no admin");
    proxied.stop().await;
}

db_test!(a_person_signs_in_with_a_code_and_sees_only_their_own_profile);
async fn a_person_signs_in_with_a_code_and_sees_only_their_own_profile(db: TestDb) {
    let Console { gateway, app, .. } = Console::start(&db, |_| {}).await;
    let bob = app.add_user("bob@example.com", Some("+4930555000")).await;
    let mut alice = Visitor::new(&app);
    let (status, location, page) = alice.ask_for_code("alice@example.com").await;
    assert_eq!(status, 303, "{page}");
    assert!(
        location.starts_with("/console/signin?code_for=alice%40example.com"),
        "on to the code form with a GET: {location}"
    );
    assert!(page.contains("name=\"code\""), "{page}");
    let code = code_sent(&gateway).await;
    assert_eq!(
        gateway.requests().last().expect("sent").json()["phone"],
        "+4930123456"
    );
    let wrong = alice.enter_code("alice@example.com", "000000x").await;
    assert_eq!(wrong.0, 401);
    let right = alice.enter_code("alice@example.com", &code).await;
    assert_eq!(right, (303, "/console".to_string()));
    let again = alice.enter_code("alice@example.com", &code).await;
    assert_eq!(again.0, 401, "a code works once");

    let (status, _, page) = alice
        .get(&format!("/a/grafana-oncall-app/users?p=1&id={}", bob.id))
        .await;
    assert_eq!(status, 403, "{page}");
    // Unknown emails get the same answer as known ones, and no code goes out.
    let sent = gateway.requests().len();
    let mut eve = Visitor::new(&app);
    let (status, _, page) = eve.ask_for_code("eve@example.com").await;
    assert_eq!(status, 303);
    assert!(page.contains("If eve@example.com is in the directory"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(gateway.requests().len(), sent);
    app.stop().await;
}

db_test!(phone_codes_expire_after_too_many_wrong_guesses_and_are_rate_limited);
async fn phone_codes_expire_after_too_many_wrong_guesses_and_are_rate_limited(db: TestDb) {
    let console = Console::start(&db, |s| {
        s.console.code_attempts = 2;
        s.console.codes_per_hour = 2;
    })
    .await;
    let (app, alice, gateway) = (&console.app, &console.alice, &console.gateway);
    let mut admin = console.admin().await;
    let profile = format!("/console/people/{}", alice.id);
    let (phone, confirm) = (
        format!("{profile}/phone"),
        format!("{profile}/phone/confirm"),
    );
    admin.open_form(&profile).await;
    let (status, _, page) = admin.submit(&phone, &[("phone", "not a number")]).await;
    assert_eq!(status, 400, "{page}");
    let (status, location, _) = admin.submit(&phone, &[("phone", "+49 30 777666")]).await;
    assert_eq!((status, location), (303, format!("{profile}?done=code")));
    let (_, _, page) = admin.get(&format!("{profile}?done=code")).await;
    assert!(page.contains("A code is on its way"), "{page}");
    let code = code_sent(gateway).await;
    let sent = gateway.requests().last().expect("sent").json();
    assert_eq!(sent["phone"], "+4930777666", "to the new number");
    for _ in 0..2 {
        let (status, _, _) = admin.submit(&confirm, &[("code", "x")]).await;
        assert_eq!(status, 400);
    }
    let (status, _, _) = admin.submit(&confirm, &[("code", &code)]).await;
    assert_eq!(status, 400, "void after two wrong guesses");
    assert_eq!(
        app.phone_of(&alice.id).await.as_deref(),
        Some("+4930123456")
    );
    let (status, _, _) = admin.submit(&phone, &[("phone", "+49 30 777666")]).await;
    assert_eq!(status, 303);
    let (status, _, page) = admin.submit(&phone, &[("phone", "+49 30 777666")]).await;
    assert_eq!(status, 400, "the third code in an hour: {page}");
    assert!(page.contains("Too many codes"));
    let stored: Vec<(String,)> = sqlx::query_as("SELECT code_hash FROM console_codes")
        .fetch_all(app.store.pool())
        .await
        .expect("codes");
    assert!(
        stored
            .iter()
            .all(|(h,)| h.len() == 64 && !h.contains(&code)),
        "hashed"
    );
    console.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_page_never_a_500() {
    let db = TestDb::new(Db::Sqlite).await;
    let console = Console::start(&db, |_| {}).await;
    let mut admin = console.admin().await;
    admin.open_form("/console/people/new").await;
    for path in [
        "/console/events?status=nope&kind=%FF&before=abc",
        "/console/people?page=-1&q=%00",
        "/console/people/nobody",
        "/a/grafana-oncall-app/users?p=x&id=",
        "/a/grafana-oncall-app/integrations/nope",
        "/a/grafana-oncall-app/whatever",
    ] {
        let (status, _, body) = admin.get(path).await;
        assert!(status < 500, "{path}: {status} {body}");
    }
    let bad_person = [("email", "not-an-email"), ("phone_number", "abc")];
    let (status, _, page) = admin.submit("/console/people/new", &bad_person).await;
    assert_eq!(status, 400);
    assert!(page.contains("invalid"), "{page}");
    let edit = format!("/console/people/{}/edit", console.alice.id);
    let bad_edit = [("email", "alice@"), ("phone_number", "12")];
    let (status, _, _) = admin.submit(&edit, &bad_edit).await;
    assert_eq!(status, 400);
    let retry = [("action", "retry")];
    let (status, _, _) = admin.submit("/console/queue/abc", &retry).await;
    assert_eq!(status, 404);
    let broken_csv = [("csv", "email,phone\n\"x")];
    let (status, _, _) = admin.submit("/console/people/import", &broken_csv).await;
    assert!(status < 500);
    console.stop().await;
}

db_test!(a_csv_import_shows_a_preview_before_it_changes_anything);
async fn a_csv_import_shows_a_preview_before_it_changes_anything(db: TestDb) {
    let console = Console::start(&db, |_| {}).await;
    let app = &console.app;
    let mut admin = console.admin().await;
    admin.open_form("/console/people").await;
    let csv = "email,name,phone_number\nalice@example.com,Alice A,+4930123456\ncarol@example.com,Carol,+4930111222\n";
    let import = "/console/people/import";
    let (status, _, page) = admin.submit(import, &[("csv", csv)]).await;
    assert_eq!(status, 200);
    for row in [
        "<td>carol@example.com</td><td>add</td>",
        "<td>alice@example.com</td><td>update</td>",
    ] {
        assert!(page.contains(row), "{row}: {page}");
    }
    let carol = || app.directory.get("carol@example.com");
    assert!(carol().await.is_err(), "a preview only");
    let (status, location, _) = admin
        .submit(import, &[("csv", csv), ("confirm", "1")])
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/console/people?added=1&updated=1&unchanged=0"),
        "back to the list with a GET"
    );
    let (_, _, page) = admin.get(&location).await;
    assert!(page.contains("Imported: 1 added, 1 updated"), "{page}");
    assert_eq!(carol().await.expect("carol").name, "Carol");
    console.stop().await;
}

db_test!(the_queue_page_lists_failed_notifications_and_a_retry_comes_back_with_a_get);
async fn the_queue_page_lists_failed_notifications_and_a_retry_comes_back_with_a_get(db: TestDb) {
    let console = Console::start(&db, |_| {}).await;
    console.gateway.script(&[], Reply::Status(400));
    let app = &console.app;
    app.send_ok("/api/v1/send_sms", "alice@example.com", "Disk full")
        .await;
    let id = wait_for(std::time::Duration::from_secs(20), || async {
        let events = app.events().await;
        let first = events.first()?;
        (first.status == "failed").then_some(first.id)
    })
    .await;
    let mut admin = console.admin().await;
    admin.open_form("/console/queue").await;
    let (_, _, page) = admin.get("/console/queue").await;
    let failed = page.split("<h2>Failed").nth(1).expect("a Failed section");
    assert!(
        failed.contains(&format!("/console/queue/{id}")) && failed.contains("value=\"retry\""),
        "{page}"
    );
    let action = format!("/console/queue/{id}");
    let (status, location, _) = admin.submit(&action, &[("action", "retry")]).await;
    assert_eq!(
        (status, location.as_str()),
        (303, format!("/console/queue?done=retried&id={id}").as_str())
    );
    let (_, _, page) = admin.get(&location).await;
    assert!(
        page.contains(&format!("Notification {id} queued again.")),
        "{page}"
    );
    console.stop().await;
}

db_test!(the_status_page_shows_who_is_on_duty_now_and_next);
async fn the_status_page_shows_who_is_on_duty_now_and_next(db: TestDb) {
    use crate::schedules::CalendarServer;
    // Alice now, Bob from the end of her shift.
    let hour = chrono::Duration::hours(1);
    let stamp = |d: chrono::Duration| {
        (chrono::Utc::now() + d)
            .format("%Y%m%dT%H%M%SZ")
            .to_string()
    };
    let ical = CalendarServer::start(format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:test\r\n\
         BEGIN:VEVENT\r\nUID:a\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:alice@example.com\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:b\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:bob@example.com\r\nEND:VEVENT\r\n\
         END:VCALENDAR\r\n",
        stamp(-hour),
        stamp(hour),
        stamp(hour),
        stamp(hour * 9),
    ))
    .await;
    let console = Console::start(&db, |s| {
        s.grafana.oncall.schedule_poll_interval = std::time::Duration::from_millis(100);
        s.grafana.oncall.schedules.insert(
            "platform".into(),
            oncall_relay::config::ScheduleSettings {
                name: "Platform".into(),
                ical_url: ical.url.clone(),
                ..Default::default()
            },
        );
    })
    .await;
    console
        .app
        .add_user("bob@example.com", Some("+4930555000"))
        .await;
    let mut admin = console.admin().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let page = loop {
        let (_, _, page) = admin.get("/console/status").await;
        if page.contains("Next: bob") || std::time::Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(page.contains("Next: bob"), "{page}");
    assert!(page.contains("On duty now: alice"), "{page}");
    console.stop().await;
}
