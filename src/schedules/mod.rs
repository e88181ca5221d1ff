//! Tracking OnCall schedules: who is on duty now, and telling them when that changes.
//!
//! Every poll fetches each schedule's iCal export, computes the on-duty set at this moment
//! and, when it differs from the stored one, moves the stored state with one conditional
//! UPDATE (`... WHERE on_duty = $old`) in the same transaction that queues the
//! announcements. With several replicas only the one whose UPDATE matches announces; a crash
//! between "noticed" and "queued" is impossible. The first poll of a schedule only records.
//!
//! The `callback` transport's POSTs are rows of `schedule_callbacks`, queued in that same
//! transaction and delivered by the poller with backoff: durable like the notification
//! queue, without needing a configured backend per callback URL.

pub mod ical;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::directory::{Directory, Snapshot};
use crate::notify::{self, Kind, NewNotification};
use crate::store::{Store, StoreError, format_ms, now_ms};
use crate::telemetry::redact_url;

/// Largest iCal export accepted.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Timeout of one iCal fetch or callback POST.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// Callback attempts before giving up.
const CALLBACK_ATTEMPTS: i64 = 12;
/// Lease of a claimed callback: another replica may retry it after this.
const CALLBACK_LEASE_MS: i64 = 60_000;
/// The callback's title and message, kept as the original sent them (users point the
/// callback at an OnCall formatted-webhook integration keyed on them).
const CALLBACK_TITLE: &str = "-= Duty Status =-";

/// Errors of the schedules module.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A field failed validation.
    #[error("{0}")]
    Invalid(String),
    /// No schedule has this key.
    #[error("no schedule `{0}`")]
    NotFound(String),
    /// The iCal export could not be fetched.
    #[error("fetch failed: {0}")]
    Fetch(String),
    /// The iCal export is not a usable calendar.
    #[error("{0}")]
    Calendar(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The announcements could not be queued.
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
}

impl From<sqlx::Error> for ScheduleError {
    fn from(e: sqlx::Error) -> Self {
        ScheduleError::Store(StoreError::Query(e))
    }
}

/// How a schedule announces changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A `schedule` notification to each person who went on duty.
    Local,
    /// A JSON POST to the schedule's callback URL.
    Callback,
}

impl Transport {
    /// Parses `local` or `callback`.
    pub fn parse(raw: &str) -> Result<Transport, ScheduleError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "local" => Ok(Transport::Local),
            "callback" => Ok(Transport::Callback),
            other => Err(ScheduleError::Invalid(format!(
                "transport must be `local` or `callback`, not `{other}`"
            ))),
        }
    }

    /// The configured transport: `transport` wins over `notify` (the key the original's
    /// code read); neither means `local`.
    pub fn from_settings(s: &crate::config::ScheduleSettings) -> Result<Transport, ScheduleError> {
        let raw = s
            .transport
            .as_deref()
            .or(s.notify.as_deref())
            .unwrap_or("local");
        Transport::parse(raw)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Local => "local",
            Transport::Callback => "callback",
        }
    }
}

/// A schedule to add (from the configuration or the CLI).
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Unique key (the configuration's map key).
    pub key: String,
    /// Display name.
    pub name: String,
    /// iCal URL or path under `grafana.oncall.url`.
    pub ical_url: String,
    /// How changes are announced.
    pub transport: Transport,
    /// Where `callback` posts.
    pub callback_url: String,
}

/// A failed fetch, without the calendar's path and query (its token) in the text, which is
/// logged and shown in the status.
fn fetch_failed(url: &str, e: reqwest::Error) -> ScheduleError {
    ScheduleError::Fetch(format!(
        "{}: {}",
        redact_url(url),
        crate::notify::http::error_chain(&e.without_url())
    ))
}

