//! SQL of the durable queue: insert, claim and record outcomes.

use std::collections::BTreeMap;

use sqlx::{FromRow, Row};

use super::parts::PartsLog;
use super::{NewNotification, Notification};
use crate::store::{Store, pow2_chunks, values_placeholders};

/// Largest number of rows in one multi-row statement.
const MAX_ROWS_PER_STATEMENT: usize = 128;

/// Status of a notification waiting for delivery.
pub(crate) const QUEUED: &str = "queued";
/// Status of a notification that repeats an earlier one within the dedup window.
pub(crate) const DUPLICATE: &str = "duplicate";
/// Status of a claimed notification.
const DELIVERING: &str = "delivering";

/// Inserts `items` as due now on `conn` (inside the caller's transaction).
pub(crate) async fn insert_rows(
    conn: &mut sqlx::AnyConnection,
    items: &[NewNotification],
    now: i64,
) -> Result<(), sqlx::Error> {
    const COLS: usize = 15;
    let mut offset = 0;
    for size in pow2_chunks(items.len(), MAX_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO notifications (kind, user_id, email, name, phone_number, message, payload, route, dedup_key, \
             status, due_at, last_error, finished_at, created_at, updated_at) VALUES {}",
            values_placeholders(size, COLS, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for n in &items[offset..offset + size] {
            // A duplicate is recorded as final at once: never due, never delivered.
            let (status, due_at, note, finished_at) = match n.duplicate_of {
                Some(of) => (
                    DUPLICATE,
                    None,
                    Some(format!("duplicate of #{of}")),
                    Some(now),
                ),
                None => (QUEUED, Some(now), None, None),
            };
            q = bind_new(q, n)
                .bind(n.dedup_key.clone())
                .bind(status)
                .bind(due_at)
                .bind(note)
                .bind(finished_at)
                .bind(now)
                .bind(now);
        }
        q.execute(&mut *conn).await?;
        offset += size;
    }
    Ok(())
}

/// Inserts `items` already claimed for `lease` on `conn` (inside the caller's transaction):
/// the rows as [`claim`] would leave and return them, for this process to deliver at once.
pub(crate) async fn insert_claimed(
    conn: &mut sqlx::AnyConnection,
    store: &Store,
    items: &[NewNotification],
    lease: Lease,
) -> Result<Vec<Notification>, sqlx::Error> {
    const COLS: usize = 16;
    let mut claimed = Vec::with_capacity(items.len());
    let mut offset = 0;
    for size in pow2_chunks(items.len(), MAX_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO notifications (kind, user_id, email, name, phone_number, message, payload, route, dedup_key, \
             status, due_at, claim, attempts, stage_attempts, created_at, updated_at) VALUES {} RETURNING {CLAIMED}",
            values_placeholders(size, COLS, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for n in &items[offset..offset + size] {
            // The first attempt, as a claim counts it.
            q = bind_new(q, n)
                .bind(n.dedup_key.clone())
                .bind(DELIVERING)
                .bind(lease.until)
                .bind(lease.tag)
                .bind(1_i64)
                .bind(1_i64)
                .bind(lease.now)
                .bind(lease.now);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        for row in &rows {
            claimed.push(self::claimed(store, row, lease.tag)?);
        }
        offset += size;
    }
    Ok(claimed)
}

/// One claim: when it is taken, until when its lease holds, and the tag it leaves on rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    pub now: i64,
    pub until: i64,
    pub tag: i64,
}

/// Claims up to `limit` due notifications for one lease.
pub(crate) async fn claim(
    store: &Store,
    limit: usize,
    lease: Lease,
) -> Result<Vec<Notification>, sqlx::Error> {
    let _guard = store.write_guard().await;
    let mut conn = store.pool().acquire().await?;
    claim_on(&mut conn, store, limit, lease).await
}

/// [`claim`] on `conn`, e.g. inside the transaction that records the previous outcomes (the
/// caller holds the SQLite write lock).
pub(crate) async fn claim_on(
    conn: &mut sqlx::AnyConnection,
    store: &Store,
    limit: usize,
    lease: Lease,
) -> Result<Vec<Notification>, sqlx::Error> {
    let sql = format!(
        "{CLAIM} WHERE id IN (SELECT id FROM notifications WHERE due_at <= $3 ORDER BY due_at LIMIT $4{}) \
         RETURNING {CLAIMED}",
        store.skip_locked()
    );
    let rows = claim_query(sql, lease.until, lease.tag, lease.now)
        .bind(limit as i64)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| claimed(store, row, lease.tag))
        .collect()
}

/// A claimed row as a notification that records its parts under `claim`.
fn claimed(
    store: &Store,
    row: &sqlx::any::AnyRow,
    claim: i64,
) -> Result<Notification, sqlx::Error> {
    let mut n = Notification::from_row(row)?;
    n.parts_log = PartsLog::new(store.clone(), n.id, claim);
    Ok(n)
}

/// Records that the first `sent` parts of the split `digest` of notification `id` went out,
/// unless another claim has taken the row since.
pub(crate) async fn record_parts(
    store: &Store,
    id: i64,
    claim: i64,
    digest: &str,
    sent: i64,
) -> Result<(), sqlx::Error> {
    let _guard = store.write_guard().await;
    sqlx::query(
        "UPDATE notifications SET parts_sent = $1, parts_digest = $2 WHERE id = $3 AND claim = $4",
    )
    .bind(sent)
    .bind(digest.to_string())
    .bind(id)
    .bind(claim)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Claims one notification by id, whatever its due time (for `notify test`).
pub(crate) async fn claim_id(
    store: &Store,
    id: i64,
    now: i64,
    lease_until: i64,
    claim: i64,
) -> Result<Option<Notification>, sqlx::Error> {
    let sql =
        format!("{CLAIM} WHERE id = $4 AND status IN ('queued', 'delivering') RETURNING {CLAIMED}");
    let _guard = store.write_guard().await;
    let row = claim_query(sql, lease_until, claim, now)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref()
        .map(|row| claimed(store, row, claim))
        .transpose()
}

/// Inserts one notification that no worker will claim by itself (no due time); returns its id.
pub(crate) async fn insert_held(
    store: &Store,
    n: &NewNotification,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let query = sqlx::query(
        "INSERT INTO notifications (kind, user_id, email, name, phone_number, message, payload, route, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
    );
    let row = bind_new(query, n)
        .bind(QUEUED)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    let id: i64 = row.try_get("id")?;
    tx.commit().await?;
    Ok(id)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds the columns every inserted row starts with, `kind` to `route`, in that order.
fn bind_new<'q>(q: AnyQuery<'q>, n: &NewNotification) -> AnyQuery<'q> {
    q.bind(n.kind.as_str())
        .bind(n.user_id.clone())
        .bind(n.email.clone())
        .bind(n.name.clone())
        .bind(n.phone_number.clone())
        .bind(n.message.clone())
        .bind(n.payload.as_ref().map(|p| p.to_string()))
        .bind(n.route.clone())
}

/// The update that claims rows for one lease: `$1` lease end, `$2` claim tag, `$3` now. A
/// claim that settles a step waiting for a call's answer is not a new attempt.
const CLAIM: &str = "UPDATE notifications SET status = 'delivering', \
     attempts = attempts + CASE WHEN answer_deadline IS NULL THEN 1 ELSE 0 END, \
     stage_attempts = stage_attempts + CASE WHEN answer_deadline IS NULL THEN 1 ELSE 0 END, \
     due_at = $1, claim = $2, updated_at = $3";

/// `sql` (which starts with [`CLAIM`]) with the lease end, claim tag and time bound.
fn claim_query(sql: String, lease_until: i64, claim: i64, now: i64) -> AnyQuery<'static> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease_until)
        .bind(claim)
        .bind(now)
}

