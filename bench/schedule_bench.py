#!/usr/bin/env python3
"""The Python reference for examples/schedule_bench: icalendar + recurring_ical_events, as
OnCall's own stack reads a calendar. Same output line, same medians.

    schedule_bench.py [--at 2026-12-01T12:00:00Z] [--runs 200] FILE...
"""
import argparse
import datetime as dt
import statistics
import time

import icalendar
import recurring_ical_events

p = argparse.ArgumentParser()
p.add_argument("--at", default=None)
p.add_argument("--runs", type=int, default=200)
p.add_argument("files", nargs="+")
a = p.parse_args()
at = (dt.datetime.fromisoformat(a.at.replace("Z", "+00:00")) if a.at
      else dt.datetime.now(dt.timezone.utc))
until = at + dt.timedelta(milliseconds=1)


def on_duty(cal):
    return recurring_ical_events.of(cal).between(at, until)


for path in a.files:
    raw = open(path, "rb").read()
    who = sorted({str(e.get("SUMMARY", "")).strip() for e in on_duty(icalendar.Calendar.from_ical(raw))
                  if str(e.get("STATUS", "")).upper() != "CANCELLED"})
    parse, evaluate, poll = [], [], []
    for _ in range(max(a.runs, 1)):
        t = time.perf_counter()
        cal = icalendar.Calendar.from_ical(raw)
        parsed = time.perf_counter() - t
        t = time.perf_counter()
        on_duty(cal)
        evaluated = time.perf_counter() - t
        parse.append(parsed)
        evaluate.append(evaluated)
        poll.append(parsed + evaluated)
    us = lambda v: f"{statistics.median(v) * 1e6:.1f}"
    print(f"{path}: {len(raw)} bytes; parse_us {us(parse)}; evaluate_us {us(evaluate)}; "
          f"poll_us {us(poll)}; on_duty {','.join(who)}")
