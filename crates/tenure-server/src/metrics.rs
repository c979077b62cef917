//! The service's counters and latency histograms, rendered in the Prometheus text format
//! for `/metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram (cumulative buckets when rendered).
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; 15],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS.iter().position(|b| s <= *b).unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// The bucket bound at or under which a fraction `q` of observations fall (an upper
    /// bound of the quantile); `None` with no observations.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil() as u64;
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            acc += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        acc += self.counts[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {acc}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {acc}");
    }
}

/// Everything `/metrics` reports.
#[derive(Default)]
pub struct Metrics {
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub events_rejected: AtomicU64,
    pub requests: AtomicU64,
    /// Ingest requests: received to acknowledged (durable).
    pub ingest_latency: Histogram,
    /// Event received to alert raised.
    pub alert_latency: Histogram,
    /// Holds of the live state's write lock by the applier.
    pub live_lock: Histogram,
    /// Alerts raised, by (rule, severity).
    pub alerts: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    pub tasks_opened: AtomicU64,
    /// Bytes and complete records the event log's recovery cut off at start (tails that no
    /// commit record covers: never acknowledged).
    pub log_recovered_bytes: AtomicU64,
    pub log_truncated_records: AtomicU64,
    /// Requests whose body did not arrive within the body deadline.
    pub timeouts: AtomicU64,
    /// Requests refused because too many were in flight.
    pub overloaded: AtomicU64,
    /// Panics of the applier (each logged; the applier was restarted from the log).
    pub applier_panics: AtomicU64,
    /// Saves of the live state while running (`[service] save_state_minutes`).
    pub state_saves: AtomicU64,
}

impl Metrics {
    /// Counts what the event log's recovery dropped when the service opened it.
    pub fn log_recovered(&self, bytes: u64, records: u64) {
        self.log_recovered_bytes.fetch_add(bytes, Relaxed);
        self.log_truncated_records.fetch_add(records, Relaxed);
    }

    /// The Prometheus text exposition; `extra` are values read at scrape time: counters
    /// when their name ends in `_total` (Prometheus' convention for what only grows),
    /// gauges otherwise.
    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut out,
            "tenure_events_accepted_total",
            "Events stored.",
            self.events_accepted.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_events_duplicate_total",
            "Events acknowledged but already stored (message_id or content).",
            self.events_duplicate.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_events_rejected_total",
            "Events rejected as invalid.",
            self.events_rejected.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_ingest_requests_total",
            "Ingest requests answered.",
            self.requests.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_tasks_opened_total",
            "Tasks opened by alerts.",
            self.tasks_opened.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_log_recovered_bytes_total",
            "Bytes the event log's recovery cut off at start (never acknowledged).",
            self.log_recovered_bytes.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_log_truncated_records_total",
            "Complete records the event log's recovery cut off at start (never acknowledged).",
            self.log_truncated_records.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_request_timeouts_total",
            "Requests whose body did not arrive within the body deadline (408).",
            self.timeouts.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_requests_overloaded_total",
            "Requests refused because too many were in flight (503 overloaded).",
            self.overloaded.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_applier_panics_total",
            "Panics of the applier; each is logged and the live state rebuilt from the log.",
            self.applier_panics.load(Relaxed),
        );
        counter(
            &mut out,
            "tenure_state_saves_total",
            "Saves of the live state while running (save_state_minutes); the stop's is not counted.",
            self.state_saves.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP tenure_alerts_total Alerts raised.\n# TYPE tenure_alerts_total counter"
        );
        for ((rule, sev), n) in self.alerts.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "tenure_alerts_total{{rule=\"{rule}\",severity=\"{sev}\"}} {n}");
        }
        self.ingest_latency.render(
            &mut out,
            "tenure_ingest_latency_seconds",
            "Ingest request received to acknowledged (durable).",
        );
        self.alert_latency.render(
            &mut out,
            "tenure_event_to_alert_seconds",
            "Event received to alert raised.",
        );
        self.live_lock.render(
            &mut out,
            "tenure_live_lock_seconds",
            "Holds of the live state's write lock (taking events, refreshing); requests for the state wait for them.",
        );
        for (name, help, v) in extra {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

/// What is wrong with a text exposition by Prometheus' conventions: every sample belongs to
/// a family declared with `# HELP` and `# TYPE`; a counter's name ends in `_total`, and
/// nothing else's does. Empty when all is well.
pub fn lint(text: &str) -> Vec<String> {
    let mut types: std::collections::HashMap<&str, &str> = Default::default();
    let mut helped: std::collections::HashSet<&str> = Default::default();
    let mut problems = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next(), w.next(), w.next()) {
            (Some("#"), Some("HELP"), Some(name), _) => {
                helped.insert(name);
            }
            (Some("#"), Some("TYPE"), Some(name), Some(kind)) => {
                if types.insert(name, kind).is_some() {
                    problems.push(format!("{name}: declared twice"));
                }
                if !helped.contains(name) {
                    problems.push(format!("{name}: no # HELP"));
                }
                if (kind == "counter") != name.ends_with("_total") {
                    problems.push(format!(
                        "{name}: a {kind}; counters, and only they, are named *_total"
                    ));
                }
            }
            (Some(sample), Some(_), ..) if !sample.starts_with('#') => {
                let name = sample.split('{').next().unwrap_or(sample);
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s).filter(|f| types.get(f) == Some(&"histogram"))
                    })
                    .unwrap_or(name);
                if !types.contains_key(family) {
                    problems.push(format!("{name}: a sample without # TYPE"));
                }
            }
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ever_growing_values_are_counters_named_total() {
        let m = Metrics::default();
        let text = m.render(&[
            ("tenure_log_bytes", "Log size.", 10.0),
            ("tenure_notifications_delivered_total", "Delivered.", 3.0),
        ]);
        assert_eq!(lint(&text), Vec::<String>::new(), "{text}");
        assert!(
            text.contains("# TYPE tenure_notifications_delivered_total counter\ntenure_notifications_delivered_total 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE tenure_log_bytes gauge\n"), "{text}");
        // The lint catches the defect it is for.
        let bad = "# HELP x_delivered d\n# TYPE x_delivered counter\nx_delivered 1\n# HELP y_total d\n# TYPE y_total gauge\ny_total 1\nz 1\n";
        assert_eq!(lint(bad).len(), 3, "{:?}", lint(bad));
    }

    #[test]
    fn histograms_are_cumulative_and_quantiles_are_bucket_bounds() {
        let h = Histogram::default();
        for ms in [1, 2, 3, 40, 2000] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.quantile_bound(0.5), Some(0.005));
        assert_eq!(h.quantile_bound(0.8), Some(0.05));
        assert_eq!(h.quantile_bound(1.0), Some(2.5));
        let mut s = String::new();
        h.render(&mut s, "x", "y");
        assert!(s.contains("x_bucket{le=\"0.001\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.05\"} 4\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 5\nx_sum 2.046\nx_count 5\n"), "{s}");
    }
}
