//! Story: a visitor on the opt-in storefront rejects consent and keeps shopping; nothing reaches
//! the collector's API and nothing is written to cookies or storage.

use seam_e2e::{Browser, DemoCollector, RecordingProxy};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the SDK's consent API and flush(), not landed yet"]
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