/// Whether `url` has the scheme, host and port of `base` (default ports made explicit).
fn same_origin(url: &str, base: &str) -> bool {
    match (
        reqwest::Url::parse(url.trim()),
        reqwest::Url::parse(base.trim()),
    ) {
        (Ok(a), Ok(b)) => {
            matches!(a.scheme(), "http" | "https")
                && a.scheme() == b.scheme()
                && a.host() == b.host()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

impl NewSchedule {
    /// Checks what a schedule needs before it is stored.
    pub fn check(&self) -> Result<(), ScheduleError> {
        let key = self.key.trim();
        if key.is_empty() || self.ical_url.trim().is_empty() {
            return Err(ScheduleError::Invalid(
                "a schedule needs a key and an ical_url".into(),
            ));
        }
        if self.transport == Transport::Callback && self.callback_url.trim().is_empty() {
            return Err(ScheduleError::Invalid(format!(
                "schedule `{key}`: transport `callback` needs a callback_url"
            )));
        }
        Ok(())
    }
}

/// The schedules `grafana.oncall.schedules` declares, each checked.
pub fn configured(settings: &crate::config::Settings) -> Result<Vec<NewSchedule>, ScheduleError> {
    settings
        .grafana
        .oncall
        .schedules
        .iter()
        .map(|(key, s)| {
            let new = NewSchedule {
                key: key.clone(),
                name: s.name.clone(),
                ical_url: s.ical_url.clone(),
                transport: Transport::from_settings(s).map_err(|e| match e {
                    ScheduleError::Invalid(m) => ScheduleError::Invalid(format!(
                        "option `grafana.oncall.schedules.{key}`: {m}"
                    )),
                    other => other,
                })?,
                callback_url: s.callback_url.clone(),
            };
            new.check()?;
            Ok(new)
        })
        .collect()
}

/// One person on duty, as stored in the state's details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDutyPerson {
    /// Stable key: what the calendar says (lower-case email, else the SUMMARY name), so a
    /// directory change or a replica with an older directory never looks like a shift change.
    pub key: String,
    /// Directory email, when known.
    pub email: Option<String>,
    /// Directory public id, when known.
    pub user_id: Option<String>,
    /// Display name.
    pub name: String,
    /// End of the current shift (Unix ms).
    pub shift_end: i64,
}

/// Who is on duty at a moment, resolved against the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDuty {
    /// Known people, by key.
    pub people: BTreeMap<String, OnDutyPerson>,
    /// Calendar names that match nobody in the directory (also in `people`, so a change
    /// of an unknown person is still a change).
    pub unknown: Vec<String>,
}

impl OnDuty {
    /// The sorted keys: the state compared between polls.
    pub fn keys(&self) -> Vec<String> {
        self.people.keys().cloned().collect()
    }
}

/// Resolves shifts to people: ATTENDEE/ORGANIZER email, else SUMMARY as username or name.
pub fn resolve(shifts: &[ical::Shift], directory: &Snapshot) -> OnDuty {
    let mut out = OnDuty::default();
    for shift in shifts {
        // (key, directory user)
        let mut found = Vec::new();
        for email in &shift.emails {
            let user = directory.by_email(email);
            if user.is_none() {
                out.unknown.push(email.clone());
            }
            found.push((email.clone(), user, email.clone()));
        }
        if shift.emails.is_empty() && !shift.summary.is_empty() {
            // OnCall's exports put the username in SUMMARY, sometimes after a `[L1] ` tag.
            let text = shift.summary.as_str();
            let bare = text
                .strip_prefix('[')
                .and_then(|rest| rest.split_once(']'))
                .map_or(text, |(_, rest)| rest.trim());
            let user = directory.users().iter().find(|u| {
                [text, bare]
                    .iter()
                    .any(|t| u.username.eq_ignore_ascii_case(t) || u.name.eq_ignore_ascii_case(t))
            });
            if user.is_none() {
                out.unknown.push(text.to_string());
            }
            found.push((bare.to_lowercase(), user, bare.to_string()));
        }
        for (key, user, label) in found {
            let entry = out.people.entry(key.clone()).or_insert(OnDutyPerson {
                key,
                email: user.map(|u| u.email.clone()),
                user_id: user.map(|u| u.id.clone()),
                name: user.map_or(label, |u| {
                    if u.name.is_empty() {
                        u.email.clone()
                    } else {
                        u.name.clone()
                    }
                }),
                shift_end: shift.end_ms,
            });
            // Back-to-back or overlapping shifts of one person: the latest end counts.
            entry.shift_end = entry.shift_end.max(shift.end_ms);
        }
    }
    out.unknown.sort();
    out.unknown.dedup();
    out
}

impl OnDuty {
    /// Who is on duty for humans and callbacks: directory emails where known, else the
    /// calendar's name.
    pub fn labels(&self) -> Vec<String> {
        self.people
            .values()
            .map(|p| p.email.clone().unwrap_or_else(|| p.key.clone()))
            .collect()
    }
}

/// A schedule as stored, with its tracking status.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    /// Row id.
    pub id: i64,
    /// Unique key.
    pub key: String,
    /// Configured name.
    pub name: String,
    /// iCal URL or path.
    pub ical_url: String,
    /// `local` or `callback`.
    pub transport: String,
    /// Where `callback` posts.
    pub callback_url: String,
    /// `config` or `cli`.
    pub source: String,
    /// The calendar's own name, once fetched.
    pub calendar_name: Option<String>,
    /// Keys of the people on duty (None before the first successful poll).
    pub on_duty: Option<Vec<String>>,
    /// Details of the people on duty.
    pub detail: Option<OnDuty>,
    /// Last change of the on-duty set (Unix ms).
    pub changed_at: Option<i64>,
    /// Last successful poll (Unix ms).
    pub last_success_at: Option<i64>,
    /// Last fetch or parse error.
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_at: Option<i64>,
}

