//! Who is on duty, the stored schedules and their state, and detecting a change of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{NewSchedule, Schedule, ScheduleError, Schedules, Transport, ical};
use crate::directory::{People, User};
use crate::store::now_ms;

/// One person on duty, as stored in the state's details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OnDuty {
    /// Known people, by key.
    pub people: BTreeMap<String, OnDutyPerson>,
    /// Calendar names that match nobody in the directory (also in `people`, so a change
    /// of an unknown person is still a change).
    pub unknown: Vec<String>,
    /// Calendar names that match several people equally well: none of them is assumed.
    #[serde(default)]
    pub ambiguous: Vec<String>,
    /// What the calendar's reading warned about (a TZID read as UTC).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Who comes on duty next, when the calendar says within [`NEXT_HORIZON_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextDuty>,
}

/// The next change of who is on duty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NextDuty {
    /// When it happens (Unix ms).
    pub at: i64,
    /// Who is on duty from then, by display name (empty: nobody).
    pub people: Vec<OnDutyPerson>,
}

/// How far ahead the next change is looked for: a month of rotations and a few days more.
pub const NEXT_HORIZON_MS: i64 = 35 * 24 * 3600 * 1000;

/// Most moments (shift starts and ends) looked at for the next change: a calendar of many
/// back-to-back shifts of the same people is cut short rather than read for long.
const NEXT_MOMENTS: usize = 200;

/// The first moment after `now` at which the people on duty are not `current`, and who they
/// are then, from `shifts` (the calendar's over [`NEXT_HORIZON_MS`] from `now`).
pub fn next_change(
    shifts: &[ical::Shift],
    now: i64,
    current: &[String],
    directory: &People,
) -> Option<NextDuty> {
    let mut moments: Vec<i64> = shifts
        .iter()
        .flat_map(|s| [s.start_ms, s.end_ms])
        .filter(|t| *t > now)
        .collect();
    moments.sort_unstable();
    moments.dedup();
    moments.into_iter().take(NEXT_MOMENTS).find_map(|at| {
        let covering: Vec<ical::Shift> = shifts
            .iter()
            .filter(|s| s.start_ms <= at && at < s.end_ms)
            .cloned()
            .collect();
        let then = resolve(&covering, directory);
        (then.keys() != current).then(|| {
            let mut people: Vec<OnDutyPerson> = then.people.into_values().collect();
            people.sort_by(|a, b| a.name.cmp(&b.name));
            NextDuty { at, people }
        })
    })
}

impl OnDuty {
    /// The sorted keys: the state compared between polls.
    pub fn keys(&self) -> Vec<String> {
        self.people.keys().cloned().collect()
    }
}

/// A SUMMARY without its `[L1] ` tag: OnCall's exports put the username after one.
fn bare_summary(text: &str) -> &str {
    text.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map_or(text, |(_, rest)| rest.trim())
}

/// The emails and names [`resolve`] looks up for these shifts.
pub fn wanted(shifts: &[ical::Shift]) -> (Vec<&str>, Vec<&str>) {
    let (mut emails, mut names) = (Vec::new(), Vec::new());
    for shift in shifts {
        emails.extend(shift.emails.iter().map(String::as_str));
        if shift.emails.is_empty() && !shift.summary.is_empty() {
            let text = shift.summary.as_str();
            let bare = bare_summary(text);
            if bare.contains('@') {
                emails.push(bare);
            }
            names.extend([text, bare]);
        }
    }
    emails.sort_unstable();
    emails.dedup();
    names.sort_unstable();
    names.dedup();
    (emails, names)
}

/// Resolves shifts to people: ATTENDEE/ORGANIZER email, else SUMMARY as username or name.
/// `directory` holds at least everyone [`wanted`] names.
pub fn resolve(shifts: &[ical::Shift], directory: &People) -> OnDuty {
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
            let bare = bare_summary(text);
            // A SUMMARY that is an email (OnCall writes the username, people write either)
            // is looked up as one first.
            let by_email = bare
                .contains('@')
                .then(|| directory.by_email(bare))
                .flatten();
            let user = match by_email.map_or_else(
                || match_name(&[text, bare], directory.users()),
                NameMatch::One,
            ) {
                NameMatch::One(user) => Some(user),
                NameMatch::None => {
                    out.unknown.push(text.to_string());
                    None
                }
                NameMatch::Several(by, n) => {
                    out.ambiguous
                        .push(format!("`{text}` is the {by} of {n} people"));
                    None
                }
            };
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
    out.ambiguous.sort();
    out.ambiguous.dedup();
    out
}

