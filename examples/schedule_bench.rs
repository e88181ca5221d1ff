//! Benchmark note for schedule tracking: parse and evaluate a one-year calendar with 20
//! people on daily rotations, in both shapes OnCall and editors produce (an expanded export
//! with one VEVENT per shift, and one RRULE per person), and report time and peak heap.
//!
//! `cargo run --release --example schedule_bench`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use oncall_relay::schedules::ical;

/// Counts live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PEOPLE: usize = 20;
const DAYS: i64 = 365;
/// 2026-01-01T00:00:00Z in seconds.
const START: i64 = 1_767_225_600;

fn stamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

fn expanded() -> String {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n");
    for day in 0..DAYS {
        let who = day as usize % PEOPLE;
        let start = START + day * 86_400;
        s.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:shift-{day}\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:user{who}\r\nEND:VEVENT\r\n",
            stamp(start),
            stamp(start + 86_400)
        ));
    }
    s.push_str("END:VCALENDAR\r\n");
    s
}

fn recurring() -> String {
    let mut s = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n");
    for who in 0..PEOPLE as i64 {
        let start = START + who * 86_400;
        s.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:rot-{who}\r\nDTSTART;TZID=Europe/Berlin:{}\r\nDURATION:P1D\r\nRRULE:FREQ=DAILY;INTERVAL={PEOPLE};UNTIL={}\r\nSUMMARY:user{who}\r\nEND:VEVENT\r\n",
            stamp(start).trim_end_matches('Z'),
            stamp(START + DAYS * 86_400)
        ));
    }
    s.push_str("END:VCALENDAR\r\n");
    s
}

fn run(label: &str, text: &str) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let calendar = match ical::parse(text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{label}: {e}");
            return;
        }
    };
    let parsed = t.elapsed();
    let kept = LIVE.load(Ordering::Relaxed) - base;
    // One evaluation, as one poll does it: late in the year, so the rules run long.
    let at = (START + 300 * 86_400 + 3_600) * 1000;
    let t = Instant::now();
    let on_duty = calendar.at(at);
    let evaluated = t.elapsed();
    // And a whole year in one go (what a "next changes" view would need).
    let t = Instant::now();
    let all = calendar.shifts(START * 1000, (START + DAYS * 86_400) * 1000);
    let year = t.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "{label}: {} bytes of iCal; parse {parsed:?}; evaluate now {evaluated:?} ({} on duty); \
         expand the year {year:?} ({} shifts); calendar kept in memory {} KiB; peak heap {} KiB",
        text.len(),
        on_duty.len(),
        all.len(),
        kept / 1024,
        peak / 1024
    );
}

fn main() {
    run("expanded (365 VEVENTs)", &expanded());
    run("recurring (20 RRULEs)", &recurring());
}
