//! Who is on call now: the tracked calendars, and, when OnCall's public API is configured,
//! OnCall's own schedules (`on_call_now`), for the admin API and the chat commands.

use std::collections::BTreeMap;

use super::{Ack, AckError};
use crate::schedules::{OnCallNow, OnCallSource, OnDutyPerson, StateStatus};

impl Ack {
    /// Every tracked schedule, then each of OnCall's schedules that is not also tracked (by
    /// name). OnCall not answering is logged; the tracked schedules are answered anyway.
    pub async fn on_call_now(&self) -> Result<Vec<OnCallNow>, AckError> {
        let mut now = match &self.schedules {
            Some(schedules) => schedules.on_call_now().await?,
            None => Vec::new(),
        };
        let Some(api) = &self.api else {
            return Ok(now);
        };
        let theirs = match api.schedules().await {
            Ok(theirs) => theirs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read who is on call from OnCall's API");
                return Ok(now);
            }
        };
        // One look-up per person, however many schedules they are on call in.
        let mut people: BTreeMap<String, OnDutyPerson> = BTreeMap::new();
        for schedule in theirs {
            if now
                .iter()
                .any(|s| s.name.eq_ignore_ascii_case(&schedule.name))
            {
                continue;
            }
            let mut on_duty = Vec::new();
            for id in &schedule.on_call_now {
                if !people.contains_key(id) {
                    let person = self.oncall_person(api, id).await;
                    people.insert(id.clone(), person);
                }
                if let Some(person) = people.get(id) {
                    on_duty.push(person.clone());
                }
            }
            on_duty.sort_by(|a, b| a.name.cmp(&b.name));
            now.push(OnCallNow {
                schedule: format!("oncall:{}", schedule.id),
                name: schedule.name,
                people: on_duty,
                state: StateStatus::Current,
                source: OnCallSource::Oncall,
                next: None,
            });
        }
        Ok(now)
    }

    /// OnCall's user `id` as a person on duty: named as in the directory when their email is
    /// there, else by OnCall's username, else by their email or the id itself.
    async fn oncall_person(&self, api: &super::api::OncallApi, id: &str) -> OnDutyPerson {
        let found = api.user(id).await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "cannot read an OnCall user");
            None
        });
        let email = found
            .as_ref()
            .map(|u| u.email.trim().to_string())
            .filter(|e| !e.is_empty());
        let known = match &email {
            Some(email) => self.directory.find_for_delivery(email).await.ok().flatten(),
            None => None,
        };
        // As the calendars name people: the directory's name, else the email.
        let name = match (&known, &found) {
            (Some(user), _) if !user.name.trim().is_empty() => user.name.clone(),
            (Some(user), _) => user.email.clone(),
            (None, Some(u)) if !u.username.trim().is_empty() => u.username.clone(),
            _ => email.clone().unwrap_or_else(|| id.to_string()),
        };
        OnDutyPerson {
            key: email
                .clone()
                .unwrap_or_else(|| id.to_string())
                .to_lowercase(),
            email,
            user_id: known.map(|u| u.id.clone()),
            name,
            shift_end: 0,
        }
    }
}
