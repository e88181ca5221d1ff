//! Prometheus metrics: counters and histograms kept in memory, rendered in the text format.
//!
//! Hand-rolled rather than a metrics framework: a few dozen series, one instance per running
//! service (tests run several in one process), no global recorder.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

/// The service's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
}

fn help(name: &str) -> &'static str {
    match name {
        "oncall_relay_http_requests_total" => {
            "HTTP requests answered, by route, method and status."
        }
        "oncall_relay_http_request_duration_seconds" => "Time to answer HTTP requests, by route.",
        "oncall_relay_notifications_accepted_total" => {
            "Notifications committed to the queue, by kind."
        }
        "oncall_relay_delivery_attempts_total" => {
            "Delivery attempts, by kind, backend and outcome (delivered, retry, fallback, failed)."
        }
        "oncall_relay_delivery_duration_seconds" => "Time one delivery attempt took, by backend.",
        "oncall_relay_delivery_latency_seconds" => "Time from acceptance to delivery, by kind.",
        _ => "",
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        match self.families.lock() {
            Ok(guard) => guard,
            // A panic while holding the lock leaves counts that are still usable.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds `by` to a counter.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *self
            .lock()
            .counters
            .entry(name)
            .or_default()
            .entry(labels)
            .or_default() += by;
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: Duration) {
        let seconds = value.as_secs_f64();
        let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut families = self.lock();
        let h = families
            .histograms
            .entry(name)
            .or_default()
            .entry(labels)
            .or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The text exposition of every counter and histogram, followed by `gauges`.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let families = self.lock();
        let mut out = String::with_capacity(4096);
        for (name, series) in &families.counters {
            let _ = writeln!(out, "# HELP {name} {}", help(name));
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, value) in series {
                let _ = writeln!(out, "{name}{} {value}", format_labels(labels, None));
            }
        }
        for (name, series) in &families.histograms {
            let _ = writeln!(out, "# HELP {name} {}", help(name));
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, h) in series {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        format_labels(labels, Some(&le)),
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    format_labels(labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", format_labels(labels, None), h.sum);
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    format_labels(labels, None),
                    h.count
                );
            }
        }
        drop(families);
        let mut last = "";
        for g in gauges {
            if g.name != last {
                let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
                let _ = writeln!(out, "# TYPE {} gauge", g.name);
                last = g.name;
            }
            let labels: Labels = g.labels.iter().map(|(k, v)| (*k, v.clone())).collect();
            let _ = writeln!(
                out,
                "{}{} {}",
                g.name,
                format_labels(&labels, None),
                g.value
            );
        }
        out
    }
}

/// A value sampled when the metrics are scraped.
#[derive(Debug, Clone)]
pub struct Gauge {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Labels.
    pub labels: Vec<(&'static str, String)>,
    /// Current value.
    pub value: f64,
}

fn format_labels(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let text = m.render(&[Gauge {
            name: "oncall_relay_queue_depth",
            help: "Notifications waiting.",
            labels: vec![],
            value: 4.0,
        }]);
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
        assert!(
            text.contains("# TYPE oncall_relay_queue_depth gauge\noncall_relay_queue_depth 4"),
            "{text}"
        );
    }
}
