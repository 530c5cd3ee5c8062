//! Story: a customer browses anonymously on a laptop and a phone, signs in on both and buys on
//! the laptop; the profile viewer shows one person with both devices, the order and the revenue.
//! Also saves the README's screenshots of the storefront and of the stitched profile.

use seam_e2e::{ADMIN_TOKEN, Browser, DemoCollector};
use serde_json::Value;
use std::time::Duration;

const EMAIL: &str = "ada@example.com";
const WAIT: Duration = Duration::from_secs(30);

fn anonymous_ids(profile: &Value) -> Vec<String> {
    profile["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "anonymous_id")
        .filter_map(|i| i["value"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_sign_in_and_buy_then_the_viewer_shows_one_stitched_profile() {
    let collector = DemoCollector::start().await;
    let (laptop, phone) = tokio::join!(Browser::launch(), Browser::launch());

    // Both devices browse anonymously and accept consent.
    let mut anonymous = Vec::new();
    for device in [&laptop, &phone] {
        device.open(&collector.url("/")).await;
        if std::ptr::eq(device, &laptop) {
            laptop.screenshot("storefront").await;
        }
        device.click("#consent-accept-all").await;
        device.open(&collector.url("/product.html?id=kc-mug")).await;
        anonymous.push(device.anonymous_id().await);
    }
    assert_ne!(anonymous[0], anonymous[1], "two devices, two anonymous IDs");
    laptop.click("#add-to-cart").await;
    laptop
        .wait_for_js(
            "document.getElementById('cart-count').textContent === '1'",
            WAIT,
        )
        .await;
    laptop.screenshot("storefront-product").await;

    // The same customer signs in on both.
    for device in [&laptop, &phone] {
        device.open(&collector.url("/login.html")).await;
        device.fill("#login-email", EMAIL).await;
        device.fill("#login-fullname", "Ada Lovelace").await;
        device.click("#login-submit").await;
        device
            .wait_for_js("!document.getElementById('login-done').hidden", WAIT)
            .await;
        device.flush().await;
    }

    // And buys the mug on the laptop.
    laptop.open(&collector.url("/checkout.html")).await;
    laptop.click("#place-order").await;
    let order_id = laptop.text("#order-id").await;
    laptop.flush().await;
    phone.flush().await;

    // The API has one profile, whichever identifier asks.
    let profile = collector
        .wait_for_admin("/v1/profiles/email:ada%40example.com", WAIT, |p| {
            let ids = anonymous_ids(p);
            anonymous.iter().all(|a| ids.contains(a)) && p["computed"]["orders"] == 1
        })
        .await;
    assert_eq!(profile["computed"]["total_revenue"], 18.0);
    for anonymous_id in &anonymous {
        let other = collector
            .admin_get(&format!("/v1/profiles/anonymous_id:{anonymous_id}"))
            .await
            .json();
        assert_eq!(
            other["id"], profile["id"],
            "{anonymous_id} is on the same profile"
        );
    }
    let user_id = profile["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "user_id")
        .and_then(|i| i["value"].as_str())
        .expect("a user_id identity")
        .to_string();

    // The viewer, deep-linked by user ID, asks for the token and shows the stitched person.
    phone
        .client
        .goto(&collector.url(&format!("/profiles/?id=user_id:{user_id}")))
        .await
        .unwrap();
    phone.fill("#admin-token", ADMIN_TOKEN).await;
    phone.click("#token-submit").await;
    let identities = phone.text("#identities").await;
    for anonymous_id in &anonymous {
        assert!(
            identities.contains(anonymous_id.as_str()),
            "viewer lists {anonymous_id}: {identities}"
        );
    }
    assert!(identities.contains(EMAIL), "{identities}");
    assert_eq!(
        phone.text("[data-metric=ltv] .value").await,
        "18.00",
        "lifetime value"
    );
    assert_eq!(phone.text("[data-metric=orders] .value").await, "1");
    let timeline = phone.text("#timeline").await;
    assert!(timeline.contains("Order Completed"), "{timeline}");
    assert!(
        timeline.contains(&order_id),
        "order {order_id} in {timeline}"
    );
    assert!(
        timeline.contains("anonymous · pre-login"),
        "pre-login events are marked: {timeline}"
    );
    assert_eq!(
        phone
            .client
            .execute("return sessionStorage.getItem('seam-admin-token')", vec![])
            .await
            .unwrap(),
        Value::from(ADMIN_TOKEN),
        "the token is kept for the browser session"
    );
    phone.client.set_window_size(1280, 1400).await.unwrap();
    phone.screenshot("profile-stitched").await;

    // The open viewer follows new events without a reload.
    laptop
        .open(&collector.url("/product.html?id=kc-grinder"))
        .await;
    laptop.flush().await;
    phone
        .wait_for_js(
            "document.getElementById('timeline').textContent.includes('Hand Grinder')",
            WAIT,
        )
        .await;

    // Signing out on the laptop starts a fresh anonymous visitor there.
    let before = laptop.anonymous_id().await;
    laptop.click("#logout").await;
    assert_eq!(laptop.text("#login-link").await, "Sign in");
    let after = laptop.anonymous_id().await;
    assert_ne!(before, after, "sign-out rotates the anonymous ID");
    assert!(!anonymous.contains(&after));

    laptop.close().await;
    phone.close().await;
}
