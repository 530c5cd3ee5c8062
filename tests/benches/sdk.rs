//! `cargo xtask bench sdk`: what the SDK costs a page, next to Segment's analytics.js measured in
//! the same run. Prints the gzip size of everything a page loads, and the main-thread cost of
//! `track()` in headless Chromium: the median over 100 samples of 100 calls (10,000 calls), each
//! sample timed with `performance.now()` around the synchronous calls and divided by 100 (the
//! clock is too coarse for one call). Between samples each SDK gets 50 ms, untimed, to deliver.
//! analytics.js is the npm package `@segment/analytics-next` pinned in `xtask/tools/` (see
//! [`seam_e2e::analytics_js_dir`]), so runs on different days compare the same build.
//!
//! While iterating: `SEAM_BENCH_CALLS=2000` times fewer calls (a multiple of 100), and
//! `SEAM_BENCH_SEGMENT=0` leaves analytics.js out.

use seam_e2e::capture::{Capture, Pages};
use seam_e2e::{Browser, analytics_js_dir, sdk_dir, workspace_root};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

/// Calls timed per SDK (`SEAM_BENCH_CALLS`, default 10,000), in samples of 100.
fn calls() -> usize {
    std::env::var("SEAM_BENCH_CALLS")
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse::<usize>().ok())
        .map_or(10_000, |n| n.max(100) / 100 * 100)
}

async fn run() {
    let with_segment = std::env::var("SEAM_BENCH_SEGMENT").as_deref() != Ok("0");
    let segment_dir = analytics_js_dir();
    let seam_files = files_in(&sdk_dir());
    let segment_file = segment_dir.join("standalone.js");

    let seam = measure(
        "/sdk-bench-seam.html",
        sdk_dir(),
        "seam.track",
        // The same pause as analytics.js gets, so both SDKs' background sending runs between
        // samples and neither is timed while waiting on the network.
        "new Promise(r => setTimeout(r, 50))",
    )
    .await;
    let segment = if with_segment {
        measure(
            "/sdk-bench-segment.html",
            segment_dir.clone(),
            "analytics.track",
            "new Promise(r => setTimeout(r, 50))",
        )
        .await
    } else {
        (f64::NAN, f64::NAN)
    };

    println!("\nSDK size (everything a page loads for it)");
    println!("{:<34} {:>10} {:>10}", "file", "raw B", "gzip B");
    let mut seam_total = 0;
    for f in &seam_files {
        let (raw, gz) = sizes(f);
        seam_total += gz;
        println!("{:<34} {raw:>10} {gz:>10}", name(f));
    }
    println!("{:<34} {:>10} {seam_total:>10}", "seam total", "");
    let (raw, segment_gz) = sizes(&segment_file);
    println!(
        "{:<34} {raw:>10} {segment_gz:>10}",
        "analytics.js standalone.js"
    );
    println!(
        "seam / analytics.js gzip: {:.2}",
        seam_total as f64 / segment_gz as f64
    );

    println!(
        "\ntrack() main-thread cost in headless Chromium ({} calls per SDK)",
        calls()
    );
    println!("{:<24} {:>12} {:>12}", "SDK", "median µs", "p90 µs");
    println!("{:<24} {:>12.2} {:>12.2}", "seam", seam.0, seam.1);
    println!(
        "{:<24} {:>12.2} {:>12.2}",
        "analytics.js", segment.0, segment.1
    );
    println!("seam / analytics.js median: {:.2}", seam.0 / segment.0);
}

/// Opens `page` (its script from a capture server serving `dir`), waits for `api` to be the
/// loaded SDK, and runs the timed loop. Returns (median, p90) µs per call.
async fn measure(page: &str, dir: PathBuf, api: &str, settle: &str) -> (f64, f64) {
    let capture = Capture::start(dir).await;
    let pages = Pages::start(
        workspace_root().join("tests/fixtures/pages"),
        capture.origin(),
    )
    .await;
    let browser = Browser::launch().await;
    browser.client.goto(&pages.url(page)).await.expect("open");
    let object = api.split('.').next().unwrap();
    browser
        .wait_for_js(
            &format!(
                "window.{object} && !Array.isArray(window.{object}) && \
                 (window.{object}.initialized !== false)"
            ),
            Duration::from_secs(30),
        )
        .await;
    // analytics.js swaps in its real instance once settings arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = calls() / 100;
    let script = format!(
        "window.__bench = null;
         (async () => {{
           const samples = [];
           for (let s = 0; s < {samples}; s++) {{
             const t0 = performance.now();
             for (let i = 0; i < 100; i++) {api}('Bench Event', {{ i, sku: 'KC-101', price: 39.5 }});
             samples.push((performance.now() - t0) * 10);
             window.__bench_done = s + 1;
             await {settle};
           }}
           samples.sort((a, b) => a - b);
           window.__bench = [samples[Math.floor(samples.length / 2)],
                             samples[Math.floor(samples.length * 9 / 10)]];
         }})().catch(e => {{ window.__bench = ['error', String(e && e.stack || e)]; }});"
    );
    browser
        .client
        .execute(&script, vec![])
        .await
        .expect("start");
    // Generous: analytics.js slows down as its stored queue grows, more so on a busy machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    let result = loop {
        let state = browser
            .client
            .execute("return [window.__bench, window.__bench_done || 0];", vec![])
            .await
            .expect("poll");
        if !state[0].is_null() {
            break state[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{page}: only {} of {samples} samples after 900 s",
            state[1]
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        result[0].is_number(),
        "{page}: the timing loop failed: {result}"
    );
    browser.close().await;
    let delivered = capture.requests().len();
    assert!(delivered > 0, "{page}: the SDK sent nothing");
    let (median, p90) = (
        result[0].as_f64().expect("median"),
        result[1].as_f64().expect("p90"),
    );
    // Printed as soon as known, so a later failure does not lose it.
    eprintln!("{page}: track() median {median:.2} µs, p90 {p90:.2} µs");
    (median, p90)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask build-sdk`", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn sizes(p: &Path) -> (usize, usize) {
    let bytes = std::fs::read(p).expect("read");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes).expect("gzip");
    (bytes.len(), gz.finish().expect("gzip").len())
}
