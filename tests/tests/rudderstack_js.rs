//! RudderStack's JavaScript SDK (`@rudderstack/analytics-js`, pinned in
//! `xtask/tools/package.json`), on a page in headless Chromium, with both its `configUrl` and its
//! `dataPlaneUrl` set to the real collector on another origin, as a storefront moving off
//! RudderStack would set them. The SDK first loads its source configuration from the collector
//! (`/sourceConfig/`, the write key as Basic auth after a CORS preflight), then posts each call
//! with the key as Basic auth, or with `useBeacon` sends batches by `navigator.sendBeacon` to
//! `/beacon/v1/batch?writeKey=…` as `text/plain`. The collector must store every call once and
//! resolve the visitor's profile from it.

use seam_e2e::{DemoCollector, TempDir, WRITE_KEY, open_site_page, rudderstack_js_file};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A page that imports the SDK as a module, loads it against the collector, makes three calls
/// and records in `#done` each one the SDK has taken (queued, not yet delivered: only the
/// collector's store shows delivery). `#ready` is set once the source configuration loaded,
/// which the SDK needs before it sends anything. `options` are more load options.
fn page(collector: &str, options: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RudderStack SDK</title></head>
<body><p id="ready"></p><p id="done"></p>
<script type="module">
import {{ RudderAnalytics }} from "./rudderstack.js";
const rudder = new RudderAnalytics();
rudder.load("{WRITE_KEY}", "{collector}", {{
  configUrl: "{collector}",
  polyfillIfRequired: false,{options}
  onLoaded: () => {{ document.getElementById("ready").textContent = "ready"; }},
}});
const done = (what) => () => {{ document.getElementById("done").textContent += what + " "; }};
rudder.page("Shop", "Home", {{}}, done("page"));
rudder.identify("rs-user", {{email: "Rs.Visitor@example.com"}}, done("identify"));
rudder.track("Product Viewed", {{sku: "kc-mug", price: 18}}, done("track"));
</script>
</body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rudderstacks_sdk_pointed_at_the_collector_stores_every_call_once() {
    every_call_stored_once("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rudderstacks_sdk_sending_beacons_stores_every_call_once() {
    // The beacon queue sends a batch when it holds `maxItems` calls (or at the interval, or
    // when the page is hidden).
    every_call_stored_once(
        "\n  useBeacon: true, beaconQueueOptions: {maxItems: 3, flushQueueInterval: 1000},",
    )
    .await;
}

async fn every_call_stored_once(options: &str) {
    let collector = DemoCollector::start().await;
    let site = TempDir::new("rudderstack-js-page");
    std::fs::copy(rudderstack_js_file(), site.path.join("rudderstack.js"))
        .expect("copy the RudderStack SDK");
    std::fs::write(
        site.path.join("index.html"),
        page(&format!("http://{}", collector.addr), options),
    )
    .expect("write page");
    let (_pages, browser) = open_site_page(&site.path).await;
    browser
        .wait_for_js(
            "document.getElementById('ready').textContent === 'ready' && \
             ['page', 'identify', 'track'].every(w => \
             document.getElementById('done').textContent.includes(w))",
            WAIT,
        )
        .await;

    let stored = collector
        .wait_for_admin("/v1/events?user_id=rs-user", WAIT, |v| {
            v["events"].as_array().is_some_and(|e| e.len() >= 2)
        })
        .await;
    let events = stored["events"].as_array().expect("events");
    let mut types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    types.sort_unstable();
    // The page call came before identify, so it carries only the anonymous ID.
    assert_eq!(types, ["identify", "track"], "each call once");
    let track = events.iter().find(|e| e["type"] == "track").expect("track");
    assert_eq!(track["event"], "Product Viewed");
    assert_eq!(track["properties"]["sku"], "kc-mug");
    assert_eq!(
        track["context"]["library"]["name"], "RudderLabs JavaScript SDK",
        "{track}"
    );
    let anonymous_id = track["anonymousId"].as_str().expect("anonymousId");
    let anonymous = collector
        .wait_for_admin(
            &format!("/v1/events?anonymous_id={anonymous_id}"),
            WAIT,
            |v| {
                v["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["type"] == "page"))
            },
        )
        .await;
    let pages_stored = anonymous["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "page")
        .count();
    assert_eq!(pages_stored, 1, "the page call once: {anonymous}");

    // Identity resolution stitched the browser to the person by the email the SDK sent.
    let ids = collector
        .wait_for_profile_with("email:rs.visitor%40example.com", anonymous_id, WAIT)
        .await;
    assert!(ids.contains(&"user_id:\"rs-user\"".to_owned()), "{ids:?}");
    browser.close().await;
}
