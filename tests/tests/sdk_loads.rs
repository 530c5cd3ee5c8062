//! The built SDK loads in headless Chromium from the collector's `/sdk/` route.

use seam_e2e::{Browser, TempDir, TestServer, sdk_dir, workspace_root};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_page_loads_the_wasm_sdk_from_the_collector() {
    assert!(
        sdk_dir().join("seam.js").exists(),
        "no SDK at {}; run `cargo xtask build-sdk`",
        sdk_dir().display()
    );
    let data_dir = TempDir::new("sdk-loads-data");
    let mut config = seam_collector::Config::new(&data_dir.path);
    config.sdk_dir = sdk_dir();
    config.site_dir = Some(workspace_root().join("tests/fixtures/pages"));
    let state = seam_collector::AppState::open(&config).expect("open the collector");
    let server = TestServer::start(state).await;
    let browser = Browser::launch().await;
    browser
        .client
        .goto(&server.url("/sdk-loads.html"))
        .await
        .unwrap();
    let version = browser
        .wait_for_js("window.seamVersion", Duration::from_secs(20))
        .await;
    assert_eq!(version, serde_json::json!(env!("CARGO_PKG_VERSION")));
    browser.close().await;
}
