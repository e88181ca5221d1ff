//! Reading an OnCall schedule's iCal export: which shifts cover a moment.
//!
//! Parsing and recurrence expansion are calcard's, with its gaps filled here:
//! - `expand_dates`' limit is one counter for the whole calendar, so each recurring UID is
//!   expanded on its own;
//! - it expands every rule from its DTSTART, so an open-ended rule's start is first moved,
//!   by whole periods, to just before the window a poll needs ([`window`]);
//! - it compares a UTC UNTIL with zone-less local times, so UNTIL is rewritten to the local
//!   time of DTSTART's zone (RFC 5545 §3.3.10);
//! - it resolves zones by name only, so a zone the calendar defines in its own VTIMEZONE is
//!   built here ([`zone`]), and a TZID defined nowhere is read as UTC and reported;
//! - it accepts a calendar cut off mid-way, so the nesting is checked first.

mod window;
mod zone;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use calcard::common::timezone::Tz;
use calcard::icalendar::dates::{CalendarEvent, TimeOrDelta};
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarParameterName,
    ICalendarProperty, ICalendarStatus,
};
use chrono::{DateTime, TimeDelta, TimeZone};

use super::ScheduleError;
use zone::Zone;

/// First expansion limit of a rule expanded from its own DTSTART; grown ×4 while the
/// window is not covered.
const FIRST_FULL_LIMIT: usize = 512;
/// Upper bound of the per-UID limit, so a `FREQ=SECONDLY` rule cannot exhaust memory.
const MAX_LIMIT: usize = 1 << 20;
/// What calcard's expansion yields.
type Expanded = CalendarEvent<DateTime<Tz>, TimeOrDelta<DateTime<Tz>, TimeDelta>>;
/// Zone offsets are within ±14 h: a day of margin covers any local/UTC mix-up.
const DAY_MS: i64 = 86_400_000;

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
    /// Problems that did not prevent evaluation (TZIDs defined nowhere).
    pub warnings: Vec<String>,
    /// Shifts of the events without a rule, expanded once.
    fixed: Vec<Shift>,
    /// One per recurring UID.
    rules: Vec<Part>,
    /// Zone of floating and all-day times: X-WR-TIMEZONE, else UTC.
    default_tz: Tz,
}

/// The events of one UID (or of several without a rule), with what their expansion needs.
#[derive(Debug, Clone)]
struct Part {
    /// The VTIMEZONEs and the events.
    ical: ICalendar,
    /// When the times are in a zone calcard cannot resolve: that zone (calcard then gives
    /// them as floating local times).
    zone: Option<Arc<Zone>>,
    /// How the rule's start may be moved towards a window, when it may.
    window: Option<window::Movable>,
}

