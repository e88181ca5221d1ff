//! Reminders before a shift.

use super::*;

async fn reminders_are_sent_once_before_a_shift(db: TestDb) {
    let hook = Fake::start().await;
    let upcoming = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:soon\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:bob\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        stamp(chrono::Duration::minutes(30)),
        stamp(chrono::Duration::hours(8)),
    );
    let cal = CalendarServer::start(upcoming).await;
    let mut s = test_settings(&db, &hook);
    s.grafana.oncall.schedule_reminder = Duration::from_secs(3600);
    let app = TestApp::spawn(s.clone()).await;
    add_people(&app).await;
    let schedules = track_team(&app, &s, &cal).await;
    let sent = wait_for(Duration::from_secs(10), || async {
        let r = hook.requests();
        (!r.is_empty()).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(hook.requests().len(), 1, "one reminder despite many polls");
    let text = String::from_utf8_lossy(&sent[0].body).to_string();
    assert!(
        text.contains("Your on-call shift for Team starts at"),
        "{text}"
    );
    assert!(text.contains("bob@example.com"), "{text}");
    // Nobody is on duty yet: nothing else was announced.
    let st = status(&schedules, "team").await;
    assert_eq!(st.on_duty.as_deref(), Some(&[][..]));
    app.stop().await;
}
db_test!(reminders_are_sent_once_before_a_shift);