/// What a calendar name matches in the directory.
#[derive(Debug)]
enum NameMatch<'a> {
    /// Nobody.
    None,
    /// One person.
    One(&'a Arc<User>),
    /// Several people by the same field (its name, how many).
    Several(&'static str, usize),
}

/// Matches a SUMMARY (as written and without its `[L1]` tag) against usernames first, then
/// display names, ignoring case. A better kind of match wins over any number of worse
/// ones, so one person's display name cannot capture another's username.
fn match_name<'a>(texts: &[&str], users: &'a [Arc<User>]) -> NameMatch<'a> {
    type Field = fn(&User) -> &str;
    let fields: [(&'static str, Field); 2] = [
        ("username", |u| u.username.as_str()),
        ("display name", |u| u.name.as_str()),
    ];
    for (field, value) in fields {
        let mut found = users.iter().filter(|u| {
            let v = value(u);
            !v.is_empty() && texts.iter().any(|t| v.eq_ignore_ascii_case(t))
        });
        match (found.next(), found.count()) {
            (None, _) => continue,
            (Some(user), 0) => return NameMatch::One(user),
            (Some(_), more) => return NameMatch::Several(field, more + 1),
        }
    }
    NameMatch::None
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shift(emails: &[&str], summary: &str, end_ms: i64) -> ical::Shift {
        ical::Shift {
            emails: emails.iter().map(|e| e.to_string()).collect(),
            summary: summary.into(),
            start_ms: 0,
            end_ms,
        }
    }

    fn user(username: &str, name: &str) -> Arc<User> {
        Arc::new(User {
            seq: 0,
            id: format!("U{username}"),
            name: name.into(),
            username: username.into(),
            email: format!("{username}@example.com"),
            phone_number: None,
            active: true,
            role: crate::directory::Role::Editor,
            timezone: "UTC".into(),
            language: None,
            contacts: BTreeMap::new(),
            created_at: 0,
            updated_at: 0,
        })
    }

    #[test]
    fn next_change_skips_back_to_back_shifts_of_the_same_people() {
        // Alice 09–13 and 13–17 (one handover to herself), then Bob 17–09, every day.
        let calendar = ical::parse(concat!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:test\r\n",
            "BEGIN:VEVENT\r\nUID:a1\r\nDTSTART:20260105T090000Z\r\nDTEND:20260105T130000Z\r\n",
            "RRULE:FREQ=DAILY\r\nSUMMARY:alice\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:a2\r\nDTSTART:20260105T130000Z\r\nDTEND:20260105T170000Z\r\n",
            "RRULE:FREQ=DAILY\r\nSUMMARY:alice\r\nEND:VEVENT\r\n",
            "BEGIN:VEVENT\r\nUID:b\r\nDTSTART:20260105T170000Z\r\nDTEND:20260106T090000Z\r\n",
            "RRULE:FREQ=DAILY\r\nSUMMARY:bob\r\nEND:VEVENT\r\n",
            "END:VCALENDAR\r\n"
        ))
        .expect("calendar");
        let directory = People::new(vec![user("alice", "Alice"), user("bob", "Bob")]);
        let hour = 3_600_000;
        let jan_7_10h = 1_767_744_000_000 + 10 * hour; // 2026-01-07 10:00 UTC
        let now = resolve(&calendar.at(jan_7_10h), &directory);
        assert_eq!(now.keys(), ["alice"]);
        let upcoming = calendar.shifts(jan_7_10h, jan_7_10h + NEXT_HORIZON_MS);
        let next = next_change(&upcoming, jan_7_10h, &now.keys(), &directory).expect("next");
        assert_eq!(
            next.at,
            jan_7_10h + 7 * hour,
            "17:00, not Alice's own 13:00 handover"
        );
        let names: Vec<&str> = next.people.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["Bob"]);
        assert_eq!(next.people[0].shift_end, jan_7_10h + 23 * hour);
        // Without shifts ahead there is no next change.
        assert_eq!(next_change(&[], jan_7_10h, &[], &directory), None);
    }

    /// Who a SUMMARY resolves to: a username, `nobody`, or the ambiguity reported.
    fn matched(text: &str, users: &[Arc<User>]) -> String {
        let directory = People::new(users.to_vec());
        let on_duty = resolve(&[shift(&[], text, 10)], &directory);
        if let Some(a) = on_duty.ambiguous.first() {
            return a.clone();
        }
        match on_duty
            .people
            .values()
            .next()
            .and_then(|p| p.user_id.as_deref())
        {
            Some(id) => id.trim_start_matches('U').to_string(),
            None => "nobody".into(),
        }
    }

    #[test]
    fn schedules_username_match_wins_over_an_earlier_display_name() {
        // bob's display name is alice's username, and bob comes first.
        let users = [user("bob", "alice"), user("alice", "Alice Smith")];
        assert_eq!(matched("alice", &users), "alice");
        assert_eq!(matched("ALICE", &users), "alice");
        assert_eq!(matched("alice smith", &users), "alice");
        assert_eq!(matched("bob", &users), "bob");
    }

    #[test]
    fn schedules_summary_that_is_an_email_matches_that_person() {
        // Bob's display name is Alice's email: the email itself wins.
        let users = [user("bob", "alice@example.com"), user("alice", "Alice")];
        assert_eq!(matched("alice@example.com", &users), "alice");
        assert_eq!(matched("[L1] ALICE@example.com", &users), "alice");
        assert_eq!(matched("carol@example.com", &users), "nobody");
    }

    #[test]
    fn schedules_ambiguous_display_name_is_reported_not_guessed() {
        let users = [user("sam1", "Sam"), user("sam2", "Sam"), user("eve", "")];
        assert_eq!(
            matched("sam", &users),
            "`sam` is the display name of 2 people"
        );
        assert_eq!(
            matched("[L1] Sam", &users),
            "`[L1] Sam` is the display name of 2 people"
        );
        assert_eq!(matched("sam2", &users), "sam2");
        assert_eq!(matched("nobody-here", &users), "nobody");
    }

    #[test]
    fn schedules_resolve_keys_do_not_depend_on_the_directory() {
        let empty = People::default();
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
