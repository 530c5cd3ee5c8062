//! The built SDK in headless Chromium: a storefront page on one origin (`localhost`) with the
//! stub snippet and script tag, sending to a capture server on another (`127.0.0.1`).

use seam_e2e::capture::{Capture, Pages, Reply};
use seam_e2e::{Browser, sdk_dir, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    capture: Capture,
    pages: Pages,
    browser: Browser,
}

async fn setup() -> Setup {
    assert!(
        sdk_dir().join("seam.js").exists(),
        "no SDK at {}; run `cargo xtask build-sdk`",
        sdk_dir().display()
    );
    let capture = Capture::start(sdk_dir()).await;
    let pages = Pages::start(
        workspace_root().join("tests/fixtures/pages"),
        capture.origin(),
    )
    .await;
    let browser = Browser::launch().await;
    Setup {
        capture,
        pages,
        browser,
    }
}

impl Setup {
    async fn open(&self, page: &str) {
        self.browser
            .client
            .goto(&self.pages.url(page))
            .await
            .expect("open page");
        self.browser
            .wait_for_js(
                "window.seam && !Array.isArray(window.seam) && window.seam.anonymousId()",
                WAIT,
            )
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.browser
            .client
            .execute(script, vec![])
            .await
            .expect("run script")
    }
}

