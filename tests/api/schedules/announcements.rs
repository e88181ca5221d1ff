//! On-duty changes announced once, locally and by callback, by one replica or two.

use super::*;

async fn changes_are_announced_once_and_restarts_are_quiet(db: TestDb) {
    let hook = Fake::start().await;
    let callback = Fake::start().await;
    let cal = CalendarServer::start(calendar(&["alice"])).await;
    let s = test_settings(&db, &hook);
    let app = TestApp::spawn(s.clone()).await;
    add_people(&app).await;
    let schedules = schedules_of(&app, &s);
    for (key, transport) in [("team", Transport::Local), ("cb", Transport::Callback)] {
        add_schedule(
            &schedules,
            key,
            "Team",
            cal.url.clone(),
            transport,
            callback.url.clone(),
        )
        .await;
    }

    // The first poll records the current shift without announcing it.
    let first = polled_after(&schedules, "team", 0).await;
    assert_eq!(first.on_duty.as_deref(), Some(&["alice".to_string()][..]));
    polled_after(&schedules, "cb", 0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(hook.requests().is_empty(), "{:?}", hook.requests());
    assert!(callback.requests().is_empty());

    // bob takes over: bob gets one SMS-like notification, the callback one POST.
    cal.set(calendar(&["bob"]));
    let sent = wait_for(Duration::from_secs(10), || async {
        let r = hook.requests();
        (!r.is_empty()).then_some(r)
    })
    .await;
    let posted = wait_for(Duration::from_secs(10), || async {
        let r = callback.requests();
        (!r.is_empty()).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 1, "{:?}", hook.requests());
    assert_eq!(callback.requests().len(), 1);
    let text = String::from_utf8_lossy(&sent[0].body).to_string();
    assert!(text.contains("You are on call for Team until"), "{text}");
    assert!(text.contains("bob@example.com"), "{text}");
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "schedule");

    let body = posted[0].json();
    assert_eq!(body["title"], "-= Duty Status =-");
    assert_eq!(body["message"], "Your duty Team started");
    assert_eq!(body["schedule"], "Team");
    assert_eq!(body["previous"], serde_json::json!(["alice@example.com"]));
    assert_eq!(body["current"], serde_json::json!(["bob@example.com"]));
    assert!(body["shift_end"].is_string() && body["changed_at"].is_string());
    assert!(body["alert_uid"].is_string());
    assert_eq!(body["state"], "on_duty");
    assert_eq!(posted[0].headers["authorization"], "Basic Og==");

    // A broken calendar keeps the state and is shown in the status.
    cal.set("<html>502</html>".into());
    let broken = wait_for(Duration::from_secs(10), || async {
        let s = status(&schedules, "team").await;
        s.last_error.is_some().then_some(s)
    })
    .await;
    assert_eq!(broken.on_duty.as_deref(), Some(&["bob".to_string()][..]));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(callback.requests().len(), 1);

    // A restart announces nothing new.
    cal.set(calendar(&["bob"]));
    app.stop().await;
    let restarted_at = now_ms();
    let app = TestApp::spawn(s.clone()).await;
    let schedules = schedules_of(&app, &s);
    let after = polled_after(&schedules, "team", restarted_at).await;
    polled_after(&schedules, "cb", restarted_at).await;
    assert!(after.last_error.is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(callback.requests().len(), 1);
    app.stop().await;
}
db_test!(changes_are_announced_once_and_restarts_are_quiet);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_announce_each_change_once_on_postgres() {
    let Some(db) = postgres_test_db().await else {
        return;
    };
    let hook = Fake::start().await;
    let callback = Fake::start().await;
    let cal = CalendarServer::start(calendar(&["alice"])).await;
    let mut s = test_settings(&db, &hook);
    s.grafana.oncall.schedules.insert(
        "team".into(),
        oncall_relay::config::ScheduleSettings {
            name: "Team".into(),
            ical_url: cal.url.clone(),
            // The original's key: still understood.
            notify: Some("callback".into()),
            callback_url: callback.url.clone(),
            ..Default::default()
        },
    );
    let a = TestApp::spawn(s.clone()).await;
    add_people(&a).await;
    let b = TestApp::spawn(s.clone()).await;
    let schedules = schedules_of(&a, &s);
    assert_eq!(status(&schedules, "team").await.transport, "callback");
    polled_after(&schedules, "team", 0).await;

    let steps: [&[&str]; 3] = [&["bob"], &["alice", "bob"], &[]];
    for (i, who) in steps.iter().enumerate() {
        cal.set(calendar(who));
        wait_for(Duration::from_secs(10), || async {
            (callback.requests().len() > i).then_some(())
        })
        .await;
        // Both replicas poll several times in this pause.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(callback.requests().len(), i + 1, "step {i}");
    }
    let states: Vec<String> = callback
        .requests()
        .iter()
        .map(|r| r.json()["current"].to_string())
        .collect();
    assert_eq!(
        states,
        [
            r#"["bob@example.com"]"#,
            r#"["alice@example.com","bob@example.com"]"#,
            "[]"
        ]
    );
    assert_eq!(callback.requests()[2].json()["state"], "nobody");
    a.stop().await;
    b.stop().await;
}
