//! Story: a visitor sends a trait and event properties laced with HTML and script; the profile
//! viewer shows them as text and runs none of it.

use seam_e2e::{ADMIN_TOKEN, Browser, DemoCollector};
use serde_json::{Value, json};
use std::time::Duration;

const IMG: &str = "<img src=x onerror=\"window.__pwned = 'img'\">";
const SCRIPT: &str = "<script>window.__pwned = 'script'</script>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_traits_render_as_text_in_the_viewer_and_run_nothing() {
    let collector = DemoCollector::start().await;
    let identify = json!({
        "type": "identify", "messageId": "xss-identify-1", "userId": "mallory",
        "anonymousId": "anon-mallory-1",
        "traits": {"name": IMG, "email": "mallory@example.com", "website": "javascript:window.__pwned='href'"},
        "timestamp": "2026-11-23T10:00:00.000Z"
    });
    let track = json!({
        "type": "track", "messageId": "xss-track-1", "userId": "mallory", "event": SCRIPT,
        "properties": {"name": IMG, "order_id": SCRIPT},
        "context": {"userAgent": IMG},
        "timestamp": "2026-11-23T10:00:01.000Z"
    });
    for (path, message) in [("/v1/identify", identify), ("/v1/track", track)] {
        let response = collector.ingest(path, &message).await;
        assert_eq!(response.status, 200, "{path}: {}", response.body);
    }
    collector
        .wait_for_admin(
            "/v1/profiles/user_id:mallory",
            Duration::from_secs(20),
            |p| p["traits"]["name"] == IMG,
        )
        .await;

    let admin = Browser::launch().await;
    admin
        .client
        .goto(&collector.url("/profiles/?id=user_id:mallory"))
        .await
        .unwrap();
    // A wrong token is refused and forgotten; the right one opens the profile.
    admin.fill("#admin-token", "not-the-token").await;
    admin.click("#token-submit").await;
    admin
        .wait_for_js(
            "document.getElementById('token-error').textContent.includes('did not accept')",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        admin
            .client
            .execute("return sessionStorage.getItem('seam-admin-token')", vec![])
            .await
            .unwrap(),
        Value::Null
    );
    admin.fill("#admin-token", ADMIN_TOKEN).await;
    admin.click("#token-submit").await;
    admin
        .wait_for_js(
            "document.querySelector('#timeline li') !== null",
            Duration::from_secs(20),
        )
        .await;

    assert_eq!(
        admin.text("#profile-name").await,
        IMG,
        "the name is shown as typed"
    );
    assert_eq!(admin.text("[data-trait=name]").await, IMG);
    let timeline = admin.text("#timeline").await;
    assert!(timeline.contains(SCRIPT), "{timeline}");
    // Let any injected handler fire before checking that none did.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let verdict = admin
        .client
        .execute(
            "return {
               pwned: window.__pwned === undefined ? null : window.__pwned,
               images: document.querySelectorAll('#view img').length,
               scripts: document.querySelectorAll('#view script').length,
               javascript_links: Array.from(document.querySelectorAll('[href]'))
                 .filter(a => /^\\s*javascript:/i.test(a.getAttribute('href'))).length,
               handler_attributes: Array.from(document.querySelectorAll('#view *'))
                 .filter(n => Array.from(n.attributes).some(a => a.name.startsWith('on'))).length
             };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        verdict,
        json!({"pwned": Value::Null, "images": 0, "scripts": 0, "javascript_links": 0, "handler_attributes": 0})
    );
    admin.close().await;
}
