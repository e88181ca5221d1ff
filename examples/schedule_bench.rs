//! Times schedule tracking on calendar files: parsing, evaluating "who is on duty" at one
//! instant, and both together (what one poll of a changed calendar costs), as medians.
//!
//! ```sh
//! cargo run --release --example schedule_bench -- [--at 2026-12-01T12:00:00Z] [--runs 200] FILE...
//! ```
//!
//! Without files it times `tests/fixtures/ical/oncall_export.ics` (an OnCall export: a
//! year of shifts, one VEVENT each), `tests/fixtures/ical/weekly_20.ics` (20 open-ended
//! weekly rules started years ago) and `tests/fixtures/ical/weekly_open.ics` (20 open-ended
//! rules of several kinds). `bench/schedule_compare.sh` runs it beside
//! Python's icalendar + recurring_ical_events.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn run(path: &str, at_ms: i64, runs: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let calendar = ical::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    let kept = LIVE.load(Ordering::Relaxed).saturating_sub(base);
    let mut on_duty: Vec<String> = calendar.at(at_ms).into_iter().map(|s| s.summary).collect();
    on_duty.sort();
    on_duty.dedup();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);

    let (mut parse, mut evaluate, mut poll) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let c = ical::parse(&text).map_err(|e| e.to_string())?;
        let parsed = t.elapsed();
        let t = Instant::now();
        std::hint::black_box(c.at(at_ms));
        let evaluated = t.elapsed();
        parse.push(parsed);
        evaluate.push(evaluated);
        poll.push(parsed + evaluated);
    }
    println!(
        "{path}: {} bytes; parse_us {}; evaluate_us {}; poll_us {}; kept_kib {}; peak_kib {}; on_duty {}",
        text.len(),
        micros(median(parse)),
        micros(median(evaluate)),
        micros(median(poll)),
        kept / 1024,
        peak / 1024,
        on_duty.join(",")
    );
    Ok(())
}

fn main() {
    let mut at_ms = chrono::Utc::now().timestamp_millis();
    let mut runs = 200;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--at" => {
                let value = args.next().unwrap_or_default();
                match chrono::DateTime::parse_from_rfc3339(&value) {
                    Ok(t) => at_ms = t.timestamp_millis(),
                    Err(e) => {
                        eprintln!("--at {value}: {e}");
                        std::process::exit(2);
                    }
                }
            }
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
            "-h" | "--help" => {
                println!("schedule_bench [--at RFC3339] [--runs N] FILE...");
                return;
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ical");
        files = vec![
            format!("{dir}/oncall_export.ics"),
            format!("{dir}/weekly_20.ics"),
            format!("{dir}/weekly_open.ics"),
        ];
    }
    let mut failed = false;
    for file in &files {
        if let Err(e) = run(file, at_ms, runs.max(1)) {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