fn message_ids(events: &[Value]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for e in events {
        *ids.entry(e["messageId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_calls_made_before_load_arrive_as_segment_spec_batches_on_another_origin() {
    let s = setup().await;
    let opened_at = std::time::SystemTime::now();
    s.browser
        .client
        .goto(&format!(
            "{}?utm_source=newsletter&utm_campaign=autumn",
            s.pages.url("/sdk-store.html")
        ))
        .await
        .unwrap();
    let events = s.capture.wait_for_events(3, WAIT).await;
    assert_eq!(events.len(), 3, "{events:#?}");

    let requests = s.capture.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.method == "POST" && r.path == "/v1/batch"),
        "no preflight, only batches: {requests:#?}"
    );
    for r in &requests {
        let body = r.json();
        assert_eq!(body["writeKey"], "test-key");
        assert!(body["sentAt"].is_string());
        assert!(
            r.content_type
                .as_deref()
                .unwrap_or("")
                .starts_with("text/plain"),
            "a CORS simple request: {:?}",
            r.content_type
        );
    }

    let [page, track, identify] = [&events[0], &events[1], &events[2]];
    assert_eq!(page["type"], "page");
    assert_eq!(track["type"], "track");
    assert_eq!(track["event"], "Product Viewed");
    assert_eq!(track["properties"]["sku"], "KC-101");
    assert_eq!(track["properties"]["price"], 39.5);
    assert_eq!(identify["type"], "identify");
    assert_eq!(identify["userId"], "user-42");
    assert_eq!(identify["traits"]["email"], "ada@example.com");
    assert!(track.get("userId").is_none(), "anonymous before identify");

    let anonymous_id = page["anonymousId"].as_str().unwrap();
    assert_eq!(anonymous_id.len(), 36);
    assert_eq!(message_ids(&events).len(), 3, "unique messageIds");
    let opened_ms = opened_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for e in &events {
        assert_eq!(e["anonymousId"], anonymous_id);
        for field in ["timestamp", "sentAt"] {
            let t = e[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} in {e}"));
            assert!(t.ends_with('Z') && t.len() == 24, "{field} = {t}");
        }
        let ctx = &e["context"];
        assert_eq!(ctx["library"]["name"], "seam.js");
        assert_eq!(ctx["library"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(ctx["page"]["path"], "/sdk-store.html");
        assert!(
            ctx["page"]["url"]
                .as_str()
                .unwrap()
                .starts_with("http://localhost:")
        );
        assert_eq!(ctx["page"]["title"], "Kettle & Crane test page");
        assert_eq!(
            ctx["page"]["search"],
            "?utm_source=newsletter&utm_campaign=autumn"
        );
        assert_eq!(ctx["campaign"]["source"], "newsletter");
        assert_eq!(ctx["campaign"]["name"], "autumn");
        assert!(ctx["userAgent"].as_str().unwrap().contains("Chrome"));
        assert!(ctx["locale"].is_string() && ctx["timezone"].is_string());
        assert!(ctx["screen"]["width"].as_u64().unwrap() > 0);
        assert!(ctx["session"]["id"].as_i64().unwrap() >= opened_ms - 1000);
        assert!(ctx["session"]["start"].is_string());
        assert_eq!(ctx["consent"]["categoryPreferences"]["analytics"], true);
    }
    assert_eq!(
        identify["context"]["traits"]["email"], "ada@example.com",
        "known traits ride along"
    );
    assert_eq!(page["properties"]["path"], "/sdk-store.html");

    // The stub kept when each call was made: timestamps are in call order and before sending.
    let ts: Vec<&str> = events
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    assert!(
        events
            .iter()
            .all(|e| e["timestamp"].as_str() <= e["sentAt"].as_str())
    );

    let cookie = s.js("return document.cookie").await;
    assert!(
        cookie
            .as_str()
            .unwrap()
            .contains(&format!("seam_aid={anonymous_id}")),
        "{cookie}"
    );
    s.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_in_the_middle_of_a_batch_loses_nothing_and_duplicates_nothing() {
    let s = setup().await;
    // The first batch is held by the collector while the page reloads under it.
    s.capture.reply([Reply::Hold(Duration::from_secs(3))]);
    s.open("/sdk-blank.html").await;
    s.js("for (let i = 0; i < 5; i++) seam.track('Before Reload', {i}); seam.flush();")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.capture.requests().len(), 1, "the batch is in flight");
    // Queued but not yet sent when the page goes away: these leave with the pagehide beacon.
    s.js("for (let i = 0; i < 3; i++) seam.track('Queued At Reload', {i});")
        .await;
    s.open("/sdk-blank.html").await;
    s.js("for (let i = 0; i < 2; i++) seam.track('After Reload', {i}); seam.flush();")
        .await;
    let events = s.capture.wait_for_events(10, WAIT).await;
    // Anything resent late would show up now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events_after = s.capture.events();
    assert_eq!(events_after.len(), events.len(), "{events_after:#?}");
    let ids = message_ids(&events_after);
    assert_eq!(ids.len(), 10, "ten distinct events: {events_after:#?}");
    assert!(ids.values().all(|&n| n == 1), "no duplicates: {ids:?}");
    let names: Vec<&str> = events_after
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for (name, n) in [
        ("Before Reload", 5),
        ("Queued At Reload", 3),
        ("After Reload", 2),
    ] {
        assert_eq!(names.iter().filter(|&&x| x == name).count(), n, "{names:?}");
    }
    let left = s
        .js("return Object.keys(localStorage).filter(k => k.startsWith('seam.q.')).length")
        .await;
    assert_eq!(left, 0, "nothing left queued");
    s.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_closed_tab_left_behind_are_sent_by_the_tab_still_open() {
    let s = setup().await;
    // The first tab's batch is told to wait a minute, so closing it sends no beacon.
    s.capture.reply([Reply::TooMany {
        retry_after_secs: 60,
    }]);
    s.open("/sdk-blank.html").await;
    let stays = s.browser.client.window().await.expect("window");
    let closes = s.browser.client.new_window(true).await.expect("tab").handle;
    s.browser
        .client
        .switch_to_window(closes)
        .await
        .expect("switch");
    // This tab loaded after the first one listed storage: it learns of these only from the
    // browser's `storage` events.
    s.open("/sdk-blank.html").await;
    s.js("for (let i = 0; i < 3; i++) seam.track('Left Behind', {i}); seam.flush();")
        .await;
    s.capture.wait_for_events(3, WAIT).await;
    s.browser.client.close_window().await.expect("close tab");
    s.browser
        .client
        .switch_to_window(stays)
        .await
        .expect("switch");
    let all = s.capture.wait_for_events(6, WAIT).await;
    let ids = message_ids(&all);
    assert_eq!(ids.len(), 3, "{all:#?}");
    assert!(
        ids.values().all(|&n| n == 2),
        "each refused once, then sent once by the open tab: {ids:?}"
    );
    s.browser
        .wait_for_js(
            "!Object.keys(localStorage).some(k => k.startsWith('seam.q.'))",
            WAIT,
        )
        .await;
    s.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sends_are_retried_with_the_same_message_id_after_a_reload() {
    let s = setup().await;
    s.capture.reply([
        Reply::Status(503),
        Reply::TooMany {
            retry_after_secs: 1,
        },
    ]);
    s.open("/sdk-blank.html").await;
    s.js("seam.track('Checkout Started'); seam.flush();").await;
    let first = s.capture.wait_for_events(1, WAIT).await;
    s.open("/sdk-blank.html").await;
    let all = s.capture.wait_for_events(3, WAIT).await;
    let ids = message_ids(&all);
    assert_eq!(ids.len(), 1, "one event, sent three times: {all:#?}");
    assert_eq!(ids[first[0]["messageId"].as_str().unwrap()], 3);
    s.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_mode_stores_and_sends_nothing_before_consent_then_sends_what_waited() {
    let s = setup().await;
    s.open("/sdk-opt-in.html").await;
    s.js("seam.page(); seam.track('Product Viewed', {sku: 'KC-101'});")
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        s.capture.requests().is_empty(),
        "nothing sent before consent"
    );
    assert_eq!(
        s.js("return localStorage.length").await,
        0,
        "nothing stored"
    );
    assert_eq!(s.js("return document.cookie").await, "", "no cookie");
    assert_eq!(
        s.js("return seam.consent().analytics").await,
        false,
        "analytics is off until granted"
    );

    let granted_at = s.js("return new Date().toISOString()").await;
    s.js("seam.consent({analytics: true, marketing: false}); seam.flush();")
        .await;
    let events = s.capture.wait_for_events(3, WAIT).await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e["type"], e["event"]))
        .collect();
    assert_eq!(
        kinds,
        [
            r#""page" null"#,
            r#""track" "Product Viewed""#,
            r#""track" "Consent Updated""#
        ]
    );
    let granted_at = granted_at.as_str().unwrap();
    assert!(
        events[0]["timestamp"].as_str().unwrap() < granted_at,
        "held events keep their original timestamps"
    );
    let prefs = &events[2]["properties"]["categoryPreferences"];
    assert_eq!(prefs["analytics"], true);
    assert_eq!(prefs["marketing"], false);
    assert_eq!(
        events[2]["context"]["consent"]["categoryPreferences"],
        *prefs
    );
    assert!(
        s.js("return document.cookie")
            .await
            .as_str()
            .unwrap()
            .contains("seam_aid="),
        "the cookie is written once consent is given"
    );
    s.browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_warns_once_naming_the_argument_and_never_throws_into_the_page() {
    let s = setup().await;
    s.open("/sdk-blank.html").await;
    let result = s
        .js(
            "const warnings = []; const warn = console.warn;
             console.warn = (m) => warnings.push(String(m));
             let threw = false;
             try { seam.track(42); seam.identify('u1', 'not-traits'); seam.consent({analytics: 'yes'}); }
             catch (e) { threw = true; }
             console.warn = warn;
             return {threw, warnings};",
        )
        .await;
    assert_eq!(result["threw"], false);
    assert_eq!(
        result["warnings"],
        serde_json::json!([
            "seam.track: `event` must be a non-empty string",
            "seam.identify: `traits` must be an object",
            "seam.consent: `preferences.analytics` must be a boolean"
        ])
    );
    s.browser.close().await;
}
