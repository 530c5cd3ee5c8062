//! The identity stories of issue 5, told through the HTTP API: events in through `/v1/batch`,
//! profiles out through `/v1/profiles`.

mod identity_support;

use axum::http::StatusCode;
use identity_support::{Collector, fixture, identities, message_ids, type_values};
use serde_json::json;
use std::path::PathBuf;

#[tokio::test]
async fn visitor_on_two_devices_who_logs_in_on_both_has_one_profile_with_every_event() {
    let c = Collector::start();
    let events = fixture("two_devices_then_login");
    c.send(&events).await;

    let by_laptop = c.profile("anonymous_id:anon-laptop").await;
    // A profile read catches up first, and /metrics says so.
    let (_, metrics) = c.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("\nseam_identity_lag_events 0\n"),
        "{metrics}"
    );
    let applied = format!("\nseam_identity_applied_seq {}\n", events.len());
    assert!(metrics.contains(&applied), "{metrics}");
    for other in [
        "anonymous_id:anon-phone",
        "user_id:cust-42",
        "email:ada%40example.com",
        "email:ADA%40Example.com",
    ] {
        assert_eq!(
            c.profile(other).await["id"],
            by_laptop["id"],
            "{other} is the same person"
        );
    }
    assert_eq!(
        identities(&by_laptop),
        [
            "anonymous_id:anon-laptop",
            "anonymous_id:anon-phone",
            "email:ada@example.com",
            "user_id:cust-42"
        ]
    );
    let computed = &by_laptop["computed"];
    assert_eq!(computed["event_count"], 6);
    assert_eq!(computed["page_views"], 2);
    assert_eq!(computed["orders"], 1);
    assert_eq!(computed["total_revenue"], 42.5);
    assert_eq!(computed["first_seen"], "2026-11-20T09:00:00.000Z");
    assert_eq!(computed["last_order_at"], "2026-11-22T08:05:00.000Z");
    // Last write wins for traits; the first touch is kept.
    assert_eq!(
        by_laptop["traits"],
        json!({"email": "Ada@Example.com", "name": "Ada Lovelace"})
    );
    assert_eq!(
        by_laptop["first_touch"]["initial_referrer"],
        "https://search.example/?q=kettle"
    );
    assert_eq!(by_laptop["first_touch"]["utm_campaign"], "winter-tea");
    assert_eq!(
        by_laptop["consent"]["categories"],
        json!({"analytics": true, "marketing": true})
    );
    assert_eq!(by_laptop["consent"]["history"].as_array().unwrap().len(), 2);
    assert_eq!(by_laptop["devices"].as_array().unwrap().len(), 2);

    // The timeline has every event, pre-login anonymous ones included, newest first, across pages.
    let timeline = c.timeline("user_id:cust-42", 4).await;
    assert_eq!(
        message_ids(&timeline),
        [
            "phone-order",
            "phone-login",
            "laptop-login",
            "phone-1",
            "laptop-2",
            "laptop-1"
        ]
    );

    let (status, merges) = c.get("/v1/profiles/user_id:cust-42/merges").await;
    assert_eq!(status, StatusCode::OK);
    let merges = merges["merges"].as_array().unwrap();
    assert_eq!(
        merges.len(),
        1,
        "the phone's profile joined the laptop's: {merges:?}"
    );
    assert_eq!(merges[0]["message_id"], "phone-login");
    assert_eq!(merges[0]["rule"], "identify");
    assert_eq!(merges[0]["survivor"], by_laptop["id"]);
}

