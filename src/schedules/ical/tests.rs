//! Calendars written from RFC 5545 and OnCall's exports, and who they put on duty.
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
    let _ = parse("BEGIN:VCALENDAR\r\nthis is: not ical\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n");
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

#[test]
fn ical_utc_until_on_a_zoned_rule_is_compared_as_an_instant() {
    on_duty(
        "until_utc_zoned.ics",
        &[
            // Berlin 20:00 CEST = 18:00Z = UNTIL: the last instance, UNTIL being inclusive.
            ("2026-04-05T18:30:00Z", &["alice"]),
            ("2026-04-06T18:30:00Z", &[]),
            // New York 09:00 EDT = 13:00Z; UNTIL 12:00Z on 3 April ends the rule on 2 April.
            ("2026-04-02T13:30:00Z", &["bob"]),
            ("2026-04-03T13:30:00Z", &[]),
        ],
    );
}

#[test]
fn ical_truncated_download_is_an_error() {
    let err = parse(&fixture("truncated.ics")).expect_err("a cut-off calendar is refused");
    assert!(err.to_string().contains("incomplete"), "{err}");
    // A calendar cut off right after a complete event is incomplete too.
    let whole = fixture("expanded.ics");
    let cut = whole
        .rfind("END:VCALENDAR")
        .map_or(whole.as_str(), |i| &whole[..i]);
    assert!(parse(cut).is_err());
}

#[test]
fn ical_event_that_cannot_be_built_is_an_error() {
    let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nSUMMARY:alice\r\n\
                DTEND:20260401T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    assert!(parse(text).is_err(), "an event without DTSTART is an error");
}

#[test]
fn ical_custom_vtimezone_is_used_for_its_tzid() {
    let cal = on_duty(
        "custom_vtimezone.ics",
        &[
            // "Head Office" is +02:00 in winter: hand-over Monday 09:00 = 07:00Z.
            ("2026-03-09T06:30:00Z", &["alice"]),
            ("2026-03-09T08:00:00Z", &["bob"]),
            // +03:00 from the last Sunday of March: 09:00 = 06:00Z.
            ("2026-03-30T05:30:00Z", &["bob"]),
            ("2026-03-30T06:30:00Z", &["alice"]),
            // Back to +02:00 after the last Sunday of October.
            ("2026-11-01T10:30:00Z", &["alice", "carol"]),
            ("2026-11-01T11:30:00Z", &["alice"]),
        ],
    );
    assert!(cal.warnings.is_empty(), "{:?}", cal.warnings);
}

#[test]
fn ical_undefined_tzid_is_read_as_utc_and_reported() {
    let cal = parse(&fixture("custom_tzid.ics")).expect("parses");
    // bob's "Mars/Olympus" 09:00 has no definition anywhere: read as 09:00Z.
    assert_eq!(who(&cal, "2026-04-01T08:30:00Z"), ["alice"]);
    assert_eq!(who(&cal, "2026-04-01T09:30:00Z"), ["alice", "bob"]);
    assert!(
        cal.warnings.iter().any(|w| w.contains("read as UTC")),
        "{:?}",
        cal.warnings
    );
}

#[test]
fn ical_open_ended_rules_answer_as_python_recurring_ical_events() {
    // Expected answers computed with icalendar 7 + recurring_ical_events 3.
    on_duty(
        "weekly_open.ics",
        &[
            ("2026-12-01T12:00:00Z", &["user2"]),
            ("2026-12-01T23:00:00Z", &["user16", "user2"]),
            // The EXDATE'd weekend.
            ("2026-12-05T10:00:00Z", &["user2"]),
            // The weekend moved by an hour.
            ("2026-12-12T07:30:00Z", &["user17", "user3"]),
            ("2026-12-12T19:30:00Z", &["user18", "user3"]),
            ("2026-12-13T07:30:00Z", &["user15", "user18", "user3"]),
            // Around the UTC UNTIL of the New York evening rule.
            ("2027-02-27T01:30:00Z", &["user16", "user19", "user4"]),
            ("2027-03-02T01:30:00Z", &["user16", "user5"]),
            ("2027-03-04T01:30:00Z", &["user15", "user5"]),
        ],
    );
    on_duty(
        "weekly_20.ics",
        &[
            ("2026-12-01T12:00:00Z", &["user12"]),
            // Monday 09:00 CET = 08:00Z.
            ("2026-12-07T07:30:00Z", &["user12"]),
            ("2026-12-07T08:30:00Z", &["user13"]),
            // 09:00 CEST = 07:00Z.
            ("2028-06-05T07:30:00Z", &["user11"]),
        ],
    );
    on_duty(
        "oncall_export.ics",
        &[
            ("2026-12-01T08:30:00Z", &["[L2] user13", "user2"]),
            ("2026-12-01T12:00:00Z", &["[L2] user13", "user3"]),
        ],
    );
}

#[test]
fn ical_windowed_expansion_equals_full_expansion() {
    let dir = format!("{}/tests/fixtures/ical", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".ics"))
        .collect();
    names.sort();
    let mut compared = 0;
    for name in names {
        let Ok(cal) = parse(&fixture(&name)) else {
            continue;
        };
        // Every rule expanded from its DTSTART once, over the whole range compared.
        let (first, last) = (ms("2023-05-30T00:00:00Z"), ms("2028-01-01T00:00:00Z"));
        let all = cal.shifts_with(first, last + 9 * 86_400_000, false);
        // From before most rules start to years after, at odd hours, as an instant and
        // as a reminder horizon.
        let mut at = first;
        while at < last {
            for width in [1, 6 * 3_600_000, 8 * 86_400_000] {
                let windowed = cal.shifts_with(at, at + width, true);
                let full: Vec<Shift> = all
                    .iter()
                    .filter(|s| s.start_ms < at + width && s.end_ms > at)
                    .cloned()
                    .collect();
                assert_eq!(windowed, full, "{name} at {at} (+{width} ms)");
                compared += usize::from(!full.is_empty());
            }
            at += 263 * 3_600_000 + 17 * 60_000;
        }
    }
    assert!(compared > 300, "only {compared} non-empty windows compared");
}
