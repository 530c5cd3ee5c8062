//! Counters and the request latency histogram behind `GET /metrics` (Prometheus text format).

use crate::store::StoreStats;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
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
