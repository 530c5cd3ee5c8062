//! Runs in headless Chromium through wasm-bindgen-test-runner.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn version_is_exported_to_javascript() {
    assert_eq!(seam_sdk::version(), env!("CARGO_PKG_VERSION"));
}
