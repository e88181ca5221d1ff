#!/usr/bin/env bash
# Times one schedule poll (parse + "who is on duty now") of each calendar with the relay
# (release build) and with Python's icalendar + recurring_ical_events, in one run, checks
# that both name the same people, and prints the ratio.
#
#   bench/schedule_compare.sh [--at 2026-12-01T12:00:00Z] [--runs 200] [FILE...]
#
# Without files: tests/fixtures/ical/oncall_export.ics (an OnCall export),
# tests/fixtures/ical/weekly_20.ics (20 open-ended weekly rules) and
# tests/fixtures/ical/weekly_open.ics (20 open-ended rules of several kinds, with EXDATE,
# an override and a UTC UNTIL); bench/make_calendars.py writes them. PYTHON names an interpreter
# with both packages (pip install icalendar recurring_ical_events).
set -euo pipefail
cd "$(dirname "$0")/.."
at=2026-12-01T12:00:00Z
runs=200
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --at) at=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
[ ${#files[@]} -gt 0 ] || files=(tests/fixtures/ical/oncall_export.ics tests/fixtures/ical/weekly_20.ics
  tests/fixtures/ical/weekly_open.ics)
python=${PYTHON:-python3}
"$python" -c 'import icalendar, recurring_ical_events' 2>/dev/null || {
  echo "needs: $python -m pip install icalendar recurring_ical_events" >&2; exit 2; }

cargo build --quiet --release --example schedule_bench
rust=$(target/release/examples/schedule_bench --at "$at" --runs "$runs" "${files[@]}")
py=$("$python" bench/schedule_bench.py --at "$at" --runs "$runs" "${files[@]}")
echo "at $at, median of $runs runs"
status=0
for f in "${files[@]}"; do
  r=$(grep -F "$f:" <<<"$rust"); p=$(grep -F "$f:" <<<"$py")
  field() { sed -n "s/.*; $1 \([^;]*\)\(;.*\)\{0,1\}$/\1/p" <<<"$2"; }
  rp=$(field poll_us "$r"); pp=$(field poll_us "$p")
  rw=$(field on_duty "$r"); pw=$(field on_duty "$p")
  printf '%s\n  relay:  parse %s us, evaluate %s us, poll %s us\n  python: parse %s us, evaluate %s us, poll %s us\n  python/relay: %sx\n' \
    "$f" "$(field parse_us "$r")" "$(field evaluate_us "$r")" "$rp" \
    "$(field parse_us "$p")" "$(field evaluate_us "$p")" "$pp" \
    "$(awk -v a="$pp" -v b="$rp" 'BEGIN { printf "%.1f", a / b }')"
  if [ "$rw" = "$pw" ]; then echo "  same on duty: ${rw:-nobody}"
  else echo "  DIFFERENT on duty: relay [$rw], python [$pw]"; status=1; fi
done
exit $status