impl Schedule {
    /// The name shown: the calendar's own, else the configured one.
    pub fn display_name(&self) -> &str {
        self.calendar_name.as_deref().unwrap_or(&self.name)
    }
}

const COLUMNS: &str = "id, key, name, ical_url, transport, callback_url, source, calendar_name, \
                       on_duty, on_duty_detail, changed_at, last_success_at, last_error, last_error_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Schedule, sqlx::Error> {
    let on_duty: Option<String> = r.try_get("on_duty")?;
    let detail: Option<String> = r.try_get("on_duty_detail")?;
    Ok(Schedule {
        id: r.try_get("id")?,
        key: r.try_get("key")?,
        name: r.try_get("name")?,
        ical_url: r.try_get("ical_url")?,
        transport: r.try_get("transport")?,
        callback_url: r.try_get("callback_url")?,
        source: r.try_get("source")?,
        calendar_name: r.try_get("calendar_name")?,
        on_duty: on_duty.and_then(|s| serde_json::from_str(&s).ok()),
        detail: detail.and_then(|s| serde_json::from_str(&s).ok()),
        changed_at: r.try_get("changed_at")?,
        last_success_at: r.try_get("last_success_at")?,
        last_error: r.try_get("last_error")?,
        last_error_at: r.try_get("last_error_at")?,
    })
}

/// What a 304 answer reuses: the last body's validators and the parsed calendar.
#[derive(Clone)]
struct Cached {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    calendar: Arc<ical::Calendar>,
}

/// Schedules: storage, polling and announcements.
#[derive(Clone)]
pub struct Schedules {
    store: Store,
    directory: Directory,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
    client: reqwest::Client,
    cache: Arc<tokio::sync::Mutex<HashMap<i64, Cached>>>,
}

impl std::fmt::Debug for Schedules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedules").finish_non_exhaustive()
    }
}

