//! Downloads that end early: the last good state is kept, nobody is told twice, and the
//! status (CLI and admin API) says so.

use super::*;

/// `text` cut off in the middle of its last event, as a dropped connection leaves it.
fn cut_in_last_event(text: &str) -> String {
    let start = text.rfind("BEGIN:VEVENT").unwrap_or(0);
    let end = text.rfind("END:VEVENT").unwrap_or(text.len());
    text[..start + (end - start) / 2].to_string()
}

const ADMIN: &str = "admin-token-schedules";

async fn a_truncated_calendar_keeps_the_last_good_state(db: TestDb) {
    let hook = Fake::start().await;
    let cal = CalendarServer::start(calendar(&["alice"])).await;
    let mut s = test_settings(&db, &hook);
    s.app.admin_token =
        oncall_relay::config::Tokens(vec![oncall_relay::config::Secret(ADMIN.into())]);
    let app = TestApp::spawn(s.clone()).await;
    add_people(&app).await;
    let schedules = track_team(&app, &s, &cal).await;
    let first = polled_after(&schedules, "team", 0).await;
    assert_eq!(first.on_duty.as_deref(), Some(&["alice".to_string()][..]));
    assert_eq!(first.state, StateStatus::Current);

    // bob's calendar arrives cut off: not "nobody on duty", not bob.
    cal.set(cut_in_last_event(&calendar(&["alice", "bob"])));
    let broken = wait_for(Duration::from_secs(10), || async {
        let s = status(&schedules, "team").await;
        s.last_error.is_some().then_some(s)
    })
    .await;
    let error = broken.last_error.clone().unwrap_or_default();
    assert!(error.contains("incomplete"), "{error}");
    assert_eq!(broken.on_duty.as_deref(), Some(&["alice".to_string()][..]));
    assert_eq!(broken.state, StateStatus::LastGood);
    let text = ok(&relay(&db, &["schedules", "status"]));
    assert!(text.contains("last good state kept"), "{text}");
    assert!(text.contains("incomplete"), "{text}");
    let body: serde_json::Value = app
        .client
        .get(app.url("/api/admin/v1/schedules/team"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin API")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["state"], "last_good", "{body}");
    assert_eq!(body["on_duty"], serde_json::json!(["alice"]));

    // The good file returns: alice was on duty all along and is not told again.
    let back = now_ms();
    cal.set(calendar(&["alice"]));
    let good = polled_after(&schedules, "team", back).await;
    assert_eq!(good.state, StateStatus::Current);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
    assert!(app.events().await.is_empty());
    app.stop().await;
}
db_test!(a_truncated_calendar_keeps_the_last_good_state);

async fn status_reports_ambiguous_names_and_zones_read_as_utc(db: TestDb) {
    let hook = Fake::start().await;
    let mut text = calendar(&["Sam"]);
    text = text.replace(
        "END:VCALENDAR",
        "BEGIN:VEVENT\r\nUID:mars\r\nDTSTART;TZID=Mars/Olympus:20260401T090000\r\n\
         DTEND;TZID=Mars/Olympus:20260401T100000\r\nSUMMARY:bob\r\nEND:VEVENT\r\nEND:VCALENDAR",
    );
    let cal = CalendarServer::start(text).await;
    let s = test_settings(&db, &hook);
    let app = TestApp::spawn(s.clone()).await;
    for (email, username) in [("sam1@example.com", "sam1"), ("sam2@example.com", "sam2")] {
        app.directory
            .add(NewUser {
                email: email.into(),
                username: Some(username.into()),
                name: Some("Sam".into()),
                ..NewUser::default()
            })
            .await
            .expect("user added");
    }
    let schedules = track_team(&app, &s, &cal).await;
    let polled = polled_after(&schedules, "team", 0).await;
    let detail = polled.detail.clone().unwrap_or_default();
    assert_eq!(detail.ambiguous, ["`Sam` is the display name of 2 people"]);
    assert!(detail.people.values().all(|p| p.user_id.is_none()));
    assert!(
        detail.warnings.iter().any(|w| w.contains("Mars/Olympus")),
        "{detail:?}"
    );
    let text = ok(&relay(&db, &["schedules", "status"]));
    assert!(
        text.contains("ambiguous:    `Sam` is the display name of 2 people"),
        "{text}"
    );
    assert!(text.contains("read as UTC"), "{text}");
    app.stop().await;
}
db_test!(status_reports_ambiguous_names_and_zones_read_as_utc);
