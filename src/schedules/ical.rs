//! Reading an OnCall schedule's iCal export: which shifts cover a moment.
//!
//! Parsing and recurrence expansion are calcard's. Two of its traps are handled here:
//! `expand_dates`' limit is one counter for the whole calendar (so each recurring UID is
//! expanded on its own, with a limit grown until the window is covered), and an unknown TZID
//! silently falls back to the default zone (so every TZID is checked and reported).

use std::collections::BTreeMap;
use std::str::FromStr;

use calcard::common::timezone::Tz;
use calcard::icalendar::dates::TimeOrDelta;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarParameterName,
    ICalendarProperty, ICalendarStatus,
};
use chrono::TimeZone;

use super::ScheduleError;

/// First expansion limit per recurring UID; grown ×4 while the window is not covered.
const FIRST_LIMIT: usize = 512;
/// Upper bound of the per-UID limit, so a `FREQ=SECONDLY` rule cannot exhaust memory.
const MAX_LIMIT: usize = 1 << 20;

/// One occurrence of an event: who is on duty, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    /// Emails from ATTENDEE (or ORGANIZER when there is no attendee), lower-cased.
    pub emails: Vec<String>,
    /// The SUMMARY (OnCall puts the username there).
    pub summary: String,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End (exclusive), Unix ms.
    pub end_ms: i64,
}

/// A parsed calendar, ready to be evaluated at any moment.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// NAME or X-WR-CALNAME, when the calendar has one.
    pub name: Option<String>,
    /// Problems that did not prevent evaluation (unknown TZIDs, broken events).
    pub warnings: Vec<String>,
    /// Calendars to expand: one per recurring UID, one for all the others.
    parts: Vec<ICalendar>,
    /// Zone of floating and all-day times: X-WR-TIMEZONE, else UTC.
    default_tz: Tz,
}

/// Parses an iCal text. Fails when the text is not a VCALENDAR.
pub fn parse(text: &str) -> Result<Calendar, ScheduleError> {
    if !text
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("BEGIN:VCALENDAR")
    {
        return Err(ScheduleError::Calendar(
            "not an iCalendar (no BEGIN:VCALENDAR)".into(),
        ));
    }
    let ical = ICalendar::parse(text)
        .map_err(|e| ScheduleError::Calendar(format!("unparsable iCalendar: {e:?}")))?;
    let mut name = None;
    let mut default_tz = Tz::UTC;
    let mut warnings = Vec::new();
    if let Some(root) = ical
        .components
        .iter()
        .find(|c| c.component_type == ICalendarComponentType::VCalendar)
    {
        for entry in &root.entries {
            let value = entry.values.first().and_then(|v| v.as_text());
            match (&entry.name, value) {
                (ICalendarProperty::Name, Some(v)) => name = Some(v.to_string()),
                (ICalendarProperty::Other(n), Some(v))
                    if n.eq_ignore_ascii_case("X-WR-CALNAME") && name.is_none() =>
                {
                    name = Some(v.to_string())
                }
                (ICalendarProperty::Other(n), Some(v))
                    if n.eq_ignore_ascii_case("X-WR-TIMEZONE") =>
                {
                    match Tz::from_str(v) {
                        Ok(tz) => default_tz = tz,
                        Err(_) => warnings.push(format!("unknown X-WR-TIMEZONE `{v}`, using UTC")),
                    }
                }
                _ => {}
            }
        }
    }
    let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());

    let timezones: Vec<ICalendarComponent> = ical.timezones().cloned().collect();
    // Unknown zones fall back silently inside calcard: find them first.
    {
        let resolver = ical.build_tz_resolver();
        let mut unknown = std::collections::BTreeSet::new();
        for comp in ical
            .components
            .iter()
            .filter(|c| c.component_type == ICalendarComponentType::VEvent)
        {
            for entry in &comp.entries {
                for tzid in entry
                    .parameters(&ICalendarParameterName::Tzid)
                    .filter_map(|v| v.as_text())
                {
                    if resolver.resolve(tzid).is_none() {
                        unknown.insert(tzid.to_string());
                    }
                }
            }
        }
        for tzid in unknown {
            warnings.push(format!("unknown TZID `{tzid}`: its times are read as UTC"));
        }
    }

    // Group events by UID; only UIDs with a rule need their own expansion (only rules use
    // the limit), the rest share one calendar.
    let mut by_uid: BTreeMap<String, Vec<ICalendarComponent>> = BTreeMap::new();
    let mut plain: Vec<ICalendarComponent> = Vec::new();
    for (i, comp) in ical.components.iter().enumerate() {
        if comp.component_type != ICalendarComponentType::VEvent {
            continue;
        }
        let mut comp = comp.clone();
        // calcard matches an override to its master on (SEQUENCE, RECURRENCE-ID), but
        // editors bump SEQUENCE on overrides only: within one UID the sequence is moot.
        comp.entries
            .retain(|e| e.name != ICalendarProperty::Sequence);
        comp.component_ids.clear();
        let uid = comp
            .uid()
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{i}"));
        by_uid.entry(uid).or_default().push(comp);
    }
    let mut parts = Vec::new();
    for (_, comps) in by_uid {
        if comps
            .iter()
            .any(|c| c.property(&ICalendarProperty::Rrule).is_some())
        {
            let mut components = timezones.clone();
            components.extend(comps);
            parts.push(ICalendar { components });
        } else {
            plain.extend(comps);
        }
    }
    if !plain.is_empty() {
        let mut components = timezones.clone();
        components.extend(plain);
        parts.push(ICalendar { components });
    }
    Ok(Calendar {
        name,
        warnings,
        parts,
        default_tz,
    })
}

