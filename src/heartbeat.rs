//! Watching OnCall itself: the heartbeat integration OnCall creates, its beats, and the
//! watchdog that says so when they stop and when they resume.
//!
//! Each transition is one conditional UPDATE that also enqueues the alerts in the same
//! transaction, so with any number of relay processes exactly one announces it, and a crash
//! between "noticed" and "queued" is impossible.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use serde::Serialize;
use sqlx::FromRow;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HeartbeatSettings;
use crate::directory::Directory;
use crate::notify::{self, Kind, NewNotification};
use crate::store::{Store, StoreError, format_ms, now_ms};
use crate::tasks::{FirstRun, spawn_periodic};

/// Integration types OnCall may create.
pub const INTEGRATION_TYPES: [&str; 2] = ["formatted_webhook", "webhook"];

/// Prefix of the name the engine gives its heartbeat integration.
const NAME_PREFIX: &str = "OnCall Cloud Heartbeat ";

/// Errors of the heartbeat module.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// A field failed validation.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The alerts could not be queued.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

impl From<crate::directory::DirectoryError> for HeartbeatError {
    fn from(e: crate::directory::DirectoryError) -> Self {
        match e {
            crate::directory::DirectoryError::Store(e) => HeartbeatError::Store(e),
            other => HeartbeatError::Invalid(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for HeartbeatError {
    fn from(e: sqlx::Error) -> Self {
        HeartbeatError::Store(StoreError::Query(e))
    }
}

/// An integration as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Integration {
    /// Public id (sent to OnCall).
    #[sqlx(rename = "public_id")]
    pub id: String,
    /// Name, unique.
    pub name: String,
    /// Integration type, e.g. `formatted_webhook`.
    pub kind: String,
    /// The secret part of the heartbeat link.
    #[serde(skip)]
    pub heartbeat_token: String,
    /// `new` (never beaten), `alive` or `silent`.
    pub state: String,
    /// Last beat (Unix ms).
    pub last_beat_at: Option<i64>,
    /// Creation (Unix ms).
    pub created_at: i64,
}

impl Integration {
    /// The instance name OnCall put after "OnCall Cloud Heartbeat " (its base URL).
    pub fn instance(&self) -> &str {
        self.name.strip_prefix(NAME_PREFIX).unwrap_or(&self.name)
    }
}

const COLUMNS: &str = "public_id, name, kind, heartbeat_token, state, last_beat_at, created_at";

fn random_string(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// Longest heartbeat link this relay issues is 24 characters; anything much longer is not one
/// of ours and is refused without a query.
const MAX_TOKEN_LEN: usize = 128;

/// Shortest time between two reads of every link, when a beat comes for a link not in memory
/// (one created by another replica): a flood of random links costs one query per interval.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Heartbeat links in memory.
#[derive(Debug, Default)]
struct Links {
    /// Each link, with when this process last wrote a beat for it.
    known: HashMap<String, Option<Instant>>,
    /// When every link was last read from the database.
    loaded_at: Option<Instant>,
}

/// Integrations, beats and the watchdog.
#[derive(Debug, Clone)]
pub struct Heartbeats {
    store: Store,
    directory: Directory,
    settings: HeartbeatSettings,
    wake: Arc<Notify>,
    /// The links that exist, read from the database at most once per [`RELOAD_INTERVAL`], so
    /// that random links cost no query.
    links: Arc<Mutex<Links>>,
}

impl Heartbeats {
    /// Heartbeat handling on `store`, alerting through the durable queue.
    pub fn new(
        store: Store,
        directory: Directory,
        settings: HeartbeatSettings,
        wake: Arc<Notify>,
    ) -> Heartbeats {
        Heartbeats {
            store,
            directory,
            settings,
            wake,
            links: Arc::default(),
        }
    }

    /// At most one write per link in this interval: a second of precision is plenty against a
    /// timeout of minutes, and a flood of beats on a real link then costs no write lock.
    fn write_interval(&self) -> Duration {
        Duration::from_secs(1).min(self.settings.timeout / 4)
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        // A panic while holding the lock leaves a map that is still usable.
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the link exists: from memory, else from one read of every link if none ran
    /// in the last [`RELOAD_INTERVAL`] (a link another replica created is found that way).
    async fn exists(&self, token: &str) -> Result<bool, HeartbeatError> {
        {
            let mut links = self.links();
            if links.known.contains_key(token) {
                return Ok(true);
            }
            if links
                .loaded_at
                .is_some_and(|at| at.elapsed() < RELOAD_INTERVAL)
            {
                return Ok(false);
            }
            // Claimed before the query, so concurrent misses do not all read.
            links.loaded_at = Some(Instant::now());
        }
        let tokens: Vec<String> = sqlx::query_scalar("SELECT heartbeat_token FROM integrations")
            .fetch_all(self.store.pool())
            .await?;
        let mut links = self.links();
        let fresh: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
        links.known.retain(|t, _| fresh.contains(t.as_str()));
        for t in &tokens {
            links.known.entry(t.clone()).or_insert(None);
        }
        Ok(links.known.contains_key(token))
    }

    /// Returns the integration with this name, creating it first if needed (idempotent, so a
    /// reconnecting engine gets its heartbeat back).
    pub async fn create_or_get(
        &self,
        name: &str,
        kind: &str,
    ) -> Result<Integration, HeartbeatError> {
        let name = name.trim();
        let kind = kind.trim();
        if !INTEGRATION_TYPES.contains(&kind) {
            return Err(HeartbeatError::Invalid("Invalid integration type".into()));
        }
        if name.is_empty() || name.len() > 500 {
            return Err(HeartbeatError::Invalid(
                "Integration name must be 1 to 500 characters".into(),
            ));
        }
        if let Some(existing) = self.by_name(name).await? {
            self.remember(&existing);
            return Ok(existing);
        }
        // Two replicas creating the same name at once: one insert wins, both read it back.
        sqlx::query(
            "INSERT INTO integrations (public_id, name, kind, heartbeat_token, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(random_string("C", 13))
        .bind(name.to_string())
        .bind(kind.to_string())
        .bind(random_string("", 24))
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        let created = self.by_name(name).await?.ok_or_else(|| {
            HeartbeatError::Invalid("integration vanished while being created".into())
        })?;
        self.remember(&created);
        Ok(created)
    }

    fn remember(&self, integration: &Integration) {
        self.links()
            .known
            .entry(integration.heartbeat_token.clone())
            .or_insert(None);
    }

    async fn by_name(&self, name: &str) -> Result<Option<Integration>, HeartbeatError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM integrations WHERE name = $1"
        )))
        .bind(name.to_string())
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.as_ref().map(Integration::from_row).transpose()?)
    }

    /// Every integration, or those with this exact name.
    pub async fn list(&self, name: Option<&str>) -> Result<Vec<Integration>, HeartbeatError> {
        let rows = match name {
            Some(name) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM integrations WHERE name = $1 ORDER BY id"
                )))
                .bind(name.trim().to_string())
                .fetch_all(self.store.pool())
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM integrations ORDER BY id"
                )))
                .fetch_all(self.store.pool())
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(Integration::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Records a beat for the link token; `false` when no integration has it.
    ///
    /// The link is checked in memory before anything is written, so random links never take
    /// the write lock (and cost at most one read per [`RELOAD_INTERVAL`] between them); a
    /// known link is written at most once per [`Heartbeats::write_interval`], and beats in
    /// between only answer.
    pub async fn beat(&self, token: &str) -> Result<bool, HeartbeatError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Ok(false);
        }
        if !self.exists(token).await? {
            return Ok(false);
        }
        let last_write = self.links().known.get(token).copied().flatten();
        if last_write.is_some_and(|at| at.elapsed() < self.write_interval()) {
            return Ok(true);
        }
        let found = self.write_beat(token).await?;
        let mut links = self.links();
        if found {
            links.known.insert(token.to_string(), Some(Instant::now()));
        } else {
            links.known.remove(token);
        }
        Ok(found)
    }

    async fn write_beat(&self, token: &str) -> Result<bool, HeartbeatError> {
        let now = now_ms();
        let mut tx = self.store.begin_write().await?;
        let previous: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_beat_at FROM integrations WHERE heartbeat_token = $1")
                .bind(token.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(previous) = previous else {
            return Ok(false);
        };
        let restored = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE integrations SET state = 'alive', last_beat_at = $1, state_changed_at = $1 \
             WHERE heartbeat_token = $2 AND state = 'silent' RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(token.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = restored {
            let integration = Integration::from_row(&row)?;
            let silent_for = (now - previous.unwrap_or(now)).max(0) / 1000;
            let message = format!(
                "OnCall instance {} is sending heartbeats again (silent for about {}).",
                integration.instance(),
                humantime::format_duration(std::time::Duration::from_secs(silent_for as u64))
            );
            tracing::warn!(integration = %integration.name, "heartbeat restored");
            let alerts = self
                .alerts(&mut tx, &integration, "restored", message)
                .await?;
            notify::enqueue_in(&mut tx, &alerts, now).await?;
            tx.commit().await?;
            self.wake.notify_one();
            return Ok(true);
        }
        let updated = sqlx::query(
            "UPDATE integrations SET last_beat_at = $1, \
             state = 'alive', state_changed_at = CASE WHEN state = 'new' THEN $1 ELSE state_changed_at END \
             WHERE heartbeat_token = $2",
        )
        .bind(now)
        .bind(token.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }

    /// Marks integrations silent for longer than the timeout and enqueues their alerts;
    /// returns how many went silent.
    pub async fn check(&self) -> Result<usize, HeartbeatError> {
        let now = now_ms();
        let deadline = now - self.settings.timeout.as_millis() as i64;
        let mut tx = self.store.begin_write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE integrations SET state = 'silent', state_changed_at = $1 \
             WHERE state = 'alive' AND last_beat_at < $2 RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(deadline)
        .fetch_all(&mut *tx)
        .await?;
        let mut alerts = Vec::new();
        for row in &rows {
            let integration = Integration::from_row(row)?;
            let last = integration.last_beat_at.unwrap_or(now);
            let message = format!(
                "OnCall instance {} stopped sending heartbeats: none for {} s (last at {}).",
                integration.instance(),
                (now - last) / 1000,
                format_ms(last)
            );
            tracing::error!(integration = %integration.name, "heartbeat lost");
            alerts.extend(
                self.alerts(&mut tx, &integration, "silent", message)
                    .await?,
            );
        }
        notify::enqueue_in(&mut tx, &alerts, now).await?;
        tx.commit().await?;
        if !rows.is_empty() {
            self.wake.notify_one();
        }
        Ok(rows.len())
    }

    /// One alert per recipient: the configured users, else the active admins; with nobody to
    /// tell, one alert without a user still goes to the backend (and the events log).
    async fn alerts(
        &self,
        tx: &mut sqlx::AnyConnection,
        integration: &Integration,
        state: &str,
        message: String,
    ) -> Result<Vec<NewNotification>, HeartbeatError> {
        let users: Vec<_> = if self.settings.notify_users.is_empty() {
            self.directory.admins_in(tx).await?
        } else {
            let mut users = Vec::new();
            for who in &self.settings.notify_users {
                match self.directory.by_email_or_id_in(tx, who).await? {
                    Some(user) => users.push(user),
                    None => {
                        // Who is personal data: only at debug.
                        tracing::warn!(integration = %integration.name, "heartbeat.notify_users names a user missing from the directory");
                        tracing::debug!(integration = %integration.name, user = %who, "heartbeat.notify_users names no directory user");
                    }
                }
            }
            users
        };
        let payload = serde_json::json!({
            "title": format!("OnCall heartbeat {state}"),
            "integration": integration.name,
            "integration_id": integration.id,
            "state": state,
            "last_beat_at": integration.last_beat_at.map(format_ms),
            // For message templates, which show times in the reader's zone.
            "last_beat_at_ms": integration.last_beat_at,
            "instance": integration.instance(),
        });
        let route = (!self.settings.backend.is_empty()).then(|| self.settings.backend.clone());
        let base = NewNotification {
            payload: Some(payload),
            route,
            ..NewNotification::to_nobody(Kind::Heartbeat, message)
        };
        if users.is_empty() {
            return Ok(vec![base]);
        }
        Ok(users
            .iter()
            .map(|u| NewNotification {
                user_id: u.id.clone(),
                email: u.email.clone(),
                name: u.name.clone(),
                phone_number: u.phone_number.clone(),
                ..base.clone()
            })
            .collect())
    }

    /// Runs [`Heartbeats::check`] every `heartbeat.check_interval` until shutdown.
    pub fn spawn_watchdog(self, shutdown: CancellationToken) -> JoinHandle<()> {
        let every = self.settings.check_interval;
        spawn_periodic(every, FirstRun::AfterInterval, shutdown, move || {
            let heartbeats = self.clone();
            async move {
                if let Err(e) = heartbeats.check().await {
                    tracing::warn!(error = %e, "heartbeat check failed");
                }
            }
        })
    }
}
