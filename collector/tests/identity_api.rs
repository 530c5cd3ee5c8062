//! The profile API's contract: admin token, identifier parsing, errors, search and export.

mod identity_support;

use axum::http::StatusCode;
use identity_support::{Collector, fixture, message_ids};

#[tokio::test]
async fn profile_api_without_the_admin_token_is_refused() {
    let c = Collector::start();
    c.send(&fixture("guest_checkout_then_account")).await;
    for token in [None, Some("wrong-token"), Some(identity_support::WRITE_KEY)] {
        for path in [
            "/v1/profiles/user_id:cust-7",
            "/v1/profiles?q=cust",
            "/v1/profiles/user_id:cust-7/export",
        ] {
            let (status, body) = c.get_with_token(path, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(body["code"], "unauthorized");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
}

#[tokio::test]
async fn malformed_identifiers_are_bad_requests_and_unknown_ones_not_found() {
    let c = Collector::start();
    for path in [
        "/v1/profiles/no-colon",
        "/v1/profiles/email:not-an-email",
        "/v1/profiles/user_id:undefined",
        "/v1/profiles/Bad%20Type:1/events",
    ] {
        let (status, body) = c.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], "invalid_identifier");
    }
    let (status, body) = c.get("/v1/profiles/user_id:nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["message"].as_str().unwrap().contains("user_id:nobody"),
        "{body}"
    );
    let (status, _) = c.delete("/v1/profiles/user_id:nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    c.send(&fixture("guest_checkout_then_account")).await;
    let (status, body) = c.get("/v1/profiles/user_id:cust-7/events?cursor=zzz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_cursor");
}

#[tokio::test]
async fn search_finds_profiles_by_identifier_prefix_and_lists_the_recently_active() {
    let c = Collector::start();
    c.send(&fixture("shared_browser_two_logins")).await;
    c.send(&fixture("guest_checkout_then_account")).await;

    let (status, found) = c.get("/v1/profiles?q=Alice%40").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let found = found["profiles"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["traits"]["email"], "alice@example.com");

    let (_, by_anon) = c.get("/v1/profiles?q=anon-").await;
    assert_eq!(
        by_anon["profiles"].as_array().unwrap().len(),
        2,
        "anon-guest and anon-kiosk"
    );

    let (_, recent) = c.get("/v1/profiles?limit=2").await;
    let recent_ids: Vec<_> = recent["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["computed"]["last_seen"].clone())
        .collect();
    assert_eq!(
        recent_ids,
        ["2026-11-21T12:00:00.000Z", "2026-11-20T10:06:00.000Z"]
    );
    let cursor = recent["next_cursor"]
        .as_str()
        .expect("a third profile remains");
    let (_, rest) = c
        .get(&format!("/v1/profiles?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["profiles"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
}

#[tokio::test]
async fn export_holds_the_profile_every_event_and_the_merge_log() {
    let c = Collector::start();
    c.send(&fixture("two_devices_then_login")).await;
    let (status, export) = c.get("/v1/profiles/email:ada%40example.com/export").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export["profile"]["computed"]["event_count"], 6);
    assert_eq!(message_ids(export["events"].as_array().unwrap()).len(), 6);
    assert_eq!(export["merges"]["merges"].as_array().unwrap().len(), 1);
}