/// Parses an iCal text. Fails when the text is not a complete VCALENDAR or an event in it
/// cannot be built.
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
    check_complete(text)?;
    let ical = ICalendar::parse(text)
        .map_err(|e| ScheduleError::Calendar(format!("unparsable iCalendar: {e:?}")))?;
    let (name, default_tz, mut warnings) = header(&ical);

    // Zones calcard cannot name but the calendar defines.
    let resolver = ical.build_tz_resolver();
    let mut custom: HashMap<String, Arc<Zone>> = HashMap::new();
    for tz in ical.timezones() {
        if let Some(tzid) = tz
            .property(&ICalendarProperty::Tzid)
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_text())
            && resolver.resolve(tzid).is_none()
            && let Some(zone) = Zone::from_vtimezone(&ical, tz)
        {
            custom.insert(tzid.to_string(), Arc::new(zone));
        }
    }
    let utc = Arc::new(Zone::utc());
    let mut undefined = std::collections::BTreeSet::new();

    // Group events by UID; a UID with a rule is expanded on its own (only rules use the
    // limit), and so is one whose times are in a zone calcard cannot resolve.
    let mut groups: BTreeMap<String, (Vec<ICalendarComponent>, Option<Arc<Zone>>)> =
        BTreeMap::new();
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
        let group = groups.entry(uid).or_default();
        for tzid in comp
            .entries
            .iter()
            .flat_map(|e| e.parameters(&ICalendarParameterName::Tzid))
            .filter_map(|v| v.as_text())
        {
            if resolver.resolve(tzid).is_some() {
                continue;
            }
            let zone = custom.get(tzid).cloned().unwrap_or_else(|| {
                undefined.insert(tzid.to_string());
                utc.clone()
            });
            group.1.get_or_insert(zone);
        }
        group.0.push(comp);
    }
    for tzid in undefined {
        warnings.push(format!(
            "TZID `{tzid}` is neither a known zone nor defined in the calendar: its times are read as UTC"
        ));
    }

    let timezones: Vec<ICalendarComponent> = ical.timezones().cloned().collect();
    let calendar_of = |comps: Vec<ICalendarComponent>| {
        let mut components = timezones.clone();
        components.extend(comps);
        ICalendar { components }
    };
    let mut rules = Vec::new();
    let mut plain: Vec<ICalendarComponent> = Vec::new();
    let mut fixed = Vec::new();
    for (uid, (mut comps, zone)) in groups {
        let recurring = comps
            .iter()
            .any(|c| c.property(&ICalendarProperty::Rrule).is_some());
        if recurring {
            for comp in &mut comps {
                window::until_as_local(comp, &resolver, zone.as_deref(), default_tz);
            }
        }
        if !recurring && zone.is_none() {
            plain.extend(comps);
            continue;
        }
        let part = Part {
            window: if recurring {
                window::Movable::of(&comps)
            } else {
                None
            },
            ical: calendar_of(comps),
            zone,
        };
        let tz = part.expansion_tz(default_tz);
        // Expanding one instance is enough to find an event that cannot be built.
        let checked = part
            .ical
            .expand_dates(tz, if recurring { 1 } else { MAX_LIMIT });
        if let Some(e) = checked.errors.first() {
            return Err(ScheduleError::Calendar(format!(
                "event `{uid}` cannot be read: {:?}",
                e.error
            )));
        }
        if recurring {
            rules.push(part);
        } else {
            part.collect(checked.events, i64::MIN, i64::MAX, &mut fixed);
        }
    }
    if !plain.is_empty() {
        let part = Part {
            ical: calendar_of(plain),
            zone: None,
            window: None,
        };
        let expanded = part.ical.expand_dates(default_tz, MAX_LIMIT);
        if let Some(e) = expanded.errors.first() {
            let uid = part
                .ical
                .components
                .get(e.comp_id as usize)
                .and_then(|c| c.uid())
                .unwrap_or("without UID");
            return Err(ScheduleError::Calendar(format!(
                "event `{uid}` cannot be read: {:?}",
                e.error
            )));
        }
        part.collect(expanded.events, i64::MIN, i64::MAX, &mut fixed);
    }
    fixed.sort_by_key(|s| s.start_ms);
    Ok(Calendar {
        name,
        warnings,
        fixed,
        rules,
        default_tz,
    })
}

/// The calendar's name, default zone and the warnings about them.
fn header(ical: &ICalendar) -> (Option<String>, Tz, Vec<String>) {
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
    (name, default_tz, warnings)
}

/// Fails unless every BEGIN has its END: a download cut off mid-way parses as a shorter,
/// valid-looking calendar otherwise.
fn check_complete(text: &str) -> Result<(), ScheduleError> {
    let mut open: Vec<String> = Vec::new();
    for line in text.lines() {
        // Folded continuation lines start with white space; BEGIN/END lines are short.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim_end();
        let upper = line.get(..6).map(str::to_ascii_uppercase);
        if upper.as_deref() == Some("BEGIN:") {
            open.push(line.get(6..).unwrap_or("").trim().to_ascii_uppercase());
        } else if upper.as_deref().is_some_and(|u| u.starts_with("END:")) {
            let name = line.get(4..).unwrap_or("").trim().to_ascii_uppercase();
            match open.pop() {
                Some(begun) if begun == name => {}
                Some(begun) => {
                    return Err(ScheduleError::Calendar(format!(
                        "calendar is malformed: END:{name} closes BEGIN:{begun}"
                    )));
                }
                None => {
                    return Err(ScheduleError::Calendar(format!(
                        "calendar is malformed: END:{name} without BEGIN"
                    )));
                }
            }
            if open.is_empty() {
                return Ok(());
            }
        }
    }
    match open.last() {
        Some(inside) => Err(ScheduleError::Calendar(format!(
            "calendar is incomplete: it ends inside {inside} (download cut off?)"
        ))),
        None => Ok(()),
    }
}

impl Part {
    /// The zone calcard reads zone-less times in: floating when the part has its own zone.
    fn expansion_tz(&self, default_tz: Tz) -> Tz {
        if self.zone.is_some() {
            Tz::Floating
        } else {
            default_tz
        }
    }

    /// The UTC millisecond of an expanded time.
    fn instant(&self, t: &DateTime<Tz>) -> i64 {
        match &self.zone {
            Some(zone) if t.timezone().is_floating() => {
                zone.to_utc(t.naive_local()).saturating_mul(1000)
            }
            _ => t.timestamp_millis(),
        }
    }

