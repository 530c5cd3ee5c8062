//! The flush when the page goes away, in headless Chromium.
#![cfg(target_arch = "wasm32")]

#[allow(dead_code)] // each test file uses part of the shared helpers
mod common;

use common::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn pagehide_sends_the_queue_by_beacon_and_empties_storage() {
    let host = load("opt-out");
    for name in ["A", "B", "C"] {
        track(name);
    }
    assert!(events(&host, "sent").is_empty(), "still batching");
    seam_sdk::page_hide(true);
    let beacons = events(&host, "beacons");
    let names: Vec<String> = beacons.iter().map(|e| string(&get(e, "event"))).collect();
    assert_eq!(names, ["A", "B", "C"]);
    assert!(
        !stored_keys().iter().any(|k| k.starts_with("seam.q.")),
        "{:?}",
        stored_keys()
    );
}
