//! Prometheus metrics: one `prometheus-client` registry per running service (tests run
//! several in one process, so there is no global recorder).
//!
//! Every family is registered once, up front, so the exposition writes each `# HELP` and
//! `# TYPE` line exactly once. Gauges that need the database are sampled in the background
//! (see `cloud_api::metrics::spawn_refresh`) and only copied from memory on a scrape.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Counters: full name (with `_total`) and help. The library appends `_total` itself.
const COUNTERS: [(&str, &str); 6] = [
    (
        "oncall_relay_http_requests_total",
        "HTTP requests answered, by route, method and status",
    ),
    (
        "oncall_relay_notifications_accepted_total",
        "Notifications committed to the queue, by kind",
    ),
    (
        "oncall_relay_notifications_claimed_total",
        "Notifications claimed for delivery, by how: as they were accepted (a delivery slot was free) or from the queue (queued behind others, a retry or an expired lease)",
    ),
    (
        "oncall_relay_delivery_attempts_total",
        "Delivery attempts, by kind, backend and outcome (delivered, retry, fallback, failed)",
    ),
    (
        "oncall_relay_refusals_dropped_total",
        "Refused requests not put on record because the refusal buffer was full, by reason",
    ),
    (
        "oncall_relay_backend_circuit_opens_total",
        "Times a backend's circuit breaker opened (the backend is skipped for the cool-down)",
    ),
];

const HISTOGRAMS: [(&str, &str); 3] = [
    (
        "oncall_relay_http_request_duration_seconds",
        "Time to answer HTTP requests, by route",
    ),
    (
        "oncall_relay_delivery_duration_seconds",
        "Time one delivery attempt took, by backend",
    ),
    (
        "oncall_relay_delivery_latency_seconds",
        "Time from acceptance to delivery, by kind",
    ),
];

const GAUGES: [(&str, &str); 8] = [
    (
        "oncall_relay_database_up",
        "Whether the database answered the last background sample",
    ),
    (
        "oncall_relay_queue_depth",
        "Notifications accepted and not yet delivered or given up, by kind",
    ),
    (
        "oncall_relay_queue_oldest_age_seconds",
        "Age of the oldest notification still waiting for delivery (0 when none)",
    ),
    (
        "oncall_relay_heartbeat_age_seconds",
        "Seconds since each OnCall heartbeat integration last beat",
    ),
    (
        "oncall_relay_schedule_last_success_age_seconds",
        "Seconds since each schedule's calendar was last fetched and read",
    ),
    (
        "oncall_relay_schedule_failing",
        "1 when a schedule's last poll failed (its last known on-duty set is kept)",
    ),
    (
        "oncall_relay_schedule_callbacks_pending",
        "Schedule callbacks not yet delivered",
    ),
    (
        "oncall_relay_backend_circuit_state",
        "Each backend's circuit breaker in this process: 0 closed, 1 open (skipped), 2 half-open (one probe)",
    ),
];

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;
type GaugeFamily = Family<Labels, PromGauge<f64, AtomicU64>>;

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The value of a sampled gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GaugeValue {
    /// A plain value.
    Value(f64),
    /// Seconds since this Unix time in milliseconds, computed when scraped.
    AgeSince(i64),
}

/// A gauge sampled in the background and served from memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// Metric name (one of the registered gauge families).
    pub name: &'static str,
    /// Labels.
    pub labels: Vec<(&'static str, String)>,
    /// Current value.
    pub value: GaugeValue,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    counters: BTreeMap<&'static str, Family<Labels, Counter>>,
    histograms: BTreeMap<&'static str, HistogramFamily>,
    gauges: BTreeMap<&'static str, GaugeFamily>,
    sampled: Mutex<Vec<Gauge>>,
    // Gauges set on events (a breaker changing state), kept until set again.
    live: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    // Scrapes rebuild the gauge families from `sampled`; one at a time, so that no scrape
    // sees another one's half-rebuilt family. The last text is kept for [`RENDER_MAX_AGE`].
    render: Mutex<Option<(Instant, Bytes)>>,
}

