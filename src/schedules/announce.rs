//! Announcing changes: `schedule` notifications for the local transport, shift reminders,
//! and the durable callback POSTs with their delivery.

use std::time::Duration;

use sqlx::Row;

use super::on_duty::{resolve, wanted};
use super::state::Change;
use super::{Schedule, ScheduleError, Schedules, Transport, fetch::same_origin, ical};
use crate::notify::{self, Kind, NewNotification};
use crate::store::{format_ms, now_ms};
use crate::tasks::doubling_delay;
use crate::telemetry::redact_url;

/// Callback attempts before giving up.
const CALLBACK_ATTEMPTS: i64 = 12;
/// Longest wait between two callback attempts.
const CALLBACK_MAX_DELAY: Duration = Duration::from_secs(600);
/// Lease of a claimed callback: another replica may retry it after this.
const CALLBACK_LEASE_MS: i64 = 60_000;
/// The callback's title and message, kept as the original sent them (users point the
/// callback at an OnCall formatted-webhook integration keyed on them).
const CALLBACK_TITLE: &str = "-= Duty Status =-";

impl Schedules {
    /// Queues the announcements of `change` in its transaction.
    pub(super) async fn announce(
        &self,
        tx: &mut sqlx::AnyConnection,
        change: &Change<'_>,
    ) -> Result<(), ScheduleError> {
        let Change {
            schedule,
            name,
            previous_keys,
            current: on_duty,
            people,
            now,
            ..
        } = *change;
        let previous_labels = &change.previous_labels;
        match Transport::parse(&schedule.transport)? {
            Transport::Local => {
                let items: Vec<NewNotification> = on_duty
                    .people
                    .values()
                    .filter(|p| !previous_keys.contains(&p.key))
                    .filter_map(|p| {
                        let user = p.user_id.as_deref().and_then(|id| people.by_id(id))?;
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
                            "shift_end_ms": end,
                        }));
                        n
                    })
                    .collect();
                notify::enqueue_in(tx, &items, now).await?;
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
        Ok(())
    }

    /// Queues one reminder per person and upcoming shift starting within `ahead`.
    pub(super) async fn remind(
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
        let (emails, names) = wanted(&upcoming);
        let directory = self.directory.people(&emails, &names).await?;
        let name = schedule.display_name().to_string();
        for shift in &upcoming {
            let people = resolve(std::slice::from_ref(shift), &directory);
            for person in people.people.values() {
                let Some(user) = person.user_id.as_deref().and_then(|id| directory.by_id(id))
                else {
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
                        "shift_start_ms": shift.start_ms,
                        "shift_end_ms": shift.end_ms,
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
                    // `attempts` counts this one: 2 s after the first failure, doubling, capped.
                    let retry = usize::try_from(attempts).unwrap_or(0).min(30);
                    let delay = doubling_delay(retry, Duration::from_secs(1), CALLBACK_MAX_DELAY);
                    sqlx::query(
                        "UPDATE schedule_callbacks SET next_attempt_at = $1, last_error = $2 WHERE id = $3",
                    )
                    .bind(now_ms() + delay.as_millis() as i64)
                    .bind(e)
                    .bind(id)
                    .execute(self.store.pool())
                    .await?;
                }
            }
        }
    }
}
