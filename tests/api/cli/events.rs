//! `events list` and `notify test`: what was sent, and a test walk of the real route.

use std::process::Output;

use super::write_config;
use crate::db_test;
use crate::helpers::*;

async fn events_list_filters_by_user_and_status(db: TestDb) {
    let mut s = settings(&db);
    s.queue.deliver = false;
    let app = TestApp::spawn(s).await;
    app.add_user("a@example.com", Some("+4930123456")).await;
    app.add_user("b@example.com", Some("+4930123457")).await;
    for email in ["a@example.com", "b@example.com", "a@example.com"] {
        app.send_ok("/api/v1/send_sms", email, "x").await;
    }
    app.stop().await;
    let all = relay_json(&db, &["events", "list", "--json"]);
    assert_eq!(all.as_array().expect("list").len(), 3);
    // One vocabulary with templates and the stdout backend: `kind` and `phone`.
    assert_eq!(all[0]["kind"], "sms");
    assert!(all[0]["phone"].is_string(), "{}", all[0]);
    assert!(all[0].get("phone_number").is_none(), "{}", all[0]);
    let a = relay_json(
        &db,
        &[
            "events",
            "list",
            "--json",
            "--user",
            "A@example.com",
            "--status",
            "queued",
            "--since",
            "1h",
        ],
    );
    assert_eq!(a.as_array().expect("list").len(), 2);
    let none = relay_json(&db, &["events", "list", "--json", "--status", "delivered"]);
    assert_eq!(none.as_array().expect("list").len(), 0);
    let out = relay(&db, &["events", "list", "--status", "lost"]);
    assert!(!out.status.success());
}
db_test!(events_list_filters_by_user_and_status);

async fn notify_test_walks_the_real_route(db: TestDb) {
    let (broken, working) = (Fake::start().await, Fake::start().await);
    broken.script(&[], Reply::Status(500));
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        &dir,
        &format!(
            "plugin:\n  backends:\n    gw:\n      type: webhook\n      url: '{}'\n    chat:\n      type: webhook\n      url: '{}'\n  routes:\n    sms:\n      - backend: gw\n      - backend: chat\n",
            broken.url, working.url
        ),
    );
    users_add(&db, "ann@example.com", &["--phone", "+4930123456"]);
    let args: Vec<String> = ["--config", &config]
        .into_iter()
        .chain(notify_test_sms("ann@example.com"))
        .map(str::to_string)
        .collect();
    let db_args = db.cli_args();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
            .args(db_args)
            .args(args)
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let text = ok(&out);
    assert!(text.contains("fallback via gw"), "{text}");
    assert!(text.contains("delivered via chat"), "{text}");
    assert_eq!(broken.requests().len(), 1, "each step tried once");
    assert_eq!(working.requests().len(), 1);
    assert!(
        working.requests()[0].json()["message"]
            .as_str()
            .expect("message")
            .contains("Test sms")
    );
    let events = relay_json(&db, &["events", "list", "--json"]);
    assert_eq!(events[0]["status"], "delivered");
    assert_eq!(events[0]["backend"], "chat");
}
db_test!(notify_test_walks_the_real_route);

/// `notify test --user ann@example.com --kind {kind}`: its output and its stderr.
fn notify_test(db: &TestDb, kind: &str) -> (Output, String) {
    let out = relay(
        db,
        &[
            "notify",
            "test",
            "--user",
            "ann@example.com",
            "--kind",
            kind,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

/// `users update ann@example.com {args}`, which must succeed.
fn update_ann(db: &TestDb, args: &[&str]) {
    let mut all = vec!["users", "update", "ann@example.com"];
    all.extend_from_slice(args);
    ok(&relay(db, &all));
}

async fn notify_test_and_contacts_say_what_is_wrong(db: TestDb) {
    let out = relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "ann@example.com",
            "--contact",
            "route=nosuch",
        ],
    );
    assert!(!out.status.success(), "route naming no backend refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch") && err.contains("stdout"), "{err}");
    users_add(&db, "ann@example.com", &["--inactive"]);
    let out = relay(
        &db,
        &[
            "users",
            "update",
            "ann@example.com",
            "--contact",
            "route=nosuch",
        ],
    );
    assert!(!out.status.success(), "update checks the route too");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    update_ann(&db, &["--contact", "route=stdout"]);

    for (kind, why) in [("call", "inactive"), ("sms", "inactive")] {
        let (_, err) = notify_test(&db, kind);
        assert!(
            err.contains("warning") && err.contains(why) && err.contains("number-not-verified"),
            "{kind}: {err}"
        );
    }
    update_ann(&db, &["--active", "true"]);
    let (_, err) = notify_test(&db, "call");
    assert!(err.contains("no phone number"), "{err}");
    update_ann(&db, &["--phone", "+4930123456"]);
    let (out, err) = notify_test(&db, "call");
    assert!(out.status.success() && !err.contains("warning"), "{err}");
}
db_test!(notify_test_and_contacts_say_what_is_wrong);