impl Calendar {
    /// Shifts overlapping `[from_ms, to_ms)`, cancelled ones left out, sorted by start.
    pub fn shifts(&self, from_ms: i64, to_ms: i64) -> Vec<Shift> {
        let mut out = Vec::new();
        for part in &self.parts {
            let recurring = part
                .components
                .iter()
                .any(|c| c.property(&ICalendarProperty::Rrule).is_some());
            let mut limit = FIRST_LIMIT;
            let mut previous_len = usize::MAX;
            let expanded = loop {
                let expanded = part.expand_dates(self.default_tz, limit);
                let latest = expanded
                    .events
                    .iter()
                    .map(|e| e.start.timestamp_millis())
                    .max()
                    .unwrap_or(i64::MIN);
                // Grow while the rule still runs and has not reached the window's end.
                if !recurring
                    || latest >= to_ms
                    || limit >= MAX_LIMIT
                    || expanded.events.len() == previous_len
                {
                    break expanded;
                }
                previous_len = expanded.events.len();
                limit *= 4;
            };
            for event in expanded.events {
                let Some(comp) = part.components.get(event.comp_id as usize) else {
                    continue;
                };
                if comp.status() == Some(&ICalendarStatus::Cancelled) {
                    continue;
                }
                let start_ms = event.start.timestamp_millis();
                let end_ms = match event.end {
                    TimeOrDelta::Time(t) => t.timestamp_millis(),
                    // calcard adds the length as an exact duration. A rotation "Monday 09:00
                    // for 7 days" must still hand over at 09:00 local after a DST change, so
                    // whole-day lengths are applied to the local time (RFC 5545's nominal
                    // duration); shorter ones stay exact.
                    TimeOrDelta::Delta(d) if d.num_seconds() % 86_400 == 0 => {
                        let local = event.start.naive_local() + d;
                        event
                            .start
                            .timezone()
                            .from_local_datetime(&local)
                            .earliest()
                            .map_or(start_ms.saturating_add(d.num_milliseconds()), |t| {
                                t.timestamp_millis()
                            })
                    }
                    TimeOrDelta::Delta(d) => start_ms.saturating_add(d.num_milliseconds()),
                };
                // An event without DTEND/DURATION lasts one day if all-day (RFC 5545 3.6.1).
                let end_ms = if end_ms <= start_ms && is_all_day(comp) {
                    start_ms + 86_400_000
                } else {
                    end_ms
                };
                if start_ms < to_ms && end_ms > from_ms && end_ms > start_ms {
                    out.push(Shift {
                        emails: emails(comp),
                        summary: summary(comp),
                        start_ms,
                        end_ms,
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.start_ms, &a.summary).cmp(&(b.start_ms, &b.summary)));
        out
    }

    /// Shifts covering the instant `at_ms`.
    pub fn at(&self, at_ms: i64) -> Vec<Shift> {
        self.shifts(at_ms, at_ms + 1)
    }
}

fn is_all_day(comp: &ICalendarComponent) -> bool {
    comp.property(&ICalendarProperty::Dtstart)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_partial_date_time())
        .is_some_and(|dt| !dt.has_time())
}

fn summary(comp: &ICalendarComponent) -> String {
    comp.property(&ICalendarProperty::Summary)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .unwrap_or("")
        .trim()
        .to_string()
}

fn emails(comp: &ICalendarComponent) -> Vec<String> {
    let from = |prop: &ICalendarProperty| -> Vec<String> {
        comp.properties(prop)
            .filter_map(|e| e.values.first().and_then(|v| v.as_text()))
            .map(|v| {
                calcard::icalendar::utils::strip_mailto_scheme(v)
                    .trim()
                    .to_lowercase()
            })
            .filter(|v| v.contains('@'))
            .collect()
    };
    let attendees = from(&ICalendarProperty::Attendee);
    if attendees.is_empty() {
        from(&ICalendarProperty::Organizer)
    } else {
        attendees
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/ical/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("test timestamp")
            .timestamp_millis()
    }

    /// Summaries (or emails when present) on duty at `at`, sorted.
    fn who(cal: &Calendar, at: &str) -> Vec<String> {
        let mut v: Vec<String> = cal
            .at(ms(at))
            .into_iter()
            .map(|s| {
                if s.emails.is_empty() {
                    s.summary
                } else {
                    s.emails.join(",")
                }
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Parses fixture `name` and asserts who is on duty at each moment.
    fn on_duty(name: &str, expected: &[(&str, &[&str])]) -> Calendar {
        let cal = parse(&fixture(name)).expect("parses");
        for (at, names) in expected {
            assert_eq!(who(&cal, at), *names, "{name} at {at}");
        }
        cal
    }

    #[test]
    fn ical_weekly_rotation_across_dst_in_berlin() {
        let cal = on_duty(
            "berlin_weekly.ics",
            &[
                // Before DST (CET): hand-over Monday 09:00 local = 08:00Z.
                ("2026-03-09T07:30:00Z", &["alice"]),
                ("2026-03-09T08:30:00Z", &["bob"]),
                // DST started 29 March: hand-over at 09:00 CEST = 07:00Z, and bob's shift ends then.
                ("2026-03-30T06:30:00Z", &["bob"]),
                ("2026-03-30T07:30:00Z", &["alice"]),
            ],
        );
        assert_eq!(cal.name.as_deref(), Some("Berlin primary"));
        assert!(cal.warnings.is_empty(), "{:?}", cal.warnings);
        // Far in the future the rotation still runs.
        assert_eq!(who(&cal, "2027-03-01T12:00:00Z").len(), 1);
    }

    #[test]
    fn ical_weekly_rotation_across_dst_in_new_york_by_email() {
        let cal = on_duty(
            "newyork_weekly.ics",
            &[
                // EST: 09:00 = 14:00Z on 2 March.
                ("2026-03-02T13:30:00Z", &[]),
                ("2026-03-02T14:30:00Z", &["carol@example.com"]),
                // EDT from 8 March: hand-over 9 March 09:00 = 13:00Z, no overlap.
                ("2026-03-09T12:30:00Z", &["carol@example.com"]),
                ("2026-03-09T13:30:00Z", &["dave@example.com"]),
            ],
        );
        assert!(cal.warnings.is_empty(), "{:?}", cal.warnings);
    }

    #[test]
    fn ical_override_and_cancelled_instance() {
        on_duty(
            "override.ics",
            &[
                ("2026-04-04T12:00:00Z", &["alice"]),
                // Overridden (with a bumped SEQUENCE): bob, one hour later.
                ("2026-04-05T08:30:00Z", &[]),
                ("2026-04-05T12:00:00Z", &["bob"]),
                ("2026-04-05T20:30:00Z", &["bob"]),
                // Cancelled instance: nobody.
                ("2026-04-06T12:00:00Z", &[]),
                ("2026-04-07T12:00:00Z", &["alice"]),
            ],
        );
    }

    #[test]
    fn ical_exdate_gap_and_rdate() {
        on_duty(
            "exdate.ics",
            &[
                ("2026-04-02T12:00:00Z", &["alice"]),
                ("2026-04-03T12:00:00Z", &[]),
                ("2026-04-04T12:00:00Z", &["alice"]),
                // COUNT=10 ends on 10 April; the RDATE adds 20 April.
                ("2026-04-15T12:00:00Z", &[]),
                ("2026-04-20T12:00:00Z", &["alice"]),
            ],
        );
    }

    #[test]
    fn ical_overlapping_shifts_and_cancelled_event() {
        let cal = on_duty(
            "overlap.ics",
            &[
                ("2026-04-01T10:00:00Z", &["alice"]),
                ("2026-04-01T17:30:00Z", &["[L2] bob", "alice"]),
                ("2026-04-01T20:00:00Z", &["[L2] bob"]),
            ],
        );
        assert_eq!(cal.name.as_deref(), Some("Overlap team"));
        let shifts = cal.at(ms("2026-04-01T17:30:00Z"));
        assert_eq!(shifts.len(), 3, "two shifts of alice overlap too");
    }

    #[test]
    fn ical_all_day_events_use_the_calendar_zone() {
        on_duty(
            "allday.ics",
            &[
                // 1 April in Europe/Berlin (CEST) starts at 31 March 22:00Z.
                ("2026-03-31T21:30:00Z", &[]),
                ("2026-03-31T22:30:00Z", &["alice"]),
                ("2026-04-01T22:30:00Z", &["bob"]),
                ("2026-04-03T21:30:00Z", &["bob"]),
                ("2026-04-03T22:30:00Z", &[]),
            ],
        );
    }

    #[test]
    fn ical_vtimezone_only_calendar_has_nobody() {
        let cal = parse(&fixture("vtimezone_only.ics")).expect("parses");
        assert!(cal.at(ms("2026-04-01T12:00:00Z")).is_empty());
    }

    #[test]
    fn ical_custom_tzid_resolves_and_unknown_tzid_is_reported() {
        let cal = parse(&fixture("custom_tzid.ics")).expect("parses");
        // "My Office Time" is Europe/Berlin via X-LIC-LOCATION: 09:00 CEST = 07:00Z.
        assert_eq!(who(&cal, "2026-04-01T07:30:00Z"), ["alice"]);
        assert_eq!(cal.warnings.len(), 1, "{:?}", cal.warnings);
        assert!(
            cal.warnings[0].contains("Mars/Olympus"),
            "{:?}",
            cal.warnings
        );
    }

    #[test]
    fn ical_expanded_export_without_rrule() {
        let cal = on_duty(
            "expanded.ics",
            &[
                ("2026-04-01T12:00:00Z", &["alice"]),
                ("2026-04-02T00:00:00Z", &["bob"]),
                ("2026-04-03T23:59:59Z", &["alice"]),
                ("2026-04-04T00:00:00Z", &[]),
            ],
        );
        assert_eq!(cal.name.as_deref(), Some("Infra primary"));
    }

    #[test]
    fn ical_malformed_file_is_an_error() {
        assert!(parse(&fixture("malformed.ics")).is_err());
        assert!(parse("").is_err());
        // Junk inside a VCALENDAR must not panic.
        let _ =
            parse("BEGIN:VCALENDAR\r\nthis is: not ical\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n");
    }

    #[test]
    fn ical_old_daily_rule_does_not_hide_other_events() {
        on_duty(
            "limit_trap.ics",
            &[
                ("2026-04-01T00:30:00Z", &["alice", "nightly"]),
                ("2026-04-01T12:00:00Z", &["alice"]),
            ],
        );
    }
}
