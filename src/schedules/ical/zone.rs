//! Time zones a calendar defines itself: a VTIMEZONE whose TZID is neither an IANA nor a
//! Windows name. calcard resolves zones by name only, so these are built here from the
//! STANDARD/DAYLIGHT observances (RFC 5545 §3.6.5).

use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarProperty,
    ICalendarValue,
};
use chrono::NaiveDateTime;

/// Observance onsets are computed up to this year; rotations do not plan further.
const LAST_YEAR: u16 = 2200;
/// Most onsets of one observance (a yearly rule from 1900 to 2200 needs ~300).
const MAX_ONSETS: usize = 1024;

/// A zone as offsets from UTC that change at given instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Zone {
    /// Offset (seconds east of UTC) before the first transition.
    base: i32,
    /// (UTC second of the change, offset from then on), sorted.
    transitions: Vec<(i64, i32)>,
}

impl Zone {
    /// UTC itself: where a TZID nobody defines is read.
    pub(super) fn utc() -> Zone {
        Zone {
            base: 0,
            transitions: Vec::new(),
        }
    }

    /// Offset in force at a UTC second.
    pub(super) fn offset_at(&self, utc: i64) -> i32 {
        match self.transitions.partition_point(|&(at, _)| at <= utc) {
            0 => self.base,
            i => self.transitions.get(i - 1).map_or(self.base, |t| t.1),
        }
    }

    /// The UTC second of a local time. A repeated local time is its first occurrence and
    /// a skipped one uses the offset before the gap (RFC 5545 §3.3.5).
    pub(super) fn to_utc(&self, local: NaiveDateTime) -> i64 {
        let wall = local.and_utc().timestamp();
        // Transitions are months apart: the offsets a day either side are the candidates.
        let before = self.offset_at(wall.saturating_sub(86_400 + 14 * 3_600));
        let after = self.offset_at(wall.saturating_add(86_400 + 14 * 3_600));
        let fits = |o: i32| self.offset_at(wall - i64::from(o)) == o;
        match (fits(before), fits(after)) {
            (true, true) => wall - i64::from(before.max(after)),
            (true, false) => wall - i64::from(before),
            (false, true) => wall - i64::from(after),
            (false, false) => wall - i64::from(before),
        }
    }

    /// The local time of a UTC second.
    pub(super) fn to_local(&self, utc: i64) -> Option<NaiveDateTime> {
        chrono::DateTime::from_timestamp(utc.saturating_add(i64::from(self.offset_at(utc))), 0)
            .map(|t| t.naive_utc())
    }

    /// Builds the zone of a VTIMEZONE from its observances; None when it has none usable.
    pub(super) fn from_vtimezone(ical: &ICalendar, vtimezone: &ICalendarComponent) -> Option<Zone> {
        let mut transitions: Vec<(i64, i32, i32)> = Vec::new();
        for id in &vtimezone.component_ids {
            let Some(obs) = ical.components.get(*id as usize) else {
                continue;
            };
            if !matches!(
                obs.component_type,
                ICalendarComponentType::Standard | ICalendarComponentType::Daylight
            ) {
                continue;
            }
            let (Some(from), Some(to)) = (
                offset(obs, &ICalendarProperty::Tzoffsetfrom),
                offset(obs, &ICalendarProperty::Tzoffsetto),
            ) else {
                continue;
            };
            for onset in onsets(obs, from) {
                // An onset is a local time in the offset before it.
                transitions.push((onset.and_utc().timestamp() - i64::from(from), from, to));
            }
        }
        transitions.sort_unstable();
        transitions.dedup_by_key(|t| t.0);
        let base = transitions.first().map(|t| t.1)?;
        Some(Zone {
            base,
            transitions: transitions
                .into_iter()
                .map(|(at, _, to)| (at, to))
                .collect(),
        })
    }
}

/// A TZOFFSETFROM/TZOFFSETTO value in seconds.
fn offset(obs: &ICalendarComponent, prop: &ICalendarProperty) -> Option<i32> {
    let value = obs.property(prop)?.values.first()?;
    let dt = match value {
        ICalendarValue::PartialDateTime(dt) => dt,
        _ => return None,
    };
    let seconds = i32::from(dt.tz_hour?) * 3_600 + i32::from(dt.tz_minute.unwrap_or(0)) * 60;
    Some(if dt.tz_minus { -seconds } else { seconds })
}

/// Local onsets of an observance: DTSTART, its RRULE's instances and its RDATEs.
fn onsets(obs: &ICalendarComponent, from: i32) -> Vec<NaiveDateTime> {
    let Some(ICalendarValue::PartialDateTime(start)) = obs
        .property(&ICalendarProperty::Dtstart)
        .and_then(|e| e.values.first())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut start: PartialDateTime = (**start).clone();
    start.tz_hour = None;
    start.tz_minute = None;
    if let Some(rule) = obs
        .property(&ICalendarProperty::Rrule)
        .and_then(|e| e.values.first())
    {
        let mut rule = rule.clone();
        if let ICalendarValue::RecurrenceRule(r) = &mut rule {
            // UNTIL is UTC; onsets are local times in the offset before them.
            if let Some(until) = &mut r.until {
                if until.has_zone()
                    && let Some(utc) = until.to_date_time()
                {
                    let local = utc.date_time + chrono::TimeDelta::seconds(i64::from(from));
                    let _ = super::window::set_local(until, local);
                }
                until.tz_hour = None;
                until.tz_minute = None;
                until.tz_minus = false;
            } else if r.count.is_none() {
                r.until = Some(PartialDateTime {
                    year: Some(LAST_YEAR),
                    month: Some(1),
                    day: Some(1),
                    hour: Some(0),
                    minute: Some(0),
                    second: Some(0),
                    ..Default::default()
                });
            }
        }
        // calcard's expansion in floating time gives the local onsets.
        let event = ICalendarComponent {
            component_type: ICalendarComponentType::VEvent,
            entries: vec![
                ICalendarEntry::new(ICalendarProperty::Dtstart)
                    .with_value(ICalendarValue::PartialDateTime(Box::new(start.clone()))),
                ICalendarEntry::new(ICalendarProperty::Rrule).with_value(rule),
            ],
            component_ids: Vec::new(),
        };
        let cal = ICalendar {
            components: vec![event],
        };
        out.extend(
            cal.expand_dates(Tz::Floating, MAX_ONSETS)
                .events
                .iter()
                .map(|e| e.start.naive_local()),
        );
    } else if let Some(dt) = start.to_date_time() {
        out.push(dt.date_time);
    }
    for entry in obs.properties(&ICalendarProperty::Rdate) {
        for value in &entry.values {
            if let ICalendarValue::PartialDateTime(dt) = value
                && let Some(dt) = dt.to_date_time()
            {
                out.push(dt.date_time);
            }
        }
    }
    out
}
