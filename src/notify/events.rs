//! The events log: notifications and their delivery attempts, queried for `events list`.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{FromRow, Row};

use super::NotifyError;
use crate::store::Store;

/// Statuses a notification can have.
pub const STATUSES: [&str; 8] = [
    "queued",
    "delivering",
    "awaiting_answer",
    "delivered",
    "failed",
    "duplicate",
    "refused",
    "cancelled",
];

/// Which notifications to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only notifications accepted at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only this user (email, case-insensitive, or public id).
    pub user: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Most rows returned, newest first.
    pub limit: usize,
    /// Only notifications with a smaller id (the next page after the last one seen).
    pub before_id: Option<i64>,
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: i64,
    /// Backend that made it.
    pub backend: String,
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
    /// What went wrong.
    pub error: Option<String>,
    /// Start (Unix ms).
    pub started_at: i64,
    /// How long it took.
    pub duration_ms: i64,
}

/// One notification with its attempts.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NotificationRecord {
    /// Queue id.
    pub id: i64,
    /// `call` or `sms`.
    pub kind: String,
    /// Recipient's public id.
    pub user_id: String,
    /// Recipient's email.
    pub email: String,
    /// Phone number it was sent to; `phone` in JSON, as in templates and the stdout backend.
    #[serde(rename = "phone")]
    pub phone_number: Option<String>,
    /// The text.
    pub message: String,
    /// `queued`, `delivering`, `awaiting_answer`, `delivered`, `failed`, `duplicate` or `refused`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Backend of the last attempt.
    pub backend: Option<String>,
    /// Whether the call was answered, where the provider tells: `answered`, `no-answer`,
    /// `busy`, `failed`, `canceled`; `awaiting` while a step waits for it, `no-status` when
    /// none came in time.
    pub answer: Option<String>,
    /// Error of the last failed attempt; for a refused request, the reason (`user-not-found`, ...).
    pub last_error: Option<String>,
    /// Acceptance time (Unix ms).
    pub created_at: i64,
    /// When it was delivered or given up (Unix ms).
    pub finished_at: Option<i64>,
    /// Every attempt, oldest first.
    #[sqlx(skip)]
    pub attempt_log: Vec<AttemptRecord>,
}

/// Lists notifications matching `filter`, newest first, with their attempts.
pub async fn list(
    store: &Store,
    filter: &EventFilter,
) -> Result<Vec<NotificationRecord>, NotifyError> {
    if let Some(status) = &filter.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(NotifyError::Filter(format!(
            "status `{status}` is not one of {}",
            STATUSES.join(", ")
        )));
    }
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.since.is_some() {
        conditions.push(format!("created_at >= {}", next()));
    }
    if filter.user.is_some() {
        conditions.push(format!(
            "(lower(email) = {} OR user_id = {})",
            next(),
            next()
        ));
    }
    if filter.status.is_some() {
        conditions.push(format!("status = {}", next()));
    }
    if filter.kind.is_some() {
        conditions.push(format!("kind = {}", next()));
    }
    if filter.before_id.is_some() {
        conditions.push(format!("id < {}", next()));
    }
    let limit = next();
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT id, kind, user_id, email, phone_number, message, status, attempts, backend, answer, last_error, created_at, finished_at \
         FROM notifications {where_clause} ORDER BY id DESC LIMIT {limit}"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if let Some(since) = filter.since {
        q = q.bind(since);
    }
    if let Some(user) = &filter.user {
        q = q
            .bind(user.trim().to_lowercase())
            .bind(user.trim().to_string());
    }
    if let Some(status) = &filter.status {
        q = q.bind(status.clone());
    }
    if let Some(kind) = &filter.kind {
        q = q.bind(kind.clone());
    }
    if let Some(before) = filter.before_id {
        q = q.bind(before);
    }
    q = q.bind(filter.limit.max(1) as i64);
    let rows = q.fetch_all(store.pool()).await?;
    let mut records = rows
        .iter()
        .map(NotificationRecord::from_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if records.is_empty() {
        return Ok(records);
    }
    let ids: Vec<String> = (1..=records.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT notification_id, attempt, backend, outcome, error, started_at, duration_ms FROM delivery_attempts \
         WHERE notification_id IN ({}) ORDER BY id",
        ids.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in &records {
        q = q.bind(r.id);
    }
    let mut by_id: HashMap<i64, Vec<AttemptRecord>> = HashMap::new();
    for row in q.fetch_all(store.pool()).await? {
        by_id
            .entry(row.try_get("notification_id")?)
            .or_default()
            .push(AttemptRecord::from_row(&row)?);
    }
    for r in &mut records {
        r.attempt_log = by_id.remove(&r.id).unwrap_or_default();
    }
    Ok(records)
}