const CLAIMED: &str = "id, kind, user_id, email, name, phone_number, message, payload, route, attempts, stage, stage_attempts, created_at, parts_sent, parts_digest, answer, answer_deadline";

/// A stored payload as text, read into a notification's details.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct PayloadText(Option<String>);

impl From<PayloadText> for Option<serde_json::Value> {
    /// A payload that no longer parses is delivered without its details, not dropped.
    fn from(text: PayloadText) -> Self {
        text.0.and_then(|p| serde_json::from_str(&p).ok())
    }
}

/// How one attempt ended and what happens to the notification next.
#[derive(Debug, Clone)]
pub(crate) enum Next {
    /// Delivered: final.
    Delivered,
    /// Failed for now: due again at this time.
    Retry(i64),
    /// This step's backend gave up: the next step, now.
    Fallback(i64),
    /// Failed for good.
    Failed,
    /// The provider accepted the call; the step waits for its answer until this time.
    AwaitAnswer(i64),
    /// Not tried (its backend is full or skipped): due again at this time, and the claim's
    /// attempt is not counted.
    Defer(i64),
}

/// One finished delivery attempt.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub id: i64,
    pub claim: i64,
    pub attempt: i64,
    pub backend: String,
    pub error: Option<String>,
    pub next: Next,
    pub started_at: i64,
    pub duration_ms: i64,
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self.next {
            Next::Delivered => "delivered",
            Next::Retry(_) => "retry",
            Next::Fallback(_) => "fallback",
            Next::Failed => "failed",
            Next::AwaitAnswer(_) => "awaiting_answer",
            Next::Defer(_) => "deferred",
        }
    }
}

