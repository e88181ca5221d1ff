//! SQL of the acknowledge loop: alert groups and their state, who was paged for which, and
//! the actions people took.

use serde::Serialize;
use sqlx::FromRow;

use crate::store::Store;

/// An alert group as the webhooks described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct GroupRow {
    /// OnCall's public key.
    pub id: String,
    /// Title, as the webhook carried it.
    pub title: String,
    /// `firing`, `acknowledged`, `resolved` or `silenced`.
    pub state: String,
    /// Who changed the state last.
    pub state_by: Option<String>,
    /// Link to the alert group in OnCall.
    pub permalink: Option<String>,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

/// What a webhook said about an alert group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    /// OnCall's public key.
    pub id: String,
    /// Title, when the webhook carried one.
    pub title: Option<String>,
    /// New state, when the webhook carried one.
    pub state: Option<String>,
    /// Who changed the state.
    pub state_by: Option<String>,
    /// Web link.
    pub permalink: Option<String>,
}

/// Records what a webhook said: the group (keeping what it did not say) and who was paged.
pub async fn record(
    store: &Store,
    group: &GroupUpdate,
    paged: &[String],
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_write().await?;
    // COALESCE keeps a known title or link when a later webhook leaves it out.
    sqlx::query(
        "INSERT INTO alert_groups (id, title, state, state_by, permalink, created_at, updated_at) \
         VALUES ($1, COALESCE($2, ''), COALESCE($3, 'firing'), $4, $5, $6, $6) \
         ON CONFLICT (id) DO UPDATE SET \
           title = CASE WHEN $2 IS NULL OR $2 = '' THEN alert_groups.title ELSE $2 END, \
           state = COALESCE($3, alert_groups.state), \
           state_by = CASE WHEN $3 IS NULL THEN alert_groups.state_by ELSE $4 END, \
           permalink = COALESCE($5, alert_groups.permalink), \
           updated_at = $6",
    )
    .bind(&group.id)
    .bind(group.title.as_deref())
    .bind(group.state.as_deref())
    .bind(group.state_by.as_deref())
    .bind(group.permalink.as_deref())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for email_key in paged {
        sqlx::query(
            "INSERT INTO pages (alert_group_id, email_key, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (email_key, alert_group_id) DO UPDATE SET seen_at = $3",
        )
        .bind(&group.id)
        .bind(email_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The alert group `id`, if a webhook told of it.
pub async fn group(store: &Store, id: &str) -> Result<Option<GroupRow>, sqlx::Error> {
    store
        .fetch_optional(
            "SELECT id, title, state, state_by, permalink, updated_at FROM alert_groups WHERE id = $1",
            &[id],
        )
        .await
}

/// A page: an alert group that reached a person, newest first.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PageRow {
    /// OnCall's public key.
    pub alert_group_id: String,
    /// When the person was last paged for it (Unix ms).
    pub seen_at: i64,
    /// Title, `''` when unknown.
    pub title: String,
    /// State, `firing` when unknown.
    pub state: String,
}

/// The pages of `email_key` since `since`, newest first, whatever their state.
pub async fn pages(
    store: &Store,
    email_key: &str,
    since: i64,
) -> Result<Vec<PageRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.alert_group_id, p.seen_at, COALESCE(g.title, '') AS title, \
                COALESCE(g.state, 'firing') AS state \
         FROM pages p LEFT JOIN alert_groups g ON g.id = p.alert_group_id \
         WHERE p.email_key = $1 AND p.seen_at >= $2 ORDER BY p.seen_at DESC LIMIT 50",
    )
    .bind(email_key)
    .bind(since)
    .fetch_all(store.pool())
    .await
}

/// Lower-cased emails of the people paged for the alert group `id`.
pub async fn paged(store: &Store, id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email_key FROM pages WHERE alert_group_id = $1")
        .bind(id)
        .fetch_all(store.pool())
        .await
}

/// One action a person took, for the events log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct ActionRecord {
    /// Row id.
    pub id: i64,
    /// Where it came from, e.g. `sms:twilio_sms`.
    pub channel: String,
    /// The person, when known.
    pub email: String,
    /// The alert group acted on, when one was found.
    pub alert_group_id: Option<String>,
    /// `acknowledge`, `resolve`, `silence`, or what was sent when it was not understood.
    pub action: String,
    /// `done`, `refused`, `not-found`, `throttled`, `forbidden`, `failed`, `unmatched`,
    /// `unknown-sender` or `not-understood`.
    pub outcome: String,
    /// OnCall's reason, or what went wrong.
    pub detail: Option<String>,
    /// Time (Unix ms).
    pub created_at: i64,
}

/// Writes one action to the events log.
pub async fn log_action(store: &Store, a: &ActionRecord) -> Result<(), sqlx::Error> {
    let _guard = store.write_guard().await;
    sqlx::query(
        "INSERT INTO page_actions (channel, email, alert_group_id, action, outcome, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&a.channel)
    .bind(&a.email)
    .bind(a.alert_group_id.as_deref())
    .bind(&a.action)
    .bind(&a.outcome)
    .bind(a.detail.as_deref())
    .bind(a.created_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The latest actions, newest first, optionally of one person (email, case-insensitive) and
/// since a time.
pub async fn actions(
    store: &Store,
    email: Option<&str>,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<ActionRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, channel, email, alert_group_id, action, outcome, detail, created_at \
         FROM page_actions WHERE ($1 IS NULL OR LOWER(email) = LOWER($1)) AND created_at >= $2 \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(email)
    .bind(since.unwrap_or(0))
    .bind(limit.min(10_000) as i64)
    .fetch_all(store.pool())
    .await
}

/// Deletes pages, alert groups and actions older than `before` (Unix ms); returns how many.
pub async fn purge(store: &Store, before: i64) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for sql in [
        "DELETE FROM pages WHERE seen_at < $1",
        "DELETE FROM alert_groups WHERE updated_at < $1",
        "DELETE FROM page_actions WHERE created_at < $1",
    ] {
        let _guard = store.write_guard().await;
        deleted += sqlx::query(sql)
            .bind(before)
            .execute(store.pool())
            .await?
            .rows_affected();
    }
    Ok(deleted)
}
