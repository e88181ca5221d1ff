//! The stored schedules and their state, and detecting a change of who is on duty.

use sqlx::Row;

use super::on_duty::{NEXT_HORIZON_MS, OnDuty, next_change, resolve, wanted};
use super::{NewSchedule, Schedule, ScheduleError, Schedules, Transport, ical};
use crate::directory::People;
use crate::store::now_ms;

const COLUMNS: &str = "id, key, name, ical_url, transport, callback_url, source, calendar_name, \
                       on_duty, on_duty_detail, changed_at, last_success_at, last_error, last_error_at";

impl Schedules {
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
        for new in super::configured(&self.settings)? {
            self.add(new, true).await?;
        }
        Ok(())
    }

    /// The schedule with this key.
    pub async fn get(&self, key: &str) -> Result<Schedule, ScheduleError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE key = $1");
        let schedule = self
            .store
            .fetch_optional(sqlx::AssertSqlSafe(sql), &[key.trim()])
            .await?;
        schedule
            .map(Schedule::with_state)
            .ok_or_else(|| ScheduleError::NotFound(key.to_string()))
    }

    /// Every schedule.
    pub async fn list(&self) -> Result<Vec<Schedule>, ScheduleError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY key");
        let list: Vec<Schedule> = self.store.fetch_all(sqlx::AssertSqlSafe(sql), &[]).await?;
        Ok(list.into_iter().map(Schedule::with_state).collect())
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

    /// Polls one schedule; returns whether this process announced a change.
    pub async fn poll(&self, schedule: &Schedule) -> Result<bool, ScheduleError> {
        let announced = self.poll_state(schedule).await?;
        let ahead = self.settings.grafana.oncall.schedule_reminder;
        if !ahead.is_zero() && schedule.transport == Transport::Local.as_str() {
            if let Some(calendar) = self.cached_calendar(schedule.id).await {
                self.remind(schedule, &calendar, ahead).await?;
            }
        }
        Ok(announced)
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
        let upcoming = calendar.shifts(now, now.saturating_add(NEXT_HORIZON_MS));
        let current: Vec<ical::Shift> = upcoming
            .iter()
            .filter(|s| s.start_ms <= now && now < s.end_ms)
            .cloned()
            .collect();
        // The people of the month ahead are read too, to tell who comes next.
        let (emails, names) = wanted(&upcoming);
        let people = self.directory.people(&emails, &names).await?;
        let mut on_duty = resolve(&current, &people);
        on_duty.next = next_change(&upcoming, now, &on_duty.keys(), &people);
        on_duty.warnings.clone_from(&calendar.warnings);
        if !on_duty.ambiguous.is_empty() {
            tracing::warn!(schedule = %schedule.key, count = on_duty.ambiguous.len(), "calendar names that match several people: nobody assumed");
        }
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
        tracing::info!(schedule = %schedule.key, previous = previous_keys.len(), current = on_duty.people.len(), "on-duty change");
        tracing::debug!(schedule = %schedule.key, previous = ?previous_keys, current = ?on_duty.keys(), "on-duty change");
        let change = Change {
            schedule,
            name: &name,
            previous_keys: &previous_keys,
            previous_labels,
            current: &on_duty,
            people: &people,
            now,
        };
        self.announce(&mut tx, &change).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(true)
    }
}

/// A change of a schedule's on-duty set, as announced.
pub(super) struct Change<'a> {
    /// The schedule, as read before the poll.
    pub schedule: &'a Schedule,
    /// Its display name.
    pub name: &'a str,
    /// Who was on duty (keys).
    pub previous_keys: &'a [String],
    /// Who was on duty (labels).
    pub previous_labels: Vec<String>,
    /// Who is on duty now.
    pub current: &'a OnDuty,
    /// The directory's people `current` was resolved against.
    pub people: &'a People,
    /// When the change was observed (Unix ms).
    pub now: i64,
}
