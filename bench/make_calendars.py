#!/usr/bin/env python3
"""Writes the two calendar shapes the schedule benchmark and tests use.

oncall_export.ics: what OnCall's schedule export looks like, one VEVENT per shift for a
year (a daily L1 rotation, a weekly [L2] one, and a few overrides).
weekly_20.ics: 20 open-ended weekly rules started in 2024, a 20-week rotation in Berlin.
weekly_open.ics: 20 open-ended rules started years ago (weekly rotations in Berlin, New
York business days, UTC nights every third day), with an EXDATE, an override and a
zoned rule with a UTC UNTIL.
"""
import datetime as dt
import os
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "tests", "fixtures", "ical")
UTC = dt.timezone.utc


def z(t):
    return t.strftime("%Y%m%dT%H%M%SZ")


def oncall_export():
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Grafana Labs//Grafana On-Call//",
             "CALSCALE:GREGORIAN", "X-WR-CALNAME:Infra primary"]
    start = dt.datetime(2026, 6, 1, 9, tzinfo=UTC)

    def event(uid, summary, s, e):
        lines.extend(["BEGIN:VEVENT", f"SUMMARY:{summary}", f"DTSTART:{z(s)}",
                      f"DTEND:{z(e)}", "DTSTAMP:20260601T000000Z", f"UID:{uid}", "END:VEVENT"])

    for day in range(365):
        s = start + dt.timedelta(days=day)
        event(f"oncall-l1-{day}", f"user{day % 20}", s, s + dt.timedelta(days=1))
    for week in range(53):
        s = start + dt.timedelta(weeks=week)
        event(f"oncall-l2-{week}", f"[L2] user{(week + 7) % 20}", s, s + dt.timedelta(weeks=1))
    for n in range(24):
        s = start + dt.timedelta(days=15 * n, hours=3)
        event(f"oncall-override-{n}", f"user{(n * 3) % 20}", s, s + dt.timedelta(hours=6))
    lines.append("END:VCALENDAR")
    return lines


def weekly_open():
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "X-WR-CALNAME:Open rotations"]

    def event(uid, summary, *props):
        lines.extend(["BEGIN:VEVENT", f"UID:{uid}", f"SUMMARY:{summary}", *props, "END:VEVENT"])

    monday = dt.date(2024, 1, 1)
    for i in range(10):
        d = monday + dt.timedelta(weeks=i)
        e = d + dt.timedelta(weeks=1)
        event(f"berlin-{i}", f"user{i}", f"DTSTART;TZID=Europe/Berlin:{d:%Y%m%d}T090000",
              f"DTEND;TZID=Europe/Berlin:{e:%Y%m%d}T090000", "RRULE:FREQ=WEEKLY;INTERVAL=10")
    for i in range(10, 15):
        d = monday + dt.timedelta(weeks=i - 10)
        event(f"newyork-{i}", f"user{i}", f"DTSTART;TZID=America/New_York:{d:%Y%m%d}T090000",
              f"DTEND;TZID=America/New_York:{d:%Y%m%d}T170000",
              "RRULE:FREQ=WEEKLY;INTERVAL=5;BYDAY=MO,TU,WE,TH,FR")
    for i in range(15, 18):
        d = dt.date(2023, 6, 1) + dt.timedelta(days=i - 15)
        event(f"nights-{i}", f"user{i}", f"DTSTART:{d:%Y%m%d}T220000Z", "DURATION:PT10H",
              "RRULE:FREQ=DAILY;INTERVAL=3")
    # A weekend rotation with a skipped weekend and one moved by an hour.
    event("weekend-18", "user18", "DTSTART;TZID=Europe/Berlin:20240106T080000",
          "DTEND;TZID=Europe/Berlin:20240106T200000", "RRULE:FREQ=WEEKLY;BYDAY=SA,SU",
          "EXDATE;TZID=Europe/Berlin:20261205T080000,20261206T080000")
    event("weekend-18", "user18", "RECURRENCE-ID;TZID=Europe/Berlin:20261212T080000",
          "DTSTART;TZID=Europe/Berlin:20261212T090000",
          "DTEND;TZID=Europe/Berlin:20261212T210000", "SEQUENCE:1")
    # Ends with a UTC UNTIL: 20:00 New York (EST) on 1 March 2027 is its last instance.
    event("evening-19", "user19", "DTSTART;TZID=America/New_York:20240101T200000",
          "DURATION:PT2H", "RRULE:FREQ=DAILY;INTERVAL=2;UNTIL=20270302T010000Z")
    lines.append("END:VCALENDAR")
    return lines


def weekly_20():
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "X-WR-CALNAME:Weekly 20"]
    for i in range(20):
        d = dt.date(2024, 1, 1) + dt.timedelta(weeks=i)
        e = d + dt.timedelta(weeks=1)
        lines.extend(["BEGIN:VEVENT", f"UID:weekly-{i}", f"SUMMARY:user{i}",
                      f"DTSTART;TZID=Europe/Berlin:{d:%Y%m%d}T090000",
                      f"DTEND;TZID=Europe/Berlin:{e:%Y%m%d}T090000",
                      "RRULE:FREQ=WEEKLY;INTERVAL=20", "END:VEVENT"])
    lines.append("END:VCALENDAR")
    return lines


for name, lines in [("oncall_export.ics", oncall_export()), ("weekly_open.ics", weekly_open()),
                    ("weekly_20.ics", weekly_20())]:
    with open(os.path.join(out, name), "w", newline="") as f:
        f.write("\r\n".join(lines) + "\r\n")
