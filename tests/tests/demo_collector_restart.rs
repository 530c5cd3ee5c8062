//! Story: the collector restarts (same data dir, same port) while a visitor keeps shopping; every
//! event arrives exactly once.

use seam_e2e::{Browser, DemoCollector};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_restart_while_browsing_loses_nothing_and_duplicates_nothing() {
    let mut collector = DemoCollector::start().await;
    let visitor = Browser::launch().await;

    visitor.open(&collector.url("/")).await;
    visitor.click("#consent-accept-all").await;
    let anonymous_id = visitor.anonymous_id().await;
    visitor
        .open(&collector.url("/product.html?id=kc-dripper"))
        .await;
    visitor.flush().await;

    // Down: the visitor keeps adding to the cart; the SDK holds the events and retries.
    collector.stop().await;
    for _ in 0..3 {
        visitor.click("#add-to-cart").await;
    }
    visitor
        .client
        .execute("seam.flush();", vec![])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Up again on the same port and data dir; the visitor goes on to the next pages.
    collector.start_again().await;
    visitor
        .open(&collector.url("/product.html?id=kc-filters"))
        .await;
    visitor.click("#add-to-cart").await;
    visitor.open(&collector.url("/cart.html")).await;
    visitor.flush().await;

    let path = format!("/v1/events?anonymous_id={anonymous_id}&limit=1000");
    let expected: HashMap<String, usize> = [
        ("Consent Updated", 1),
        ("page /product.html", 2),
        ("page /cart.html", 1),
        ("Product Viewed", 2),
        ("Product Added", 4),
        ("Cart Viewed", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Wait until everything has arrived (or time runs out), then compare exactly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (body, counts) = loop {
        let body = collector.admin_get(&path).await.json();
        let mut counts = tally(&body);
        // The home page view made before consent is demo_consent's story, not this one.
        counts.remove("page /");
        let complete = expected.iter().all(|(k, v)| counts.get(k) >= Some(v));
        if complete || tokio::time::Instant::now() > deadline {
            break (body, counts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        counts, expected,
        "stored events by kind (left) against what the visitor did"
    );
    let events = body["events"].as_array().unwrap();
    let mut ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["messageId"].as_str())
        .collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "a messageId was stored twice");
    visitor.close().await;
}

/// Stored events by kind: `page <path>` for pages, the event name for tracks.
fn tally(body: &Value) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in body["events"].as_array().into_iter().flatten() {
        let kind = match e["type"].as_str() {
            Some("page") => format!(
                "page {}",
                e["context"]["page"]["path"].as_str().unwrap_or("?")
            ),
            Some("track") => e["event"].as_str().unwrap_or("?").to_string(),
            Some(other) => other.to_string(),
            None => "?".into(),
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}