impl Schedules {
    /// Schedule tracking on `store`; `wake` nudges the delivery workers.
    pub fn new(
        store: Store,
        directory: Directory,
        settings: Arc<Settings>,
        wake: Arc<Notify>,
    ) -> Result<Schedules, ScheduleError> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ScheduleError::Fetch(e.to_string()))?;
        Ok(Schedules {
            store,
            directory,
            settings,
            wake,
            client,
            cache: Arc::default(),
        })
    }

    /// Adds a schedule; with `from_config`, an existing one with the key is updated instead.
    pub async fn add(
        &self,
        new: NewSchedule,
        from_config: bool,
    ) -> Result<Schedule, ScheduleError> {
        new.check()?;
        let key = new.key.trim().to_string();
        let name = if new.name.trim().is_empty() {
            key.clone()
        } else {
            new.name.trim().to_string()
        };
        let source = if from_config { "config" } else { "cli" };
        let conflict = if from_config {
            "ON CONFLICT (key) DO UPDATE SET name = excluded.name, ical_url = excluded.ical_url, \
             transport = excluded.transport, callback_url = excluded.callback_url, source = excluded.source"
        } else {
            "ON CONFLICT (key) DO NOTHING"
        };
        let inserted = {
            let _guard = self.store.write_guard().await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO schedules (key, name, ical_url, transport, callback_url, source, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) {conflict}"
            )))
            .bind(key.clone())
            .bind(name)
            .bind(new.ical_url.trim().to_string())
            .bind(new.transport.as_str())
            .bind(new.callback_url.trim().to_string())
            .bind(source)
            .bind(now_ms())
            .execute(self.store.pool())
            .await?
            .rows_affected()
        };
        if inserted == 0 {
            return Err(ScheduleError::Invalid(format!(
                "schedule `{key}` exists already"
            )));
        }
        self.get(&key).await
    }

    /// Copies `grafana.oncall.schedules` into the table (start-up), and drops schedules that
    /// came from the configuration and are no longer in it (CLI-added ones stay).
    pub async fn sync_config(&self) -> Result<(), ScheduleError> {
        let configured = &self.settings.grafana.oncall.schedules;
        for stale in self.list().await? {
            if stale.source == "config" && !configured.contains_key(&stale.key) {
                tracing::info!(schedule = %stale.key, "schedule no longer configured: removed");
                self.remove(&stale.key).await?;
            }
        }
        for new in self::configured(&self.settings)? {
            self.add(new, true).await?;
        }
        Ok(())
    }

    /// The schedule with this key.
    pub async fn get(&self, key: &str) -> Result<Schedule, ScheduleError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE key = $1"
        )))
        .bind(key.trim().to_string())
        .fetch_optional(self.store.pool())
        .await?;
        match row {
            Some(r) => Ok(from_row(&r)?),
            None => Err(ScheduleError::NotFound(key.to_string())),
        }
    }

    /// Every schedule.
    pub async fn list(&self) -> Result<Vec<Schedule>, ScheduleError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules ORDER BY key"
        )))
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Removes a schedule and its pending callbacks.
    pub async fn remove(&self, key: &str) -> Result<Schedule, ScheduleError> {
        let schedule = self.get(key).await?;
        let mut tx = self.store.begin_write().await?;
        for table in ["schedule_callbacks", "schedule_reminders"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE schedule_id = $1"
            )))
            .bind(schedule.id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM schedules WHERE id = $1")
            .bind(schedule.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.cache.lock().await.remove(&schedule.id);
        Ok(schedule)
    }

    fn full_url(&self, ical_url: &str) -> String {
        if ical_url.starts_with("http://") || ical_url.starts_with("https://") {
            return ical_url.to_string();
        }
        let base = self.settings.grafana.oncall.url.trim_end_matches('/');
        format!("{base}/{}", ical_url.trim_start_matches('/'))
    }

    /// Fetches the calendar, reusing the cached one on 304.
    async fn fetch(&self, schedule: &Schedule) -> Result<Arc<ical::Calendar>, ScheduleError> {
        let url = self.full_url(&schedule.ical_url);
        let cached = self
            .cache
            .lock()
            .await
            .get(&schedule.id)
            .cloned()
            .filter(|c| c.url == url);
        let mut request = self.client.get(&url);
        let headers = self
            .settings
            .grafana
            .oncall
            .schedules
            .get(&schedule.key)
            .map(|s| s.headers.clone())
            .unwrap_or_default();
        let token = self.settings.grafana.oncall.header_token.expose();
        // The token is OnCall's: a calendar elsewhere (an admin may add any URL) never sees it.
        if !token.is_empty()
            && same_origin(&url, &self.settings.grafana.oncall.url)
            && !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
        {
            request = request.header("Authorization", token);
        }
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        if let Some(c) = &cached {
            if let Some(etag) = &c.etag {
                request = request.header("If-None-Match", etag.as_str());
            }
            if let Some(lm) = &c.last_modified {
                request = request.header("If-Modified-Since", lm.as_str());
            }
        }
        let mut response = request.send().await.map_err(|e| fetch_failed(&url, e))?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED
            && let Some(c) = cached
        {
            return Ok(c.calendar);
        }
        if !response.status().is_success() {
            return Err(ScheduleError::Fetch(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_BODY)
        {
            return Err(ScheduleError::Fetch(format!(
                "calendar larger than {MAX_BODY} bytes"
            )));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let last_modified = header("last-modified");
        // Read in chunks so a lying or absent Content-Length cannot exceed the cap.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fetch_failed(&url, e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ScheduleError::Fetch(format!(
                    "calendar larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body)
            .map_err(|_| ScheduleError::Calendar("calendar is not UTF-8".into()))?;
        let calendar = Arc::new(ical::parse(&text)?);
        for w in &calendar.warnings {
            tracing::warn!(schedule = %schedule.key, warning = %w, "schedule calendar");
        }
        self.cache.lock().await.insert(
            schedule.id,
            Cached {
                url,
                etag,
                last_modified,
                calendar: calendar.clone(),
            },
        );
        Ok(calendar)
    }

    /// Polls one schedule; returns whether this process announced a change.
    pub async fn poll(&self, schedule: &Schedule) -> Result<bool, ScheduleError> {
        let announced = self.poll_state(schedule).await?;
        let ahead = self.settings.grafana.oncall.schedule_reminder;
        if !ahead.is_zero() && schedule.transport == Transport::Local.as_str() {
            let cached = self
                .cache
                .lock()
                .await
                .get(&schedule.id)
                .map(|c| c.calendar.clone());
            if let Some(calendar) = cached {
                self.remind(schedule, &calendar, ahead).await?;
            }
        }
        Ok(announced)
    }

    /// Queues one reminder per person and upcoming shift starting within `ahead`.
    async fn remind(
        &self,
        schedule: &Schedule,
        calendar: &ical::Calendar,
        ahead: Duration,
    ) -> Result<(), ScheduleError> {
        let now = now_ms();
        let upcoming: Vec<ical::Shift> = calendar
            .shifts(now, now + ahead.as_millis() as i64)
            .into_iter()
            .filter(|s| s.start_ms > now)
            .collect();
        if upcoming.is_empty() {
            return Ok(());
        }
        let snapshot = self.directory.snapshot();
        let name = schedule.display_name().to_string();
        for shift in &upcoming {
            let people = resolve(std::slice::from_ref(shift), &snapshot);
            for person in people.people.values() {
                let Some(user) = person.user_id.as_deref().and_then(|id| snapshot.by_id(id)) else {
                    continue;
                };
                let mut tx = self.store.begin_write().await?;
                // The key makes the reminder once-only across polls and replicas.
                let inserted = sqlx::query(
                    "INSERT INTO schedule_reminders (schedule_id, person_key, shift_start, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(schedule.id)
                .bind(person.key.clone())
                .bind(shift.start_ms)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    let mut n = NewNotification::to_user(
                        Kind::Schedule,
                        user,
                        format!(
                            "Your on-call shift for {name} starts at {} (until {})",
                            format_ms(shift.start_ms),
                            format_ms(shift.end_ms)
                        ),
                    );
                    n.payload = Some(serde_json::json!({
                        "title": format!("On call soon: {name}"),
                        "schedule": name,
                        "reminder": true,
                        "shift_start": format_ms(shift.start_ms),
                        "shift_end": format_ms(shift.end_ms),
                    }));
                    notify::enqueue_in(&mut tx, &[n], now).await?;
                }
                tx.commit().await?;
                if inserted == 1 {
                    self.wake.notify_one();
                }
            }
        }
        Ok(())
    }

    /// Fetches, evaluates and moves the stored state; returns whether this process
    /// announced a change.
    async fn poll_state(&self, schedule: &Schedule) -> Result<bool, ScheduleError> {
        let calendar = match self.fetch(schedule).await {
            Ok(c) => c,
            Err(e) => {
                // Keep the last known state: a failed fetch is never a change.
                tracing::warn!(schedule = %schedule.key, error = %e, "schedule poll failed");
                let now = now_ms();
                let _guard = self.store.write_guard().await;
                sqlx::query(
                    "UPDATE schedules SET last_error = $1, last_error_at = $2 WHERE id = $3",
                )
                .bind(e.to_string())
                .bind(now)
                .bind(schedule.id)
                .execute(self.store.pool())
                .await?;
                return Err(e);
            }
        };
        // Evaluated after the fetch: a replica whose evaluation is older than the stored
        // change (`changed_at`) must not move the state back (see the UPDATEs below).
        let now = now_ms();
        let on_duty = resolve(&calendar.at(now), &self.directory.snapshot());
        // Names and emails are personal data: the count at warn, who at debug.
        if !on_duty.unknown.is_empty() {
            tracing::warn!(schedule = %schedule.key, count = on_duty.unknown.len(), "on-duty people not in the directory");
        }
        for unknown in &on_duty.unknown {
            tracing::debug!(schedule = %schedule.key, person = %unknown, "on-duty person not in the directory");
        }
        let keys = serde_json::to_string(&on_duty.keys()).unwrap_or_else(|_| "[]".into());
        let detail = serde_json::to_string(&on_duty).unwrap_or_else(|_| "{}".into());
        let mut tx = self.store.begin_write().await?;
        // Refresh the stored state first: another replica may have moved it since `schedule`
        // was read.
        let current =
            sqlx::query("SELECT on_duty, on_duty_detail, changed_at FROM schedules WHERE id = $1")
                .bind(schedule.id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else {
            return Ok(false);
        };
        let previous: Option<String> = current.try_get("on_duty")?;
        let previous_detail: Option<OnDuty> = current
            .try_get::<Option<String>, _>("on_duty_detail")?
            .and_then(|d| serde_json::from_str(&d).ok());
        let changed_at: Option<i64> = current.try_get("changed_at")?;
        if changed_at.is_some_and(|t| t > now) {
            // Another replica already applied a newer observation.
            return Ok(false);
        }
        let calendar_name = calendar.name.clone();
        if previous.as_deref() == Some(keys.as_str()) || previous.is_none() {
            // Unchanged, or the first poll: record without announcing. Conditional too, so a
            // replica that read the state before another one moved it cannot move it back.
            sqlx::query(
                "UPDATE schedules SET on_duty = $1, on_duty_detail = $2, calendar_name = $3, \
                 last_success_at = $4, last_error = NULL, \
                 changed_at = CASE WHEN on_duty IS NULL THEN $4 ELSE changed_at END \
                 WHERE id = $5 AND (on_duty IS NULL OR on_duty = $1)",
            )
            .bind(keys)
            .bind(detail)
            .bind(calendar_name)
            .bind(now)
            .bind(schedule.id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(false);
        }
        let previous = previous.unwrap_or_default();
        let moved = sqlx::query(
            "UPDATE schedules SET on_duty = $1, on_duty_detail = $2, calendar_name = $3, \
             last_success_at = $4, last_error = NULL, changed_at = $4 \
             WHERE id = $5 AND on_duty = $6 AND (changed_at IS NULL OR changed_at <= $4)",
        )
        .bind(keys.clone())
        .bind(detail)
        .bind(calendar_name.clone())
        .bind(now)
        .bind(schedule.id)
        .bind(previous.clone())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            // Another replica announced it.
            tx.commit().await?;
            return Ok(false);
        }
        let previous_keys: Vec<String> = serde_json::from_str(&previous).unwrap_or_default();
        let previous_labels: Vec<String> = previous_detail
            .as_ref()
            .filter(|d| d.keys() == previous_keys)
            .map_or_else(|| previous_keys.clone(), OnDuty::labels);
        let name = calendar_name.unwrap_or_else(|| schedule.name.clone());
        let arrived: Vec<&OnDutyPerson> = on_duty
            .people
            .values()
            .filter(|p| !previous_keys.contains(&p.key))
            .collect();
        tracing::info!(schedule = %schedule.key, previous = previous_keys.len(), current = on_duty.people.len(), "on-duty change");
        tracing::debug!(schedule = %schedule.key, previous = ?previous_keys, current = ?on_duty.keys(), "on-duty change");
        match Transport::parse(&schedule.transport)? {
            Transport::Local => {
                let snapshot = self.directory.snapshot();
                let items: Vec<NewNotification> = arrived
                    .iter()
                    .filter_map(|p| {
                        let user = p.user_id.as_deref().and_then(|id| snapshot.by_id(id))?;
                        Some((user, p.shift_end))
                    })
                    .map(|(u, end)| {
                        let mut n = NewNotification::to_user(
                            Kind::Schedule,
                            u,
                            format!("You are on call for {name} until {}", format_ms(end)),
                        );
                        n.payload = Some(serde_json::json!({
                            "title": format!("On call: {name}"),
                            "schedule": name,
                            "shift_end": format_ms(end),
                        }));
                        n
                    })
                    .collect();
                notify::enqueue_in(&mut tx, &items, now).await?;
            }
            Transport::Callback => {
                let shift_end = on_duty.people.values().map(|p| p.shift_end).min();
                let payload = serde_json::json!({
                    "title": CALLBACK_TITLE,
                    "message": format!("Your duty {name} started"),
                    "schedule": name,
                    "previous": previous_labels,
                    "current": on_duty.labels(),
                    "changed_at": format_ms(now),
                    "shift_end": shift_end.map(format_ms),
                    "alert_uid": format!("schedule-{}-{now}", schedule.key),
                    "state": if on_duty.people.is_empty() { "nobody" } else { "on_duty" },
                });
                sqlx::query(
                    "INSERT INTO schedule_callbacks (schedule_id, url, payload, next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(schedule.id)
                .bind(schedule.callback_url.clone())
                .bind(payload.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(true)
    }

    /// Polls every schedule once.
    pub async fn poll_all(&self) -> Result<(), ScheduleError> {
        for schedule in self.list().await? {
            // One broken schedule must not stop the others; its error is stored.
            if let Err(e) = self.poll(&schedule).await
                && !matches!(e, ScheduleError::Fetch(_) | ScheduleError::Calendar(_))
            {
                tracing::warn!(schedule = %schedule.key, error = %e, "schedule poll failed");
            }
        }
        Ok(())
    }

    /// Delivers due callbacks; returns how many were delivered.
    pub async fn deliver_callbacks(&self) -> Result<usize, ScheduleError> {
        let mut delivered = 0;
        loop {
            let now = now_ms();
            // Claim one due row with a lease: a conditional UPDATE, so one replica sends it.
            let claimed = {
                let _guard = self.store.write_guard().await;
                sqlx::query(
                    "UPDATE schedule_callbacks SET attempts = attempts + 1, next_attempt_at = $1 \
                     WHERE id = (SELECT id FROM schedule_callbacks WHERE delivered_at IS NULL \
                     AND next_attempt_at <= $2 AND attempts < $3 ORDER BY id LIMIT 1) \
                     AND next_attempt_at <= $2 RETURNING id, url, payload, attempts",
                )
                .bind(now + CALLBACK_LEASE_MS)
                .bind(now)
                .bind(CALLBACK_ATTEMPTS)
                .fetch_optional(self.store.pool())
                .await?
            };
            let Some(row) = claimed else {
                return Ok(delivered);
            };
            let id: i64 = row.try_get("id")?;
            let url: String = row.try_get("url")?;
            let payload: String = row.try_get("payload")?;
            let attempts: i64 = row.try_get("attempts")?;
            let token = self.settings.grafana.header_token.expose();
            // The token is Grafana's: a callback URL elsewhere gets the empty credentials the
            // original sent without a token.
            let auth = if token.is_empty() || !same_origin(&url, &self.settings.grafana.url) {
                "Basic Og=="
            } else {
                token
            };
            let result = self
                .client
                .post(&url)
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .body(payload)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "{}: {}",
                        redact_url(&url),
                        crate::notify::http::error_chain(&e.without_url())
                    )
                })
                .and_then(|r| {
                    if r.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("HTTP {}", r.status()))
                    }
                });
            let _guard = self.store.write_guard().await;
            match result {
                Ok(()) => {
                    delivered += 1;
                    sqlx::query("UPDATE schedule_callbacks SET delivered_at = $1 WHERE id = $2")
                        .bind(now_ms())
                        .bind(id)
                        .execute(self.store.pool())
                        .await?;
                }
                Err(e) => {
                    tracing::warn!(callback = id, attempt = attempts, error = %e, "schedule callback failed");
                    // Exponential backoff: 1 s, 2 s, 4 s … capped at 10 min.
                    let delay = 1000i64 << attempts.clamp(0, 10);
                    sqlx::query(
                        "UPDATE schedule_callbacks SET next_attempt_at = $1, last_error = $2 WHERE id = $3",
                    )
                    .bind(now_ms() + delay.min(600_000))
                    .bind(e)
                    .bind(id)
                    .execute(self.store.pool())
                    .await?;
                }
            }
        }
    }

    /// Polls every `grafana.oncall.schedule_poll_interval` and delivers callbacks until
    /// shutdown.
    pub fn spawn_poller(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let interval = self
                .settings
                .grafana
                .oncall
                .schedule_poll_interval
                .max(Duration::from_millis(10));
            loop {
                let round = async {
                    if let Err(e) = self.poll_all().await {
                        tracing::warn!(error = %e, "schedule polling failed");
                    }
                    if let Err(e) = self.deliver_callbacks().await {
                        tracing::warn!(error = %e, "schedule callbacks failed");
                    }
                };
                // A slow calendar server must not hold up shutdown; dropping a round
                // mid-way rolls its transaction back, and a claimed callback is retried
                // when its lease runs out.
                tokio::select! {
                    _ = round => {}
                    _ = shutdown.cancelled() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScheduleSettings;

    #[test]
    fn schedules_transport_key_wins_over_notify() {
        let mut s = ScheduleSettings {
            notify: Some("callback".into()),
            ..Default::default()
        };
        assert_eq!(Transport::from_settings(&s).ok(), Some(Transport::Callback));
        s.transport = Some("local".into());
        assert_eq!(Transport::from_settings(&s).ok(), Some(Transport::Local));
        s.transport = None;
        s.notify = None;
        assert_eq!(Transport::from_settings(&s).ok(), Some(Transport::Local));
        s.transport = Some("pager".into());
        assert!(Transport::from_settings(&s).is_err());
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let base = "https://oncall.example.com/oncall/";
        assert!(same_origin(
            "https://oncall.example.com/api/ical?token=x",
            base
        ));
        assert!(same_origin("https://ONCALL.example.com:443/x", base));
        assert!(!same_origin("http://oncall.example.com/x", base));
        assert!(!same_origin("https://oncall.example.com:8443/x", base));
        assert!(!same_origin("https://oncall.example.com.evil.test/x", base));
        assert!(!same_origin(
            "https://evil.test/?https://oncall.example.com",
            base
        ));
        assert!(!same_origin("https://oncall.example.com/x", ""));
    }

    fn shift(emails: &[&str], summary: &str, end_ms: i64) -> ical::Shift {
        ical::Shift {
            emails: emails.iter().map(|e| e.to_string()).collect(),
            summary: summary.into(),
            start_ms: 0,
            end_ms,
        }
    }

    #[test]
    fn schedules_resolve_keys_do_not_depend_on_the_directory() {
        let empty = Snapshot::default();
        let shifts = [
            shift(&[], "[L1] Alice", 10),
            shift(&[], "alice", 20),
            shift(&["carol@example.com"], "Primary", 5),
        ];
        let on_duty = resolve(&shifts, &empty);
        assert_eq!(on_duty.keys(), ["alice", "carol@example.com"]);
        assert_eq!(
            on_duty.people["alice"].shift_end, 20,
            "latest end of one person"
        );
        assert_eq!(
            on_duty.unknown,
            ["[L1] Alice", "alice", "carol@example.com"]
        );
        assert!(on_duty.people.values().all(|p| p.user_id.is_none()));
    }
}
