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

mod announce;
mod fetch;
pub mod ical;
pub mod on_call;
mod on_duty;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::directory::Directory;
use crate::notify;
use crate::store::{Store, StoreError};
use crate::tasks::{FirstRun, spawn_periodic};

use fetch::{Cached, HTTP_TIMEOUT};
pub use on_call::{OnCallNow, Source as OnCallSource};
pub use on_duty::{NEXT_HORIZON_MS, NextDuty, OnDuty, OnDutyPerson, next_change, resolve};

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

impl From<crate::directory::DirectoryError> for ScheduleError {
    fn from(e: crate::directory::DirectoryError) -> Self {
        match e {
            crate::directory::DirectoryError::Store(e) => ScheduleError::Store(e),
            other => ScheduleError::Invalid(other.to_string()),
        }
    }
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
/// A schedule as stored, with its tracking status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
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
    #[sqlx(try_from = "crate::store::JsonText<Vec<String>>")]
    pub on_duty: Option<Vec<String>>,
    /// Details of the people on duty.
    #[sqlx(rename = "on_duty_detail", try_from = "crate::store::JsonText<OnDuty>")]
    pub detail: Option<OnDuty>,
    /// Last change of the on-duty set (Unix ms).
    pub changed_at: Option<i64>,
    /// Last successful poll (Unix ms).
    pub last_success_at: Option<i64>,
    /// Last fetch or parse error.
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_at: Option<i64>,
    /// Whether `on_duty` is what the calendar says now, or the last good state kept
    /// because the latest poll failed.
    #[sqlx(skip)]
    pub state: StateStatus,
}

/// How current a schedule's stored on-duty state is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateStatus {
    /// Not polled successfully yet.
    #[default]
    Unknown,
    /// From the latest poll.
    Current,
    /// The latest poll failed (see `last_error`): the last good state is kept.
    LastGood,
}

impl StateStatus {
    /// Text for humans.
    pub fn describe(self) -> &'static str {
        match self {
            StateStatus::Unknown => "unknown (not polled successfully yet)",
            StateStatus::Current => "current",
            StateStatus::LastGood => "last good state kept (the latest poll failed)",
        }
    }
}

impl Schedule {
    /// Fills in [`Schedule::state`] from the stored columns (a successful poll clears
    /// `last_error`).
    pub(crate) fn with_state(mut self) -> Schedule {
        self.state = match (&self.on_duty, &self.last_error) {
            (None, _) => StateStatus::Unknown,
            (Some(_), None) => StateStatus::Current,
            (Some(_), Some(_)) => StateStatus::LastGood,
        };
        self
    }

    /// The name shown: the calendar's own, else the configured one.
    pub fn display_name(&self) -> &str {
        self.calendar_name.as_deref().unwrap_or(&self.name)
    }
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
    /// Polls every schedule once.
    pub async fn poll_all(&self) -> Result<(), ScheduleError> {
        // Once a round, so a person added or renamed since the last one is named right: one
        // small query when nothing changed.
        if let Err(e) = self.directory.refresh().await {
            tracing::debug!(error = %e, "cannot refresh the directory; names as last read");
        }
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

    /// Polls every `grafana.oncall.schedule_poll_interval` and delivers callbacks until
    /// shutdown.
    pub fn spawn_poller(self, shutdown: CancellationToken) -> JoinHandle<()> {
        let interval = self
            .settings
            .grafana
            .oncall
            .schedule_poll_interval
            .max(Duration::from_millis(10));
        // A slow calendar server must not hold up shutdown; dropping a round mid-way rolls
        // its transaction back, and a claimed callback is retried when its lease runs out.
        spawn_periodic(interval, FirstRun::Now, shutdown, move || {
            let schedules = self.clone();
            async move {
                if let Err(e) = schedules.poll_all().await {
                    tracing::warn!(error = %e, "schedule polling failed");
                }
                if let Err(e) = schedules.deliver_callbacks().await {
                    tracing::warn!(error = %e, "schedule callbacks failed");
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
}
