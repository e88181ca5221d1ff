//! Schedule tracking: changes of the on-duty set announced once (local and callback), a
//! broken calendar keeps the state, a restart announces nothing, replicas announce once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use oncall_relay::config::Settings;
use oncall_relay::directory::NewUser;
use oncall_relay::schedules::{NewSchedule, Schedule, Schedules, Transport};

use crate::db_test;
use crate::helpers::*;

/// A calendar server whose body the test changes; honours If-None-Match.
#[derive(Clone)]
pub(crate) struct CalendarServer {
    pub(crate) url: String,
    body: Arc<Mutex<(u64, String)>>,
    /// The `Authorization` header of every request (None: absent).
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

type CalendarState = (Arc<Mutex<(u64, String)>>, Arc<Mutex<Vec<Option<String>>>>);

impl CalendarServer {
    pub(crate) async fn start(body: String) -> CalendarServer {
        let state = Arc::new(Mutex::new((1u64, body)));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/ical", get(serve_calendar))
            .with_state((state.clone(), auth.clone()));
        let addr = serve_loopback(app).await;
        CalendarServer {
            url: format!("http://{addr}/ical"),
            body: state,
            auth,
        }
    }

    /// `scheme://host:port`, without the path.
    fn origin(&self) -> String {
        self.url.trim_end_matches("/ical").to_string()
    }

    fn auth_seen(&self) -> Vec<Option<String>> {
        self.auth.lock().expect("lock").clone()
    }

    fn set(&self, body: String) {
        let mut b = self.body.lock().expect("lock");
        b.0 += 1;
        b.1 = body;
    }
}

async fn serve_calendar(
    State((state, auth)): State<CalendarState>,
    headers: HeaderMap,
) -> axum::response::Response {
    auth.lock().expect("lock").push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    let (version, body) = state.lock().expect("lock").clone();
    let etag = format!("\"v{version}\"");
    if headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
    }
    (StatusCode::OK, [("etag", etag)], body).into_response()
}

fn stamp(offset: chrono::Duration) -> String {
    (chrono::Utc::now() + offset)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// A calendar where each of `who` has a shift from an hour ago to an hour from now.
pub(crate) fn calendar(who: &[&str]) -> String {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n");
    for (i, name) in who.iter().enumerate() {
        s.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:shift-{i}-{name}\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:{name}\r\nEND:VEVENT\r\n",
            stamp(chrono::Duration::hours(-1)),
            stamp(chrono::Duration::hours(1)),
        ));
    }
    s.push_str("END:VCALENDAR\r\n");
    s
}

fn test_settings(db: &TestDb, hook: &Fake) -> Settings {
    let mut s = settings(db);
    use_webhook(&mut s, &hook.url);
    s.grafana.oncall.schedule_poll_interval = Duration::from_millis(100);
    s
}

async fn add_people(app: &TestApp) {
    for (email, username) in [("alice@example.com", "alice"), ("bob@example.com", "bob")] {
        app.directory
            .add(NewUser {
                email: email.into(),
                username: Some(username.into()),
                name: Some(username.into()),
                phone_number: Some("+4930123456".into()),
                ..NewUser::default()
            })
            .await
            .expect("user added");
    }
}

fn schedules_of(app: &TestApp, s: &Settings) -> Schedules {
    Schedules::new(
        app.store.clone(),
        app.directory.clone(),
        Arc::new(s.clone()),
        Arc::new(tokio::sync::Notify::new()),
    )
    .expect("schedules")
}

async fn status(schedules: &Schedules, key: &str) -> Schedule {
    schedules.get(key).await.expect("schedule")
}

/// Waits until a poll that started after now has succeeded.
async fn polled_after(schedules: &Schedules, key: &str, since: i64) -> Schedule {
    wait_for(Duration::from_secs(10), || async {
        let s = status(schedules, key).await;
        s.last_success_at.is_some_and(|t| t > since).then_some(s)
    })
    .await
}

fn now_ms() -> i64 {
    oncall_relay::store::now_ms()
}

async fn changes_are_announced_once_and_restarts_are_quiet(db: Db) {
    let db = TestDb::new(db).await;
    let hook = Fake::start().await;
    let callback = Fake::start().await;
    let cal = CalendarServer::start(calendar(&["alice"])).await;
    let s = test_settings(&db, &hook);
    let app = TestApp::spawn(s.clone()).await;
    add_people(&app).await;
    let schedules = schedules_of(&app, &s);
    for (key, transport) in [("team", Transport::Local), ("cb", Transport::Callback)] {
        schedules
            .add(
                NewSchedule {
                    key: key.into(),
                    name: "Team".into(),
                    ical_url: cal.url.clone(),
                    transport,
                    callback_url: callback.url.clone(),
                },
                false,
            )
            .await
            .expect("added");
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
    if skip_postgres() {
        return;
    }
    let db = TestDb::new(Db::Postgres).await;
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

/// OnCall's and Grafana's tokens go only to their own origins, never to a calendar or a
/// callback URL elsewhere (an admin may add any URL).
async fn tokens_go_only_to_their_own_origin(db: Db) {
    let db = TestDb::new(db).await;
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
        schedules
            .add(
                NewSchedule {
                    key: key.into(),
                    name: key.into(),
                    ical_url,
                    transport: Transport::Callback,
                    callback_url,
                },
                false,
            )
            .await
            .expect("added");
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

async fn reminders_are_sent_once_before_a_shift(db: Db) {
    let db = TestDb::new(db).await;
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
    let schedules = schedules_of(&app, &s);
    schedules
        .add(
            NewSchedule {
                key: "team".into(),
                name: "Team".into(),
                ical_url: cal.url.clone(),
                transport: Transport::Local,
                callback_url: String::new(),
            },
            false,
        )
        .await
        .expect("added");
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

async fn schedules_are_managed_from_the_cli_without_restart(db: Db) {
    let db = TestDb::new(db).await;
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
        schedules
            .add(
                NewSchedule {
                    key: key.into(),
                    name: key.into(),
                    ical_url,
                    transport: Transport::Local,
                    callback_url: String::new(),
                },
                false,
            )
            .await
            .expect("added");
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
