//! Opt-in consent gating in headless Chromium: nothing written or sent before the grant.
#![cfg(target_arch = "wasm32")]

#[allow(dead_code)] // each test file uses part of the shared helpers
mod common;

use common::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn opt_in_writes_and_sends_nothing_until_analytics_is_granted() {
    let host = load("opt-in");
    track("Product Viewed");
    track("Product Added");
    seam_sdk::page_hide(true);
    assert!(stored_keys().is_empty(), "{:?}", stored_keys());
    assert_eq!(cookie(), "");
    assert!(events(&host, "sent").is_empty() && events(&host, "beacons").is_empty());
    let prefs = parse(&seam_sdk::consent("", "{}", 0.0));
    assert_eq!(get(&prefs, "analytics").as_bool(), Some(false));

    let prefs = parse(&seam_sdk::consent("analytics=1,marketing=0", "{}", 0.0));
    assert_eq!(get(&prefs, "analytics").as_bool(), Some(true));
    assert!(cookie().contains("seam_aid="));
    let sent = events(&host, "sent");
    let names: Vec<String> = sent.iter().map(|e| string(&get(e, "event"))).collect();
    assert_eq!(
        names,
        ["Product Viewed", "Product Added", "Consent Updated"]
    );
}
