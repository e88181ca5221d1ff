//! Who is on duty: calendar shifts resolved to people in the directory, and when that next
//! changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ical;
use crate::directory::{People, User};

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