#[tokio::test]
async fn guest_checkout_then_account_with_that_email_is_one_profile_with_the_order() {
    let c = Collector::start();
    c.send(&fixture("guest_checkout_then_account")).await;

    let by_user = c.profile("user_id:cust-7").await;
    assert_eq!(
        c.profile("anonymous_id:anon-guest").await["id"],
        by_user["id"]
    );
    assert_eq!(
        identities(&by_user),
        [
            "anonymous_id:anon-guest",
            "email:grace@example.com",
            "user_id:cust-7"
        ]
    );
    assert_eq!(by_user["computed"]["orders"], 1);
    assert_eq!(by_user["computed"]["total_revenue"], 59.9);
    assert_eq!(by_user["computed"]["average_order_value"], 59.9);
    assert_eq!(
        message_ids(&c.timeline("user_id:cust-7", 10).await),
        ["signup", "guest-order", "guest-1"]
    );
    // Why: the guest order brought the email, the account's identify matched it.
    let added_by = |t: &str| {
        by_user["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == t)
            .unwrap()["added_by"]
            .clone()
    };
    assert_eq!(
        added_by("email"),
        json!({"message_id": "guest-order", "rule": "email_on_event"})
    );
    assert_eq!(
        added_by("user_id"),
        json!({"message_id": "signup", "rule": "identify"})
    );
}

#[tokio::test]
async fn server_purchase_arriving_before_the_browser_identify_lands_on_the_same_profile() {
    let events = fixture("guest_checkout_then_account");
    let in_order = Collector::start();
    in_order.send(&events).await;
    let late = Collector::start();
    late.send(&[events[2].clone()]).await;
    late.send(&[events[1].clone()]).await;
    late.send(&[events[0].clone()]).await;

    let a = in_order.profile("user_id:cust-7").await;
    let b = late.profile("user_id:cust-7").await;
    assert_eq!(
        a["id"], b["id"],
        "the profile ID depends on the events, not their arrival"
    );
    assert_eq!(identities(&a), identities(&b));
    assert_eq!(a["computed"], b["computed"]);
    assert_eq!(b["computed"]["total_revenue"], 59.9);
}

#[tokio::test]
async fn two_users_on_one_browser_without_reset_stay_two_profiles_and_the_log_says_why() {
    let c = Collector::start();
    c.send(&fixture("shared_browser_two_logins")).await;

    let alice = c.profile("user_id:alice").await;
    let bob = c.profile("user_id:bob").await;
    assert_ne!(alice["id"], bob["id"], "two customers are never merged");
    assert_eq!(
        identities(&alice),
        [
            "anonymous_id:anon-kiosk",
            "email:alice@example.com",
            "user_id:alice"
        ]
    );
    assert_eq!(identities(&bob), ["email:bob@example.com", "user_id:bob"]);
    assert_eq!(alice["computed"]["total_revenue"], 10.0);
    assert_eq!(bob["computed"]["total_revenue"], 99.0);
    assert_eq!(
        message_ids(&c.timeline("user_id:bob", 10).await),
        ["bob-order", "bob-login"]
    );

    let (status, log) = c.get("/v1/profiles/user_id:bob/merges").await;
    assert_eq!(status, StatusCode::OK);
    let dropped = log["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert_eq!(dropped[0]["message_id"], "bob-login");
    assert_eq!(
        dropped[0]["identifier"],
        json!({"type": "anonymous_id", "value": "anon-kiosk"})
    );
    assert_eq!(dropped[0]["rule"], "limit");
    assert!(
        dropped[0]["reason"].as_str().unwrap().contains("user_id"),
        "{}",
        dropped[0]["reason"]
    );
}

#[tokio::test]
async fn erasure_removes_everything_and_later_events_from_those_identifiers_are_not_stored() {
    let c = Collector::start();
    c.send(&fixture("erasable_customer")).await;
    c.send(&fixture("guest_checkout_then_account")).await;
    // Refused (a track without its event name), and kept for an admin to look at.
    // And refused for naming nobody but her email, written in another case.
    c.send_refused(&[
        json!({"type": "track", "userId": "cust-erase",
            "properties": {"name": "Eve Quillfeather"}}),
        json!({"type": "identify", "messageId": "email-only",
            "traits": {"email": "Erase.Me@Example.com", "name": "Eve Quillfeather"}}),
    ])
    .await;
    let (_, failed) = c.get("/v1/failed").await;
    assert_eq!(
        failed["failed"].as_array().map(Vec::len),
        Some(2),
        "{failed}"
    );
    let before = c.profile("email:erase.me%40example.com").await;
    assert!(
        !c.files_containing("Eve Quillfeather").is_empty(),
        "the data dir holds her name before the erasure"
    );

    let (status, receipt) = c.delete("/v1/profiles/email:erase.me%40example.com").await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["profile_id"], before["id"]);
    assert_eq!(receipt["deleted_events"], 3);
    assert_eq!(receipt["deleted_identities"], 3);
    assert!(
        receipt["receipt_id"]
            .as_str()
            .unwrap()
            .starts_with("erasure_")
    );
    assert!(receipt["at"].as_str().unwrap().ends_with('Z'));
    let suppressed = type_values(&receipt["suppressed"]);
    assert_eq!(
        suppressed,
        [
            "anonymous_id:anon-erase",
            "email:erase.me@example.com",
            "user_id:cust-erase"
        ]
    );

    for id in [
        "user_id:cust-erase",
        "anonymous_id:anon-erase",
        "email:erase.me%40example.com",
    ] {
        let (status, body) = c.get(&format!("/v1/profiles/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (_, stored) = c.get("/v1/events?user_id=cust-erase").await;
    assert_eq!(
        stored["events"],
        json!([]),
        "the store holds nothing of theirs"
    );
    let (_, stored) = c.get("/v1/events?anonymous_id=anon-erase").await;
    assert_eq!(stored["events"], json!([]));
    let (_, failed) = c.get("/v1/failed").await;
    assert_eq!(
        failed["failed"],
        json!([]),
        "nor any message of theirs it refused"
    );
    assert_eq!(
        c.files_containing("Eve Quillfeather"),
        Vec::<PathBuf>::new(),
        "no file of the data dir keeps what she sent"
    );

    // They come back: accepted on the wire, but nothing is stored or profiled.
    c.send(&[
        json!({"type": "page", "messageId": "after-1", "anonymousId": "anon-erase", "timestamp": "2026-11-23T10:00:00.000Z"}),
        json!({"type": "identify", "messageId": "after-2", "userId": "cust-erase", "timestamp": "2026-11-23T10:01:00.000Z"}),
        json!({"type": "identify", "messageId": "after-3", "userId": "new-id", "traits": {"email": "Erase.Me@example.com"}, "timestamp": "2026-11-23T10:02:00.000Z"}),
    ])
    .await;
    let (_, stored) = c.get("/v1/events?anonymous_id=anon-erase").await;
    assert_eq!(stored["events"], json!([]));
    let (_, stored) = c.get("/v1/events?user_id=cust-erase").await;
    assert_eq!(stored["events"], json!([]));
    let (_, stored) = c.get("/v1/events?user_id=new-id").await;
    assert_eq!(
        stored["events"],
        json!([]),
        "an erased email is suppressed too"
    );
    let (status, _) = c.get("/v1/profiles/user_id:cust-erase").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Other people are untouched.
    assert_eq!(
        c.profile("user_id:cust-7").await["computed"]["total_revenue"],
        59.9
    );
}

#[tokio::test]
async fn profiles_survive_a_restart_and_keep_stitching_afterwards() {
    let c = Collector::start();
    let events = fixture("two_devices_then_login");
    c.send(&events[..4]).await;
    let before = c.profile("user_id:cust-42").await;

    let c = c.restart();
    let after = c.profile("user_id:cust-42").await;
    assert_eq!(after, before, "the view on disk rebuilds the same profile");
    c.send(&events[4..]).await;
    let later = c.profile("anonymous_id:anon-phone").await;
    assert_eq!(later["id"], before["id"]);
    assert_eq!(later["computed"]["event_count"], 6);
}

#[tokio::test]
async fn erased_phone_or_crm_id_coming_back_alone_is_neither_stored_nor_resolved() {
    let c = Collector::start();
    c.send(&fixture("erasable_with_phone_and_crm_id")).await;
    // Refused for naming nobody but the phone, spaced another way, or the CRM ID (its type in
    // capitals, as an external ID).
    c.send_refused(&[
        json!({"type": "identify", "traits": {"phone": "1-555-010-0199"}}),
        json!({"type": "identify", "context": {"externalIds": [
            {"id": "CRM-77", "type": "CRM_ID", "collection": "users", "encoding": "none"}]}}),
    ])
    .await;
    assert_eq!(
        identities(&c.profile("phone:+15550100199").await),
        [
            "anonymous_id:anon-phone-owner",
            "crm_id:CRM-77",
            "email:pat@example.com",
            "phone:+15550100199",
            "user_id:cust-phone"
        ]
    );
    let (status, receipt) = c.delete("/v1/profiles/crm_id:CRM-77").await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["deleted_events"], 2);
    assert_eq!(receipt["deleted_identities"], 5);
    let (_, failed) = c.get("/v1/failed").await;
    assert_eq!(
        failed["failed"],
        json!([]),
        "the messages refused for naming only her phone or her CRM ID go too"
    );

    // Each comes back under a new anonymous ID, carrying only the erased phone (formatted
    // differently), the CRM ID (type in capitals) or the email (in properties).
    c.send(&fixture("returning_by_phone_or_crm_id")).await;
    for anon in ["anon-new-1", "anon-new-2", "anon-new-3"] {
        let (_, stored) = c.get(&format!("/v1/events?anonymous_id={anon}")).await;
        assert_eq!(stored["events"], json!([]), "{anon}'s event is not stored");
        let (status, _) = c.get(&format!("/v1/profiles/anonymous_id:{anon}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{anon} is not resolved");
    }
    for id in [
        "phone:+15550100199",
        "crm_id:CRM-77",
        "email:pat%40example.com",
    ] {
        let (status, _) = c.get(&format!("/v1/profiles/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
    }
    // A different phone and CRM ID in the same batch are someone else, stored and profiled.
    let (_, stored) = c.get("/v1/events?anonymous_id=anon-new-4").await;
    assert_eq!(
        message_ids(stored["events"].as_array().unwrap()),
        ["someone-else"]
    );
    assert_eq!(
        identities(&c.profile("crm_id:CRM-78").await),
        [
            "anonymous_id:anon-new-4",
            "crm_id:CRM-78",
            "phone:+15550100200"
        ]
    );
    let (_, metrics) = c.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("seam_events_suppressed_total 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn erasing_the_first_person_on_a_shared_browser_keeps_every_event_of_the_second() {
    let c = Collector::start();
    c.send(&fixture("shared_browser_two_logins")).await;
    assert_eq!(
        message_ids(&c.timeline("user_id:alice", 2).await),
        ["alice-order", "alice-login", "kiosk-1"],
        "Bob's events on the kiosk are not Alice's"
    );
    let bob_before = c.profile("user_id:bob").await;

    let (status, receipt) = c.delete("/v1/profiles/user_id:alice").await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["deleted_events"], 3, "{receipt}");
    assert_eq!(receipt["deleted_identities"], 3);
    assert_eq!(
        type_values(&receipt["suppressed"]),
        [
            "anonymous_id:anon-kiosk",
            "email:alice@example.com",
            "user_id:alice"
        ]
    );

    let (_, stored) = c.get("/v1/events?user_id=bob").await;
    assert_eq!(
        message_ids(stored["events"].as_array().unwrap()),
        ["bob-order", "bob-login"]
    );
    // RFM scores rank customers against each other, so Alice's erasure may move Bob's.
    let unranked = |mut p: serde_json::Value| {
        p["computed"]["rfm"] = json!(null);
        p
    };
    let bob_before = unranked(bob_before);
    assert_eq!(
        unranked(c.profile("user_id:bob").await),
        bob_before,
        "Bob's profile is untouched"
    );
    assert_eq!(
        message_ids(&c.timeline("user_id:bob", 1).await),
        ["bob-order", "bob-login"]
    );

    // After a restart the view holds Bob's links without the erased anonymous ID.
    let c = c.restart();
    assert_eq!(
        unranked(c.profile("email:bob%40example.com").await),
        bob_before
    );
    assert_eq!(
        message_ids(&c.timeline("user_id:bob", 10).await),
        ["bob-order", "bob-login"]
    );
    let (status, _) = c.get("/v1/profiles/anonymous_id:anon-kiosk").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn order_filed_under_someone_elses_browser_or_no_browser_is_on_the_buyers_timeline() {
    let c = Collector::start();
    c.send(&fixture("guest_order_on_someone_elses_browser"))
        .await;

    // Carol checks out as a guest on Alice's browser: her email wins over the kiosk's
    // anonymous ID, which is Alice's, so the store files the order where Carol's IDs do not reach.
    let carol = c.profile("user_id:carol").await;
    assert_eq!(carol["computed"]["orders"], 1);
    assert_eq!(carol["computed"]["total_revenue"], 30.0);
    assert_eq!(
        message_ids(&c.timeline("user_id:carol", 2).await),
        ["carol-guest-order-on-kiosk", "carol-cart", "carol-login"]
    );
    assert_eq!(
        message_ids(&c.timeline("user_id:alice", 10).await),
        ["alice-home", "alice-login"]
    );
    // A server sends the placeholder anonymous ID: the email is the profile's only identifier.
    assert_eq!(
        identities(&c.profile("email:dave%40example.com").await),
        ["email:dave@example.com"]
    );
    assert_eq!(
        message_ids(&c.timeline("email:dave%40example.com", 10).await),
        ["dave-server-order"]
    );

    let c = c.restart();
    assert_eq!(
        message_ids(&c.timeline("email:carol%40example.com", 1).await),
        ["carol-guest-order-on-kiosk", "carol-cart", "carol-login"]
    );
    let (_, export) = c.get("/v1/profiles/email:dave%40example.com/export").await;
    assert_eq!(
        message_ids(export["events"].as_array().unwrap()),
        ["dave-server-order"]
    );

    // Erasing Carol reaches her order on the kiosk too, which the store files under Alice's
    // anonymous ID: it is named by seq. Alice keeps her own events.
    let (status, receipt) = c.delete("/v1/profiles/user_id:carol").await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["deleted_events"], 3, "{receipt}");
    assert_eq!(
        message_ids(&c.timeline("user_id:alice", 50).await),
        ["alice-home", "alice-login"],
        "erasing Carol leaves Alice's events on the kiosk"
    );
}

#[tokio::test]
async fn a_rudderstack_visitors_consent_ids_are_the_profiles_consent() {
    let c = Collector::start();
    // As RudderStack's SDK records consent on each event when consent management is on: first
    // marketing denied, then the visitor allows it.
    let record = |denied: &[&str], allowed: &[&str]| {
        json!({"consentManagement": {"provider": "custom", "resolutionStrategy": "and",
            "allowedConsentIds": allowed, "deniedConsentIds": denied}})
    };
    c.send(&[
        json!({"type": "page", "anonymousId": "rs-anon", "name": "Home", "messageId": "rs-1",
            "timestamp": "2026-11-20T09:00:00.000Z",
            "context": record(&["marketing"], &["analytics"])}),
        json!({"type": "track", "anonymousId": "rs-anon", "event": "Consent Management Interaction",
            "messageId": "rs-2", "timestamp": "2026-11-20T09:01:00.000Z",
            "context": record(&[], &["analytics", "marketing"])}),
    ])
    .await;
    let profile = c.profile("anonymous_id:rs-anon").await;
    assert_eq!(
        profile["consent"]["categories"],
        json!({"analytics": true, "marketing": true}),
        "{profile}"
    );
}