/// Ends a wait for a call's answer: the deadline goes, an answer still awaited becomes
/// `no-status`. Every update of a claimed row but [`Next::AwaitAnswer`] sets it.
const SETTLE_ANSWER: &str = "answer_deadline = NULL, \
     answer = CASE WHEN answer = 'awaiting' THEN 'no-status' ELSE answer END";

/// Deletes up to `limit` finished notifications (and their attempts) finished before `before`.
pub(crate) async fn purge_finished(
    store: &Store,
    before: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    // Attempts and chat messages first: SQLite only cascades with foreign keys on, and
    // explicit is cheaper to read.
    for table in ["delivery_attempts", "chat_messages"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE notification_id IN \
             (SELECT id FROM notifications WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)"
        )))
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
    }
    let done = sqlx::query(
        "DELETE FROM notifications WHERE id IN \
         (SELECT id FROM notifications WHERE finished_at < $1 ORDER BY finished_at LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(done)
}

/// Records attempts and moves notifications on, in one transaction.
///
/// Every update is guarded by the claim tag: if the lease ran out and another worker claimed
/// the row meanwhile, this worker's late verdict does not overwrite the newer one.
pub(crate) async fn record(
    store: &Store,
    outcomes: &[Outcome],
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin_write().await?;
    record_on(&mut tx, outcomes, now).await?;
    tx.commit().await
}

/// [`record`] on `tx`, inside the caller's transaction.
pub(crate) async fn record_on(
    tx: &mut sqlx::AnyConnection,
    outcomes: &[Outcome],
    now: i64,
) -> Result<(), sqlx::Error> {
    // A deferral was no attempt: nothing to log.
    let attempts: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o.next, Next::Defer(_)))
        .collect();
    let mut offset = 0;
    for size in pow2_chunks(attempts.len(), MAX_ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO delivery_attempts (notification_id, attempt, backend, outcome, error, started_at, duration_ms) VALUES {}",
            values_placeholders(size, 7, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for o in &attempts[offset..offset + size] {
            q = q
                .bind(o.id)
                .bind(o.attempt)
                .bind(o.backend.clone())
                .bind(o.label())
                .bind(o.error.clone())
                .bind(o.started_at)
                .bind(o.duration_ms);
        }
        q.execute(&mut *tx).await?;
        offset += size;
    }

    // Deliveries are the common case: one statement per claim and backend.
    let mut delivered: BTreeMap<(i64, &str), Vec<i64>> = BTreeMap::new();
    for o in outcomes {
        // `$1` error, `$2` backend, `$3` now, `$4` id, `$5` claim, `$6` what the step sets.
        let (set, value) = match &o.next {
            Next::Delivered => {
                delivered
                    .entry((o.claim, o.backend.as_str()))
                    .or_default()
                    .push(o.id);
                continue;
            }
            Next::Retry(due) => ("status = 'queued', due_at = $6", Some(*due)),
            Next::Fallback(stage) => (
                "status = 'queued', stage = $6, stage_attempts = 0, due_at = $3",
                Some(*stage),
            ),
            Next::Failed => ("status = 'failed', due_at = NULL, finished_at = $3", None),
            Next::AwaitAnswer(deadline) => (
                "status = 'awaiting_answer', due_at = $6, answer_deadline = $6, answer = 'awaiting'",
                Some(*deadline),
            ),
            Next::Defer(due) => (
                "status = 'queued', due_at = $6, attempts = attempts - 1, \
                 stage_attempts = stage_attempts - 1",
                Some(*due),
            ),
        };
        let settle = match o.next {
            Next::AwaitAnswer(_) | Next::Defer(_) => String::new(),
            _ => format!(", {SETTLE_ANSWER}"),
        };
        let sql = format!(
            "UPDATE notifications SET {set}{settle}, last_error = $1, backend = $2, updated_at = $3 \
             WHERE id = $4 AND claim = $5"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(o.error.clone())
            .bind(o.backend.clone())
            .bind(now)
            .bind(o.id)
            .bind(o.claim);
        if let Some(value) = value {
            q = q.bind(value);
        }
        q.execute(&mut *tx).await?;
    }
    for ((claim, backend), ids) in delivered {
        let mut offset = 0;
        for size in pow2_chunks(ids.len(), MAX_ROWS_PER_STATEMENT) {
            let list: Vec<String> = (0..size).map(|i| format!("${}", i + 4)).collect();
            let sql = format!(
                "UPDATE notifications SET status = 'delivered', due_at = NULL, last_error = NULL, backend = $1, updated_at = $2, finished_at = $2, {SETTLE_ANSWER} \
                 WHERE claim = $3 AND id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(backend.to_string())
                .bind(now)
                .bind(claim);
            for id in &ids[offset..offset + size] {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
            offset += size;
        }
    }
    Ok(())
}
