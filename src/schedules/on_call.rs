//! Who is on call now, across the tracked schedules, as the admin API and chat commands show it.

use serde::Serialize;

use super::{NextDuty, OnDutyPerson, Schedule, ScheduleError, Schedules, StateStatus};
use crate::store::format_ms;

/// One schedule's people on duty now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OnCallNow {
    /// The schedule's key.
    pub schedule: String,
    /// Its name (the calendar's own when known).
    pub name: String,
    /// The people on duty, by display name (unknown calendar names included).
    pub people: Vec<OnDutyPerson>,
    /// Whether this is what the calendar says now, or the last good state.
    pub state: StateStatus,
    /// Where it comes from: a tracked calendar, or OnCall's API (whose people have
    /// `shift_end` 0: the API does not tell).
    pub source: Source,
    /// Who comes on duty next and when (tracked calendars only).
    pub next: Option<NextDuty>,
}

/// Where an answer to "who is on call" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A tracked schedule's iCal export.
    Calendar,
    /// OnCall's public API (`GET /api/v1/schedules/`, `on_call_now`).
    Oncall,
}

impl From<Schedule> for OnCallNow {
    fn from(s: Schedule) -> OnCallNow {
        let mut people: Vec<OnDutyPerson> = s
            .detail
            .as_ref()
            .map(|d| d.people.values().cloned().collect())
            .unwrap_or_default();
        people.sort_by(|a, b| a.name.cmp(&b.name));
        OnCallNow {
            schedule: s.key.clone(),
            name: s.display_name().to_string(),
            people,
            state: s.state,
            source: Source::Calendar,
            next: s.detail.and_then(|d| d.next),
        }
    }
}

impl Schedules {
    /// Who is on call now in every tracked schedule, as last polled.
    pub async fn on_call_now(&self) -> Result<Vec<OnCallNow>, ScheduleError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .map(OnCallNow::from)
            .collect())
    }
}

/// The answer to a chat's `/oncall`: one line per schedule.
pub fn text(now: &[OnCallNow]) -> String {
    if now.is_empty() {
        return "No schedules are tracked.".into();
    }
    now.iter()
        .map(|s| {
            let people = if s.people.is_empty() {
                "nobody".to_string()
            } else {
                s.people
                    .iter()
                    .map(|p| match p.shift_end {
                        0 => p.name.clone(),
                        end => format!("{} (until {})", p.name, format_ms(end)),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let names = |people: &[OnDutyPerson]| {
                if people.is_empty() {
                    "nobody".to_string()
                } else {
                    people
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            let stale = match s.state {
                StateStatus::LastGood => " [last known: the calendar cannot be read]",
                _ => "",
            };
            let next = match &s.next {
                Some(next) => format!(
                    "; next: {} from {}",
                    names(&next.people),
                    format_ms(next.at)
                ),
                None => String::new(),
            };
            format!("{}: {people}{next}{stale}", s.name)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, shift_end: i64) -> OnDutyPerson {
        OnDutyPerson {
            key: name.to_lowercase(),
            email: None,
            user_id: None,
            name: name.into(),
            shift_end,
        }
    }

    #[test]
    fn one_line_per_schedule() {
        let now = vec![
            OnCallNow {
                schedule: "p".into(),
                name: "Platform".into(),
                people: vec![person("Alice", 3_600_000)],
                state: StateStatus::Current,
                source: Source::Calendar,
                next: Some(NextDuty {
                    at: 3_600_000,
                    people: vec![person("Carol", 7_200_000)],
                }),
            },
            OnCallNow {
                schedule: "d".into(),
                name: "DB".into(),
                people: vec![],
                state: StateStatus::LastGood,
                source: Source::Calendar,
                next: None,
            },
            OnCallNow {
                schedule: "oncall:S1".into(),
                name: "Web".into(),
                people: vec![person("Bob", 0)],
                state: StateStatus::Current,
                source: Source::Oncall,
                next: None,
            },
        ];
        let text = text(&now);
        assert!(
            text.starts_with("Platform: Alice (until 1970-01-01"),
            "{text}"
        );
        assert!(
            text.contains("; next: Carol from 1970-01-01T01:00:00.000Z\nDB"),
            "{text}"
        );
        assert!(
            text.contains("\nDB: nobody [last known: the calendar cannot be read]\n"),
            "{text}"
        );
        // OnCall's API does not tell when a shift ends.
        assert!(text.ends_with("\nWeb: Bob"), "{text}");
        assert_eq!(super::text(&[]), "No schedules are tracked.");
    }
}
