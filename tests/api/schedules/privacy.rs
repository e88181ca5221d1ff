//! Tokens and personal data: sent only where they belong, never logged.

use super::*;

/// OnCall's and Grafana's tokens go only to their own origins, never to a calendar or a
/// callback URL elsewhere (an admin may add any URL).
async fn tokens_go_only_to_their_own_origin(db: TestDb) {
    let hook = Fake::start().await;
    let oncall = CalendarServer::start(calendar(&["alice"])).await;
    let elsewhere = CalendarServer::start(calendar(&["alice"])).await;
    let grafana = Fake::start().await;
    let listener = Fake::start().await;
    let mut s = test_settings(&db, &hook);
    s.grafana.oncall.url = format!("{}/", oncall.origin());
    s.grafana.oncall.header_token = oncall_relay::config::Secret("oncall-secret".into());
    s.grafana.url = grafana.url.trim_end_matches("/hook").to_string();
    s.grafana.header_token = oncall_relay::config::Secret("grafana-secret".into());
    let app = TestApp::spawn(s.clone()).await;
    add_people(&app).await;
    let schedules = schedules_of(&app, &s);
    for (key, ical_url, callback_url) in [
        ("home", "/ical".to_string(), grafana.url.clone()),
        ("absolute", oncall.url.clone(), listener.url.clone()),
        ("away", elsewhere.url.clone(), listener.url.clone()),
    ] {
        add_schedule(
            &schedules,
            key,
            key,
            ical_url,
            Transport::Callback,
            callback_url,
        )
        .await;
    }
    for key in ["home", "absolute", "away"] {
        polled_after(&schedules, key, 0).await;
    }
    // A change makes every schedule post its callback.
    oncall.set(calendar(&["bob"]));
    elsewhere.set(calendar(&["bob"]));
    wait_for(Duration::from_secs(10), || async {
        (grafana.requests().len() == 1 && listener.requests().len() == 2).then_some(())
    })
    .await;

    let home = oncall.auth_seen();
    assert!(!home.is_empty());
    assert!(
        home.iter().all(|a| a.as_deref() == Some("oncall-secret")),
        "{home:?}"
    );
    let away = elsewhere.auth_seen();
    assert!(!away.is_empty());
    assert!(away.iter().all(Option::is_none), "{away:?}");
    assert_eq!(
        grafana.requests()[0].headers["authorization"],
        "grafana-secret"
    );
    for r in listener.requests() {
        assert_eq!(r.headers["authorization"], "Basic Og==");
    }
    app.stop().await;
}
db_test!(tokens_go_only_to_their_own_origin);

/// A failed poll logs the calendar URL without its token; on-duty changes and unknown people
/// are logged without emails or names at info.
#[tokio::test(flavor = "current_thread")]
async fn logs_carry_no_calendar_token_and_no_personal_data() {
    let (logs, _guard) = capture_logs();
    let db = TestDb::new(Db::Sqlite).await;
    let hook = Fake::start().await;
    let cal = CalendarServer::start(calendar(&["alice", "zoe.unknown"])).await;
    let s = test_settings(&db, &hook);
    let app = TestApp::spawn(s.clone()).await;
    add_people(&app).await;
    let schedules = schedules_of(&app, &s);
    for (key, ical_url) in [
        (
            "down",
            "http://127.0.0.1:9/ical?token=s3cret-calendar".to_string(),
        ),
        ("team", cal.url.clone()),
    ] {
        add_schedule(
            &schedules,
            key,
            key,
            ical_url,
            Transport::Local,
            String::new(),
        )
        .await;
    }
    polled_after(&schedules, "team", 0).await;
    cal.set(calendar(&["bob", "zoe.unknown"]));
    wait_for(Duration::from_secs(10), || async {
        (!hook.requests().is_empty()).then_some(())
    })
    .await;
    let down = wait_for(Duration::from_secs(10), || async {
        status(&schedules, "down").await.last_error
    })
    .await;
    assert!(!down.contains("s3cret"), "{down}");
    app.stop().await;

    let text = String::from_utf8_lossy(&logs.lock().expect("lock")).to_string();
    assert!(text.contains("schedule poll failed"), "{text}");
    assert!(text.contains("on-duty change"), "{text}");
    assert!(text.contains("not in the directory"), "{text}");
    for secret in ["s3cret", "alice", "bob", "zoe"] {
        assert!(!text.contains(secret), "`{secret}` logged: {text}");
    }
}
