//! Counters and the request latency histogram behind `GET /metrics` (Prometheus text format).

use crate::store::StoreStats;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the request latency buckets, in seconds.
/// Finer around the ingestion latency targets (5 ms and 30 ms), where a quantile is read back
/// by interpolating within a bucket.
const REQUEST_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds of the store's commit latency buckets, in seconds: an `fdatasync` takes a few
/// hundred microseconds on a good disk, and the slow ones are what an operator looks for.
pub const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with fixed bucket bounds (seconds), updated from any thread.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot<N> {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A [`Histogram`]'s figures at one moment: observations per bucket (not cumulative), all
/// observations, and their sum in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HistogramSnapshot<const N: usize> {
    pub bounds: [f64; N],
    pub buckets: [u64; N],
    pub count: u64,
    pub sum_us: u64,
}

impl<const N: usize> HistogramSnapshot<N> {
    /// Appends the histogram as Prometheus text: cumulative `_bucket`s, `_sum` in seconds and
    /// `_count`.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// The store's commit latency as [`crate::store::StoreStats`] carries it.
pub type CommitLatency = HistogramSnapshot<{ COMMIT_BUCKETS.len() }>;

#[derive(Debug)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub deduplicated: AtomicU64,
    pub consent_dropped: AtomicU64,
    pub suppressed: AtomicU64,
    /// Requests refused whole (401, 400, 413, …).
    pub requests_refused: AtomicU64,
    /// Requests answered 503 `overloaded` (writer queue or index lag past its bound).
    pub requests_overloaded: AtomicU64,
    latency: Histogram<{ REQUEST_BUCKETS.len() }>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: AtomicU64::default(),
            rejected: AtomicU64::default(),
            deduplicated: AtomicU64::default(),
            consent_dropped: AtomicU64::default(),
            suppressed: AtomicU64::default(),
            requests_refused: AtomicU64::default(),
            requests_overloaded: AtomicU64::default(),
            latency: Histogram::new(REQUEST_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one ingestion request's latency.
    pub fn observe(&self, elapsed: Duration) {
        self.latency.observe(elapsed);
    }

    pub fn render(&self, store: StoreStats, identity: Option<IdentityStats>) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            sample(&mut out, "counter", name, help, v.load(Ordering::Relaxed));
        };
        counter(
            "seam_events_accepted_total",
            "Events stored durably.",
            &self.accepted,
        );
        counter(
            "seam_events_rejected_total",
            "Invalid messages refused and kept in the failed-events store.",
            &self.rejected,
        );
        counter(
            "seam_events_deduplicated_total",
            "Messages not stored again because their messageId was already stored.",
            &self.deduplicated,
        );
        counter(
            "seam_events_consent_dropped_total",
            "Messages not stored because their consent denies analytics.",
            &self.consent_dropped,
        );
        counter(
            "seam_events_suppressed_total",
            "Messages not stored because an identifier they carry was erased.",
            &self.suppressed,
        );
        counter(
            "seam_requests_refused_total",
            "Ingestion requests refused whole (bad key, body or size).",
            &self.requests_refused,
        );
        counter(
            "seam_requests_overloaded_total",
            "Ingestion requests answered 503 overloaded; the client retries after Retry-After.",
            &self.requests_overloaded,
        );
        self.latency.snapshot().render(
            &mut out,
            "seam_ingest_request_duration_seconds",
            "Ingestion request latency, until durable.",
        );
        if let Some(commits) = &store.commit_latency {
            commits.render(
                &mut out,
                "seam_store_commit_duration_seconds",
                "Time each group commit of the store took to become durable (the embedded engine: writing its log frame and fdatasync). Slow ones come from the disk and add to every request of the group.",
            );
        }
        let mut gauge = |name: &str, help: &str, v: u64| sample(&mut out, "gauge", name, help, v);
        gauge(
            "seam_writer_queue_depth",
            "Events waiting for the store's writer.",
            store.queue_depth,
        );
        gauge(
            "seam_index_lag_events",
            "Events durable and acknowledged but not yet readable.",
            store.index_lag,
        );
        gauge("seam_store_events", "Events in the store.", store.events);
        gauge(
            "seam_store_bytes",
            "Bytes the store occupies on disk.",
            store.bytes,
        );
        if let Some(identity) = identity {
            gauge(
                "seam_identity_applied_seq",
                "Highest store seq applied to the identity graph.",
                identity.applied_seq,
            );
            gauge(
                "seam_identity_lag_events",
                "Stored events identity resolution has not applied yet.",
                store.last_seq.saturating_sub(identity.applied_seq),
            );
            gauge(
                "seam_identity_backlog_events",
                "Committed events handed to identity resolution and not applied yet.",
                identity.backlog,
            );
            sample(
                &mut out,
                "counter",
                "seam_identity_replays_total",
                "Catch-ups of identity resolution from the store, after it fell behind.",
                identity.replays,
            );
        }
        out
    }
}

