//! Rewriting a rule so calcard expands it right and only as far as a poll needs.

use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz;
use calcard::icalendar::timezone::TzResolver;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarFrequency, ICalendarParameterName, ICalendarProperty,
    ICalendarValue,
};
use chrono::{NaiveDateTime, TimeDelta, TimeZone};

use super::zone::Zone;

/// A rule whose DTSTART may move forward by whole periods without changing any instance
/// after the new start: no COUNT (it counts from DTSTART), a DAILY or WEEKLY frequency
/// (whole days and weeks keep the weekday, time of day and week parity its BYxxx parts
/// and INTERVAL are relative to), and no RANGE=THISANDFUTURE override.
#[derive(Debug, Clone)]
pub(super) struct Movable {
    /// Length of INTERVAL periods, in days.
    period_days: i64,
    /// DTSTART as a local time.
    start: NaiveDateTime,
    /// How long an instance lasts (its nominal length).
    span: TimeDelta,
    /// Most instances one period can have (BYDAY of a weekly rule).
    per_period: usize,
}

impl Movable {
    /// What moving the only rule of one UID's events needs; None when it may not move.
    pub(super) fn of(comps: &[ICalendarComponent]) -> Option<Movable> {
        let mut masters = comps
            .iter()
            .filter(|c| c.property(&ICalendarProperty::Rrule).is_some());
        let master = masters.next()?;
        if masters.next().is_some() || comps.iter().any(has_range) {
            return None;
        }
        let Some(ICalendarValue::RecurrenceRule(rule)) = master
            .property(&ICalendarProperty::Rrule)
            .and_then(|e| e.values.first())
        else {
            return None;
        };
        if rule.count.is_some() {
            return None;
        }
        let interval = i64::from(rule.interval.unwrap_or(1).max(1));
        let (period_days, per_period) = match rule.freq {
            ICalendarFrequency::Daily => (interval, 1),
            ICalendarFrequency::Weekly => (interval * 7, rule.byday.len().max(1)),
            _ => return None,
        };
        let start = local(master, &ICalendarProperty::Dtstart)?;
        let span = match local(master, &ICalendarProperty::Dtend) {
            Some(end) => end - start,
            None => master
                .property(&ICalendarProperty::Duration)
                .and_then(|e| e.values.first())
                .and_then(|v| match v {
                    ICalendarValue::Duration(d) => d.to_time_delta(),
                    _ => None,
                })
                .unwrap_or(TimeDelta::days(1)),
        };
        Some(Movable {
            period_days,
            start,
            span: span.max(TimeDelta::zero()),
            per_period,
        })
    }

    /// How many instances from the moved start cover `[from_ms, to_ms)`, about: the
    /// expansion limit to start with.
    pub(super) fn instances_for(&self, from_ms: i64, to_ms: i64) -> usize {
        let days = (to_ms.saturating_sub(from_ms) / 86_400_000)
            .saturating_add(self.span.num_days())
            .saturating_add(3);
        let periods = days / self.period_days + 2;
        usize::try_from(periods)
            .unwrap_or(usize::MAX)
            .saturating_mul(self.per_period)
    }

    /// A copy of `ical` whose rule starts by whole periods later but still before any
    /// instance that can overlap `from_ms`; None when there is nothing to skip.
    pub(super) fn moved(&self, ical: &ICalendar, from_ms: i64) -> Option<ICalendar> {
        let from = chrono::DateTime::from_timestamp_millis(from_ms)?.naive_utc();
        // Two days cover any zone offset and the nominal length's DST hour.
        let lower = from - self.span - TimeDelta::days(2);
        let periods = (lower - self.start).num_days().div_euclid(self.period_days);
        if periods <= 0 {
            return None;
        }
        let delta = TimeDelta::days(periods.checked_mul(self.period_days)?);
        let mut moved = ical.clone();
        for comp in moved
            .components
            .iter_mut()
            .filter(|c| c.property(&ICalendarProperty::Rrule).is_some())
        {
            for entry in comp.entries.iter_mut().filter(|e| {
                matches!(
                    e.name,
                    ICalendarProperty::Dtstart | ICalendarProperty::Dtend
                )
            }) {
                if let Some(ICalendarValue::PartialDateTime(dt)) = entry.values.first_mut() {
                    let shifted = dt.to_date_time()?.date_time.checked_add_signed(delta)?;
                    set_local(dt, shifted)?;
                }
            }
        }
        Some(moved)
    }
}

/// Whether a component is an override of this and future instances.
fn has_range(comp: &ICalendarComponent) -> bool {
    comp.property(&ICalendarProperty::RecurrenceId)
        .is_some_and(|e| {
            e.parameters(&ICalendarParameterName::Range)
                .next()
                .is_some()
        })
}

/// A date or date-time property as written (its local time).
fn local(comp: &ICalendarComponent, prop: &ICalendarProperty) -> Option<NaiveDateTime> {
    match comp.property(prop)?.values.first()? {
        ICalendarValue::PartialDateTime(dt) => dt.to_date_time().map(|d| d.date_time),
        _ => None,
    }
}

/// Writes a local time into a date or date-time value, keeping its form.
pub(super) fn set_local(dt: &mut PartialDateTime, t: NaiveDateTime) -> Option<()> {
    use chrono::{Datelike, Timelike};
    dt.year = Some(u16::try_from(t.year()).ok()?);
    dt.month = Some(u8::try_from(t.month()).ok()?);
    dt.day = Some(u8::try_from(t.day()).ok()?);
    if dt.has_time() {
        dt.hour = Some(u8::try_from(t.hour()).ok()?);
        dt.minute = Some(u8::try_from(t.minute()).ok()?);
        dt.second = Some(u8::try_from(t.second()).ok()?);
    }
    Some(())
}

/// Rewrites a UTC UNTIL as the local time of DTSTART's zone. calcard compares UNTIL with
/// the instances' local times; RFC 5545 §3.3.10 makes a UTC UNTIL an instant, inclusive.
pub(super) fn until_as_local(
    comp: &mut ICalendarComponent,
    resolver: &TzResolver<&str>,
    zone: Option<&Zone>,
    default_tz: Tz,
) {
    let Some(start) = comp.property(&ICalendarProperty::Dtstart) else {
        return;
    };
    let Some(ICalendarValue::PartialDateTime(start_value)) = start.values.first() else {
        return;
    };
    // A UTC DTSTART already compares right; a date DTSTART takes a date UNTIL.
    if start_value.has_zone() || !start_value.has_time() {
        return;
    }
    let tzid = start.tz_id().map(str::to_string);
    for entry in comp
        .entries
        .iter_mut()
        .filter(|e| e.name == ICalendarProperty::Rrule)
    {
        let Some(ICalendarValue::RecurrenceRule(rule)) = entry.values.first_mut() else {
            continue;
        };
        let Some(until) = &mut rule.until else {
            continue;
        };
        if !until.has_zone() || !until.has_time() {
            continue;
        }
        let Some(utc) = until.to_date_time().map(|d| d.date_time) else {
            continue;
        };
        let as_local = match (tzid.as_deref().and_then(|id| resolver.resolve(id)), zone) {
            (Some(tz), _) => Some(tz.from_utc_datetime(&utc).naive_local()),
            (None, Some(zone)) => zone.to_local(utc.and_utc().timestamp()),
            (None, None) => Some(default_tz.from_utc_datetime(&utc).naive_local()),
        };
        if let Some(t) = as_local
            && set_local(until, t).is_some()
        {
            until.tz_hour = None;
            until.tz_minute = None;
            until.tz_minus = false;
        }
    }
}
