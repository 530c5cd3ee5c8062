//! Segment's own browser library, analytics.js (`@segment/analytics-next`, pinned in
//! `xtask/tools/package.json`), on a page in headless Chromium, sending to the real collector on
//! another origin exactly as it would send to Segment: each call to the first letter of its
//! type (`/v1/p`, `/v1/i`, `/v1/t`), a `text/plain` body with the write key inside. The
//! collector must store every call once, and resolve the visitor's profile from it.

use seam_e2e::{DemoCollector, TempDir, WRITE_KEY, analytics_js_dir, open_site_page};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A page that loads analytics.js with `cdnURL` set to the collector, as a storefront moving off
/// Segment would: analytics.js loads its source settings from the collector instead of Segment's
/// CDN, and those name the collector as `apiHost` (nothing else does). It then makes three
/// calls and records in `#done` each one analytics.js has handed to its Segment.io plugin
/// (which retries later rather than fail the call, so only the collector's answer shows
/// delivery). `options` are more load options.
fn page(collector_host: &str, options: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>analytics.js</title></head>
<body><p id="done"></p>
<script src="analytics.js"></script>
<script>
const analytics = AnalyticsNext.AnalyticsBrowser.load(
  {{writeKey: "{WRITE_KEY}", cdnURL: "http://{collector_host}"}},
  {{initialPageview: false{options}}});
const done = (what) => () => {{ document.getElementById("done").textContent += what + " "; }};
analytics.page("Home").then(done("page"));
analytics.identify("ajs-user", {{email: "Ajs.Visitor@example.com"}}).then(done("identify"));
analytics.track("Product Viewed", {{sku: "kc-mug", price: 18}}).then(done("track"));
</script>
</body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_analytics_js_pointed_at_the_collector_stores_every_call_once() {
    every_call_stored_once("").await;
}

/// With the batching delivery strategy analytics.js sends its calls together to `/v1/b`, the
/// write key as Basic auth (after a CORS preflight) and in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_analytics_js_batching_stores_every_call_once() {
    every_call_stored_once(
        r#", integrations: {"Segment.io": {deliveryStrategy: {strategy: "batching", config: {size: 3, timeout: 500}}}}"#,
    )
    .await;
}

async fn every_call_stored_once(options: &str) {
    let collector = DemoCollector::start().await;
    let site = TempDir::new("analytics-js-page");
    std::fs::copy(
        analytics_js_dir().join("index.js"),
        site.path.join("analytics.js"),
    )
    .expect("copy analytics.js");
    std::fs::write(
        site.path.join("index.html"),
        page(&collector.addr.to_string(), options),
    )
    .expect("write page");
    let (_pages, browser) = open_site_page(&site.path).await;
    browser
        .wait_for_js(
            "['page', 'identify', 'track'].every(w => \
             document.getElementById('done').textContent.includes(w))",
            WAIT,
        )
        .await;

    let stored = collector
        .wait_for_admin("/v1/events?user_id=ajs-user", WAIT, |v| {
            v["events"].as_array().is_some_and(|e| e.len() >= 3)
        })
        .await;
    let events = stored["events"].as_array().expect("events");
    let mut types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    types.sort_unstable();
    assert_eq!(types, ["identify", "page", "track"], "each call once");
    let track = events.iter().find(|e| e["type"] == "track").expect("track");
    assert_eq!(track["event"], "Product Viewed");
    assert_eq!(track["properties"]["sku"], "kc-mug");
    assert_eq!(track["context"]["library"]["name"], "analytics.js");
    assert!(
        track["messageId"]
            .as_str()
            .is_some_and(|id| id.starts_with("ajs-")),
        "analytics.js's own messageId is kept: {}",
        track["messageId"]
    );
    assert!(
        track.get("writeKey").is_none(),
        "the write key is not stored"
    );
    let anonymous_id = track["anonymousId"].as_str().expect("anonymousId");
    assert!(
        events.iter().all(|e| e["anonymousId"] == anonymous_id),
        "one browser, one anonymous ID"
    );

    // Identity resolution stitched the browser to the person by the email analytics.js sent.
    let ids = collector
        .wait_for_profile_with("email:ajs.visitor%40example.com", anonymous_id, WAIT)
        .await;
    assert!(ids.contains(&"user_id:\"ajs-user\"".to_owned()), "{ids:?}");
    browser.close().await;
}