    /// Turns expanded events into shifts overlapping `[from_ms, to_ms)`, cancelled ones
    /// left out.
    fn collect(&self, events: Vec<Expanded>, from_ms: i64, to_ms: i64, out: &mut Vec<Shift>) {
        for event in events {
            let Some(comp) = self.ical.components.get(event.comp_id as usize) else {
                continue;
            };
            if comp.status() == Some(&ICalendarStatus::Cancelled) {
                continue;
            }
            let start_ms = self.instant(&event.start);
            let end_ms = match event.end {
                TimeOrDelta::Time(t) => self.instant(&t),
                // calcard adds the length as an exact duration. A rotation "Monday 09:00
                // for 7 days" must still hand over at 09:00 local after a DST change, so
                // whole-day lengths are applied to the local time (RFC 5545's nominal
                // duration); shorter ones stay exact.
                TimeOrDelta::Delta(d) if d.num_seconds() % 86_400 == 0 => {
                    let local = event.start.naive_local() + d;
                    let exact = start_ms.saturating_add(d.num_milliseconds());
                    match &self.zone {
                        Some(zone) if event.start.timezone().is_floating() => {
                            zone.to_utc(local).saturating_mul(1000)
                        }
                        _ => event
                            .start
                            .timezone()
                            .from_local_datetime(&local)
                            .earliest()
                            .map_or(exact, |t| t.timestamp_millis()),
                    }
                }
                TimeOrDelta::Delta(d) => start_ms.saturating_add(d.num_milliseconds()),
            };
            // An event without DTEND/DURATION lasts one day if all-day (RFC 5545 3.6.1).
            let end_ms = if end_ms <= start_ms && is_all_day(comp) {
                start_ms + DAY_MS
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

    /// Expands the rule's instances overlapping `[from_ms, to_ms)`; with `windowed`, from
    /// a start moved close to the window.
    fn expand(
        &self,
        default_tz: Tz,
        from_ms: i64,
        to_ms: i64,
        windowed: bool,
        out: &mut Vec<Shift>,
    ) {
        let moved = if windowed {
            self.window
                .as_ref()
                .and_then(|w| w.moved(&self.ical, from_ms))
        } else {
            None
        };
        let ical = moved.as_ref().unwrap_or(&self.ical);
        let tz = self.expansion_tz(default_tz);
        let mut limit = match (&moved, &self.window) {
            (Some(_), Some(w)) => w.instances_for(from_ms, to_ms).clamp(4, MAX_LIMIT),
            _ => FIRST_FULL_LIMIT,
        };
        let mut previous_len = usize::MAX;
        let expanded = loop {
            let expanded = ical.expand_dates(tz, limit);
            let latest = expanded
                .events
                .iter()
                .map(|e| e.start.timestamp_millis())
                .max()
                .unwrap_or(i64::MIN);
            // Grow while the rule still runs and has not reached the window's end (a day
            // further, as floating times are off by the zone's offset).
            if latest >= to_ms.saturating_add(DAY_MS)
                || limit >= MAX_LIMIT
                || expanded.events.len() == previous_len
            {
                break expanded;
            }
            previous_len = expanded.events.len();
            limit *= 4;
        };
        // A moved calendar keeps the components' order: ids index the original too.
        self.collect(expanded.events, from_ms, to_ms, out);
    }
}

impl Calendar {
    /// Shifts overlapping `[from_ms, to_ms)`, cancelled ones left out, sorted by start.
    pub fn shifts(&self, from_ms: i64, to_ms: i64) -> Vec<Shift> {
        self.shifts_with(from_ms, to_ms, true)
    }

    /// Shifts covering the instant `at_ms`.
    pub fn at(&self, at_ms: i64) -> Vec<Shift> {
        self.shifts(at_ms, at_ms + 1)
    }

    /// [`Calendar::shifts`], expanding each rule either from a start near the window or,
    /// without `windowed`, from its own DTSTART (the reference the windowed answer must
    /// equal).
    fn shifts_with(&self, from_ms: i64, to_ms: i64, windowed: bool) -> Vec<Shift> {
        let mut out: Vec<Shift> = self
            .fixed
            .iter()
            .filter(|s| s.start_ms < to_ms && s.end_ms > from_ms)
            .cloned()
            .collect();
        for part in &self.rules {
            part.expand(self.default_tz, from_ms, to_ms, windowed, &mut out);
        }
        out.sort_by(|a, b| (a.start_ms, &a.summary).cmp(&(b.start_ms, &b.summary)));
        out
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
mod tests;
