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
use oncall_relay::schedules::{NewSchedule, Schedule, Schedules, StateStatus, Transport};

use crate::db_test;
use crate::helpers::*;

mod announcements;
mod downloads;
mod management;
mod privacy;
mod reminders;

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
    let mut s = webhook_settings(db, &hook.url);
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

/// Adds a schedule to `schedules`, which must succeed.
/// Tracks `cal` as the schedule `team` (local transport) on `app`; its schedules.
async fn track_team(app: &TestApp, s: &Settings, cal: &CalendarServer) -> Schedules {
    let schedules = schedules_of(app, s);
    add_schedule(
        &schedules,
        "team",
        "Team",
        cal.url.clone(),
        Transport::Local,
        String::new(),
    )
    .await;
    schedules
}

async fn add_schedule(
    schedules: &Schedules,
    key: &str,
    name: &str,
    ical_url: String,
    transport: Transport,
    callback_url: String,
) {
    schedules
        .add(
            NewSchedule {
                key: key.into(),
                name: name.into(),
                ical_url,
                transport,
                callback_url,
            },
            false,
        )
        .await
        .expect("added");
}
