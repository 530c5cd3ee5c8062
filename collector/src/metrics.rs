//! Counters and the request latency histogram behind `GET /metrics` (Prometheus text format).

use crate::store::StoreStats;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
/// Finer around the ingestion latency targets (5 ms and 30 ms), where a quantile is read back
/// by interpolating within a bucket.
const BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
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
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one ingestion request's latency.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
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
        let name = "seam_ingest_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Ingestion request latency, until durable.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
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
    }
}
