//! Stories of the opt-in consent banner: a visitor who rejects consent sends nothing and stores
//! nothing; a visitor who accepts has the page view made before the choice delivered.

use seam_e2e::{Browser, DemoCollector, RecordingProxy};
use serde_json::Value;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_who_rejects_consent_sends_nothing_and_stores_nothing() {
    let collector = DemoCollector::start().await;
    let proxy = RecordingProxy::start(collector.addr).await;
    let visitor = Browser::launch().await;

    visitor.open(&proxy.url("/")).await;
    visitor.click("#consent-reject-all").await;
    visitor
        .wait_for_js(
            "!document.getElementById('consent-banner')",
            Duration::from_secs(10),
        )
        .await;
    visitor
        .open(&proxy.url("/product.html?id=kc-grinder"))
        .await;
    visitor.click("#consent-reject-all").await;
    visitor.click("#add-to-cart").await;
    visitor.open(&proxy.url("/products.html")).await;
    visitor.click("#consent-choose").await;
    visitor.click("#consent-save").await;
    // Calls made after the rejection, including an explicit flush and a page exit, stay put.
    visitor
        .client
        .execute("seam.track('Coupon Entered', {coupon: 'WELCOME'});", vec![])
        .await
        .unwrap();
    visitor.flush().await;
    visitor.open(&proxy.url("/cart.html")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stored = visitor.stored_state().await;
    assert_eq!(
        stored,
        json!({
            "cookies": [],
            "page": {"document_cookie": "", "local_storage": [], "session_storage": [], "indexed_db": []}
        }),
        "nothing may be stored before consent"
    );
    let requests = proxy.requests();
    assert!(
        requests.iter().any(|r| r == "GET /sdk/seam.js"),
        "the proxy saw the page load: {requests:?}"
    );
    let api: Vec<&String> = requests
        .iter()
        .filter(|r| r.split(' ').nth(1).is_some_and(|p| p.starts_with("/v1/")))
        .collect();
    assert!(
        api.is_empty(),
        "requests reached the collector API: {api:?}"
    );
    visitor.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_who_accepts_consent_has_the_page_viewed_before_the_choice_delivered() {
    let collector = DemoCollector::start().await;
    let visitor = Browser::launch().await;
    visitor.open(&collector.url("/?utm_source=e2e")).await;
    // Held in memory while the banner is up: nothing stored yet.
    let before = visitor.stored_state().await;
    assert_eq!(before["page"]["local_storage"], json!([]), "{before}");
    visitor.click("#consent-accept-all").await;
    let anonymous_id = visitor.anonymous_id().await;
    visitor.flush().await;

    let path = format!("/v1/events?anonymous_id={anonymous_id}");
    // Both events, or whatever arrived within the time, for the exact comparison below.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        let body = collector.admin_get(&path).await.json();
        let arrived = body["events"].as_array().map_or(0, Vec::len);
        if arrived >= 2 || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let kinds: Vec<String> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["type"].as_str() {
            Some("page") => format!(
                "page {}",
                e["context"]["page"]["path"].as_str().unwrap_or("?")
            ),
            _ => e["event"].as_str().unwrap_or("?").to_string(),
        })
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(sorted, ["Consent Updated", "page /"], "stored: {kinds:?}");
    let home = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "page")
        .unwrap();
    assert_eq!(home["context"]["campaign"]["source"], Value::from("e2e"));
    visitor.close().await;
}
