//! Schedules managed from the command line while the service runs.

use super::*;

async fn schedules_are_managed_from_the_cli_without_restart(db: TestDb) {
    let hook = Fake::start().await;
    let cal = CalendarServer::start(calendar(&["zoe"])).await;
    let s = test_settings(&db, &hook);
    let app = TestApp::spawn(s.clone()).await;

    let out = relay(
        &db,
        &[
            "schedules",
            "add",
            "cb",
            "--ical-url",
            &cal.url,
            "--transport",
            "callback",
        ],
    );
    assert!(!out.status.success(), "callback needs a callback URL");
    ok(&relay(
        &db,
        &[
            "schedules",
            "add",
            "team",
            "--ical-url",
            &cal.url,
            "--name",
            "Team",
        ],
    ));
    let out = relay(&db, &["schedules", "add", "team", "--ical-url", &cal.url]);
    assert!(!out.status.success(), "duplicate key refused");
    let list = ok(&relay(&db, &["schedules", "list"]));
    assert!(list.contains("team") && list.contains("cli"), "{list}");

    // The running relay picks it up and reports the unknown person.
    let schedules = schedules_of(&app, &s);
    polled_after(&schedules, "team", 0).await;
    let status = ok(&relay(&db, &["schedules", "status"]));
    assert!(status.contains("on duty:      zoe"), "{status}");
    assert!(status.contains("not in the directory: zoe"), "{status}");
    assert!(status.contains("last error:   none"), "{status}");

    ok(&relay(&db, &["schedules", "remove", "team"]));
    let list = ok(&relay(&db, &["schedules", "list", "--json"]));
    assert_eq!(list.trim(), "[]");
    assert!(hook.requests().is_empty());
    app.stop().await;
}
db_test!(schedules_are_managed_from_the_cli_without_restart);