/// One metric with a single sample, in the text format.
fn sample(out: &mut String, kind: &str, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

/// What identity resolution reports to `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityStats {
    pub applied_seq: u64,
    pub backlog: u64,
    pub replays: u64,
}

/// The `q` quantile of histogram `name` in Prometheus text `text`, interpolated linearly
/// within its bucket as Prometheus's `histogram_quantile` does: the first bucket starts at
/// zero, and a quantile in the `+Inf` bucket is the last finite bound. `None` when the text
/// has no such histogram or it is empty. The ingest benchmark reads the collector's own
/// latency this way.
pub fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let buckets = histogram_buckets(text, name);
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = (0.0, 0u64);
    for &(le, count) in &buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(below.0);
            }
            let within = (rank - below.1 as f64) / count.saturating_sub(below.1).max(1) as f64;
            return Some(below.0 + (le - below.0) * within);
        }
        below = (le, count);
    }
    Some(below.0)
}

/// How many observations of histogram `name` in Prometheus text `text` exceed `bound`, which
/// must be one of its bucket bounds; `None` when it is not, or there is no such histogram.
pub fn histogram_count_above(text: &str, name: &str, bound: f64) -> Option<u64> {
    let buckets = histogram_buckets(text, name);
    let total = buckets.last()?.1;
    let (_, within) = buckets.iter().find(|(le, _)| *le == bound)?;
    Some(total - within)
}

/// The cumulative `(le, count)` buckets of histogram `name` in `text`, by bound.
fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (le, count) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(latencies_ms: &[u64]) -> String {
        let m = Metrics::default();
        for ms in latencies_ms {
            m.observe(Duration::from_millis(*ms));
        }
        m.render(StoreStats::default(), None)
    }

    #[test]
    fn a_quantile_reads_back_from_the_rendered_histogram_within_its_bucket() {
        let name = "seam_ingest_request_duration_seconds";
        // 98 requests of 4 ms, one of 27 ms, one of 12 s.
        let mut latencies = vec![4; 98];
        latencies.extend([27, 12_000]);
        let text = rendered(&latencies);
        let p50 = histogram_quantile(&text, name, 0.5).expect("p50");
        assert!(
            (0.003..=0.005).contains(&p50),
            "p50 {p50} is in the 3–5 ms bucket"
        );
        // Rank 98.5 of 100 falls in the 25–30 ms bucket, halfway into its one request.
        let p985 = histogram_quantile(&text, name, 0.985).expect("p98.5");
        assert!((p985 - 0.0275).abs() < 1e-9, "p98.5 {p985}");
        // Past the last finite bound: that bound.
        let max = histogram_quantile(&text, name, 1.0).expect("max");
        assert_eq!(max, 10.0);
        assert_eq!(histogram_quantile(&rendered(&[]), name, 0.99), None);
        assert_eq!(
            histogram_quantile(&text, "seam_no_such_histogram", 0.99),
            None
        );
        assert_eq!(histogram_count_above(&text, name, 0.005), Some(2));
        assert_eq!(histogram_count_above(&text, name, 0.03), Some(1));
        assert_eq!(histogram_count_above(&text, name, 0.0042), None);
    }

    #[test]
    fn the_stores_commit_latency_is_rendered_only_when_the_store_reports_it() {
        let name = "seam_store_commit_duration_seconds";
        assert!(!rendered(&[]).contains(name));
        let commits = Histogram::new(COMMIT_BUCKETS);
        for us in [80, 300, 300, 7_000] {
            commits.observe(Duration::from_micros(us));
        }
        let store = StoreStats {
            commit_latency: Some(commits.snapshot()),
            ..StoreStats::default()
        };
        let text = Metrics::default().render(store, None);
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.0001\"}} 1\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.0005\"}} 3\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.005\"}} 3\n")));
        assert!(text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 4\n")));
        assert!(text.contains(&format!("{name}_sum 0.00768\n")), "{text}");
        assert!(text.contains(&format!("{name}_count 4\n")));
        assert_eq!(histogram_count_above(&text, name, 0.005), Some(1));
    }
}
