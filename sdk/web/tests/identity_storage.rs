//! The anonymousId cookie and the localStorage queue, in headless Chromium.
#![cfg(target_arch = "wasm32")]

#[allow(dead_code)] // each test file uses part of the shared helpers
mod common;

use common::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn anonymous_id_lives_in_a_cookie_and_local_storage_and_reset_starts_fresh() {
    let _host = load("opt-out");
    let user = parse(&seam_sdk::user());
    let aid = string(&get(&user, "anonymousId"));
    assert_eq!(aid.len(), 36);
    assert!(
        cookie().contains(&format!("seam_aid={aid}")),
        "{}",
        cookie()
    );
    let ls = web_sys_local("seam.aid");
    assert_eq!(ls.as_deref(), Some(aid.as_str()));

    track("Product Viewed");
    assert!(
        stored_keys().iter().any(|k| k.starts_with("seam.q.")),
        "queued in localStorage before sending: {:?}",
        stored_keys()
    );

    seam_sdk::set_user("user-42".into(), r#"{"email":"ada@example.com"}"#.into());
    assert_eq!(web_sys_local("seam.uid").as_deref(), Some("user-42"));
    let user = parse(&seam_sdk::user());
    assert_eq!(string(&get(&user, "userId")), "user-42");

    seam_sdk::reset(0.0);
    let after = parse(&seam_sdk::user());
    let new_aid = string(&get(&after, "anonymousId"));
    assert_ne!(
        new_aid, aid,
        "a shared device's next visitor gets a new anonymousId"
    );
    assert!(get(&after, "userId").is_null());
    assert!(cookie().contains(&format!("seam_aid={new_aid}")));
    assert_eq!(web_sys_local("seam.uid"), None);
}

fn web_sys_local(key: &str) -> Option<String> {
    let host = make_host();
    let get: js_sys::Function = get(&host, "get").into();
    get.call1(&host, &key.into())
        .ok()
        .and_then(|v| v.as_string())
}