/// How long one rendering serves further scrapes: a flood of scrapes then costs a copy of a
/// reference each, not an encoding; Prometheus scrapes every 15 s or so.
const RENDER_MAX_AGE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves values that are still usable.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// A registry with every family of the service, all empty.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let mut counters = BTreeMap::new();
        for (name, help) in COUNTERS {
            let family = Family::<Labels, Counter>::default();
            let base = name.strip_suffix("_total").unwrap_or(name);
            registry.register(base, help, family.clone());
            counters.insert(name, family);
        }
        let mut histograms = BTreeMap::new();
        for (name, help) in HISTOGRAMS {
            let family: HistogramFamily = Family::new_with_constructor(new_histogram);
            registry.register(name, help, family.clone());
            histograms.insert(name, family);
        }
        let mut gauges = BTreeMap::new();
        for (name, help) in GAUGES {
            let family = GaugeFamily::default();
            registry.register(name, help, family.clone());
            gauges.insert(name, family);
        }
        Metrics {
            registry,
            counters,
            histograms,
            gauges,
            sampled: Mutex::new(vec![Gauge {
                name: "oncall_relay_database_up",
                labels: vec![],
                value: GaugeValue::Value(0.0),
            }]),
            live: Mutex::new(BTreeMap::new()),
            render: Mutex::new(None),
        }
    }

    /// Sets a gauge that changes on events rather than by sampling (a circuit breaker's state);
    /// it stays until set again.
    pub fn set_live(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        debug_assert!(self.gauges.contains_key(name), "unknown gauge {name}");
        lock(&self.live).insert((name, owned(labels)), value);
        // The next scrape shows the change at once.
        *lock(&self.render) = None;
    }

    /// Adds `by` to a counter (unknown names are a bug, ignored in release builds).
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        debug_assert!(self.counters.contains_key(name), "unknown counter {name}");
        if let Some(family) = self.counters.get(name) {
            family.get_or_create(&owned(labels)).inc_by(by);
        }
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: Duration) {
        debug_assert!(
            self.histograms.contains_key(name),
            "unknown histogram {name}"
        );
        if let Some(family) = self.histograms.get(name) {
            family
                .get_or_create(&owned(labels))
                .observe(value.as_secs_f64());
        }
    }

    /// Replaces the sampled gauges (every gauge family is replaced as a whole).
    pub fn set_sampled(&self, gauges: Vec<Gauge>) {
        *lock(&self.sampled) = gauges;
    }

    /// Sets one sampled gauge without labels, keeping the others (e.g. the database went down).
    pub fn set_sampled_value(&self, name: &'static str, value: f64) {
        let mut sampled = lock(&self.sampled);
        sampled.retain(|g| g.name != name);
        sampled.push(Gauge {
            name,
            labels: vec![],
            value: GaugeValue::Value(value),
        });
    }

    /// The text exposition (Prometheus 0.0.4) at `now_ms`; reads memory only, and reuses a
    /// rendering less than [`RENDER_MAX_AGE`] old.
    pub fn render(&self, now_ms: i64) -> Bytes {
        let mut last = lock(&self.render);
        if let Some((at, text)) = last.as_ref()
            && at.elapsed() < RENDER_MAX_AGE
        {
            return text.clone();
        }
        let text = Bytes::from(self.encode(now_ms));
        *last = Some((Instant::now(), text.clone()));
        text
    }

    fn encode(&self, now_ms: i64) -> String {
        let sampled = lock(&self.sampled).clone();
        for family in self.gauges.values() {
            family.clear();
        }
        for g in &sampled {
            let Some(family) = self.gauges.get(g.name) else {
                debug_assert!(false, "unknown gauge {}", g.name);
                continue;
            };
            let value = match g.value {
                GaugeValue::Value(v) => v,
                GaugeValue::AgeSince(at) => (now_ms - at).max(0) as f64 / 1000.0,
            };
            family.get_or_create(&g.labels).set(value);
        }
        for ((name, labels), value) in lock(&self.live).iter() {
            if let Some(family) = self.gauges.get(name) {
                family.get_or_create(labels).set(*value);
            }
        }
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_render() {
        let m = Metrics::default();
        m.count(
            "oncall_relay_notifications_accepted_total",
            &[("kind", "call")],
            2,
        );
        m.count(
            "oncall_relay_notifications_accepted_total",
            &[("kind", "call")],
            1,
        );
        m.observe(
            "oncall_relay_delivery_duration_seconds",
            &[("backend", "a\"b")],
            Duration::from_millis(3),
        );
        m.set_sampled(vec![
            Gauge {
                name: "oncall_relay_queue_depth",
                labels: vec![],
                value: GaugeValue::Value(4.0),
            },
            Gauge {
                name: "oncall_relay_heartbeat_age_seconds",
                labels: vec![("integration", "x".into())],
                value: GaugeValue::AgeSince(1_000),
            },
        ]);
        let text = m.encode(3_500);
        assert!(
            text.contains("oncall_relay_notifications_accepted_total{kind=\"call\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "oncall_relay_delivery_duration_seconds_bucket{backend=\"a\\\"b\",le=\"0.001\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "oncall_relay_delivery_duration_seconds_bucket{backend=\"a\\\"b\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("oncall_relay_delivery_duration_seconds_count{backend=\"a\\\"b\"} 1"),
            "{text}"
        );
        assert!(text.contains("oncall_relay_queue_depth 4"), "{text}");
        assert!(
            text.contains("oncall_relay_heartbeat_age_seconds{integration=\"x\"} 2.5"),
            "{text}"
        );
        // Gauges sampled again replace the old series instead of adding to them.
        m.set_sampled(vec![]);
        assert!(!m.encode(3_500).contains("oncall_relay_queue_depth 4"));
        // A scrape right after another gets the same text.
        let first = m.render(3_500);
        m.count(
            "oncall_relay_notifications_accepted_total",
            &[("kind", "sms")],
            1,
        );
        assert_eq!(m.render(3_500), first);
    }
}
